#!/usr/bin/env bash
# test_paper_figures.sh <paper_figures> <work dir>: the figures tool end to end at tiny sizes (seconds):
# both setups write every measured figure's CSV with the setup named in each row and the seed summary
# columns, the printed headers name the setup, and malformed depth lists are refused.
set -euo pipefail
bin=$1
dir=$2
rm -rf "$dir"
mkdir -p "$dir"
fail() { echo "test_paper_figures: $*" >&2; exit 1; }
small=(--d-model 16 --ffn 32 --heads 2 --layers 2 --depths 1,2 --seeds 2 --sublayers 2,4,6 --perturb-seeds 3
       --batch-size 2 --length 6 --vocab 50 --threads 1 --no-png --only grad_norms,theorem1,output_change,admin_profile)
for setup in paper trainer; do
  out=$dir/$setup
  "$bin" --setup "$setup" --out "$out" "${small[@]}" > "$out.txt" 2> "$out.err" || fail "--setup $setup failed: $(cat "$out.err")"
  for f in grad_norms theorem1 output_change admin_profile; do
    [[ -s $out/$f.csv && -s $out/$f.gp ]] || fail "$setup: $f.csv or $f.gp missing"
    head -1 "$out/$f.csv" | grep -q '^setup,' || fail "$setup: $f.csv has no setup column"
    # every data row names this setup
    if tail -n +2 "$out/$f.csv" | grep -v "^$setup," | grep -q .; then fail "$setup: $f.csv has rows of another setup"; fi
    grep -q "\\[$setup setup" "$out/$f.gp" || fail "$setup: $f.gp's title does not name the setup"
  done
  for f in grad_norms theorem1 output_change; do
    head -1 "$out/$f.csv" | grep -q '_median,.*_q1,.*_q3,.*_min,.*_max' || fail "$setup: $f.csv lacks the seed summary"
  done
  [[ $(grep -c "setup $setup:" "$out.txt") -eq 4 ]] || fail "$setup: not every printed figure names the setup"
done
# the paper setup's batches are random tokens without padding: N = 2..6 sublayers measured, 3 seeds each
grep -q '^paper,post,3,6,3,' "$dir/paper/output_change.csv" || fail "output_change.csv lacks N = 6 with 3 seeds"
for bad in "--sublayers 2,3,4" "--sublayers 2,4" "--depths 3" "--setup nope"; do
  # shellcheck disable=SC2086
  if "$bin" --out "$dir/bad" $bad --no-png > /dev/null 2>&1; then fail "accepted $bad"; fi
done
echo "test_paper_figures: OK"
