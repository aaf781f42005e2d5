#!/usr/bin/env bash
# The README's normalization comparison on the default German-English corpus (Xiong et al. 2020's
# warm-up experiment at small scale, plus Liu et al. 2020's Admin): four runs of the same model, data
# order, learning rate and number of steps, differing only in the policy and the first steps of the
# schedule:
#   post-warmup   PostLN, linear warm-up over $WARMUP steps, then constant
#   post          PostLN, constant from step 1 (no warm-up)
#   pre           PreLN, constant from step 1
#   admin         AdminLN (w profiled on the first batch), constant from step 1
# Each writes runs/compare/<name>/ (metrics.jsonl, checkpoints, test.hyp) and <name>.log; then
# runs/compare/valid_loss.csv + valid_loss.png (validation loss against step) and summary.md (test
# BLEU/chrF, beam 5, best checkpoint by validation BLEU).
#
#   bash scripts/compare-norms.sh                 STEPS=160 LR=1e-3 WARMUP=50 EVERY=20 (about 35 min
#                                                 on two cores)
#   STEPS=1000 LR=5e-4 bash scripts/compare-norms.sh --layers 6
#   LR=5e-4 NAMES="post-warmup post pre" OUT=runs/compare-5e-4 bash scripts/compare-norms.sh
# Extra arguments go to every `translate train`; NAMES picks runs (default all four), OUT the directory.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
source scripts/setup-translate.sh

steps=${STEPS:-160} lr=${LR:-1e-3} warmup=${WARMUP:-50} every=${EVERY:-20}
dir=${OUT:-runs/compare}
mkdir -p "$dir"
read -r -a names <<< "${NAMES:-post-warmup post pre admin}"
declare -A flags=(
  [post-warmup]="--norm post --schedule linear_warmup --warmup $warmup"
  [post]="--norm post --schedule constant"
  [pre]="--norm pre --schedule constant"
  [admin]="--norm admin --schedule constant"
)
for name in "${names[@]}"; do
  [[ -n ${flags[$name]:-} ]] || { echo "compare-norms: unknown run '$name' in NAMES (post-warmup, post, pre, admin)" >&2; exit 1; }
done
t0=$SECONDS
for name in "${names[@]}"; do
  rm -rf "${dir:?}/$name"
  echo "compare-norms: $name (${flags[$name]}; lr $lr, $steps steps) -> $dir/$name.log  [$((SECONDS - t0)) s so far]"
  # shellcheck disable=SC2086  # the flags are words
  status=0
  "$translate" train --data data/de-en --out "$dir/$name" ${flags[$name]} --lr "$lr" --max-steps "$steps" \
    --time-budget 0 --checkpoint-every "$every" --log-every "$every" --valid-bleu-sentences 100 "$@" \
    > "$dir/$name.log" 2>&1 || status=$?
  case $status in
    0) grep -E '^ *BLEU|^ *chrF' "$dir/$name.log" | sed 's/^/  /' ;;
    3) echo "  diverged: $(grep -m1 'diverged at step' "$dir/$name.log")" ;;
    *) tail -5 "$dir/$name.log"; echo "compare-norms: $name failed (exit $status)" >&2; exit "$status" ;;
  esac
done

# Validation loss per step, one column per run ("" where a run has no value, e.g. after divergence).
field() {  # field <jsonl> <event> <key>: "step value" lines
  awk -v ev="\"event\":\"$2\"" -v key="\"$3\":" 'index($0, ev) {
    s = $0; sub(/.*"step":/, "", s); sub(/[,}].*/, "", s);
    v = $0; if (!sub(".*" key, "", v)) next; sub(/[,}].*/, "", v); print s, v }' "$1"
}
{
  echo "step,${names[*]}" | tr ' ' ','
  for name in "${names[@]}"; do field "$dir/$name/metrics.jsonl" valid valid_loss | sed "s/^/$name /"; done |
    awk -v cols="${names[*]}" 'BEGIN { n = split(cols, c, " ") }
      { v[$2, $1] = $3; steps[$2] = 1 }
      END { for (s in steps) { line = s; for (i = 1; i <= n; i++) line = line "," v[s, c[i]]; print line } }' |
    sort -t, -k1,1n
} > "$dir/valid_loss.csv"

{
  echo "| run | flags | test BLEU | chrF2 | best valid BLEU (step) |"
  echo "|---|---|---|---|---|"
  for name in "${names[@]}"; do
    m=$dir/$name/metrics.jsonl
    bleu=$(field "$m" test bleu | awk '{printf "%.2f", $2}'); chrf=$(field "$m" test chrf | awk '{printf "%.2f", $2}')
    best=$(field "$m" valid best_bleu | tail -1 | awk '{printf "%.2f", $2}'); bstep=$(field "$m" valid best_step | tail -1 | awk '{print $2}')
    if grep -q '"event":"diverged"' "$m"; then bleu="diverged"; chrf="-"; fi
    printf '| %s | `%s` | %s | %s | %s (%s) |\n' "$name" "${flags[$name]}" "${bleu:-?}" "${chrf:-?}" "${best:-?}" "${bstep:-?}"
  done
} > "$dir/summary.md"
cat "$dir/summary.md"

if command -v gnuplot >/dev/null; then
  gnuplot <<GP
set terminal pngcairo size 720,440 font ",10"
set output "$dir/valid_loss.png"
set datafile separator ","
set key top right
set xlabel "update step"
set ylabel "validation loss (label-smoothed cross-entropy)"
set title "de-en (Debian gettext corpus): lr $lr, $steps steps, warm-up $warmup steps for post-warmup"
plot for [i=2:$((${#names[@]} + 1))] "$dir/valid_loss.csv" using 1:i with linespoints title columnhead(i)
GP
  echo "compare-norms: wrote $dir/valid_loss.png"
fi
echo "compare-norms: done in $((SECONDS - t0)) s"
