#!/usr/bin/env bash
# Compile cost of the header-only library: wall time and peak memory (GNU time's maximum resident set)
# of compiling, with the build's own flags, one at a time, (1) a translation unit with one
# Seq2Seq<PreLN, Cpu> training step (benchmarks/compile_cost/one_step.cpp) and (2) the policy-matrix
# benchmark, which instantiates every norm of the policy list x 4 optimizers x 6 schedules: its main
# and one unit per norm (cells_<norm>.cpp, generated in the build tree from the list). REPEAT times
# each (default 1), into a scratch object; the build tree is not touched.
#
#   bash benchmarks/compile_cost.sh            (BUILD=build by default; configure it first)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
build=${BUILD:-build}
repeat=${REPEAT:-1}
[[ -f $build/build.ninja ]] || { echo "compile_cost.sh: configure $build first (cmake -S . -B $build -G Ninja -DCMAKE_BUILD_TYPE=Release)" >&2; exit 1; }
[[ -x /usr/bin/time ]] || { echo "compile_cost.sh: needs GNU time (apt-get install time)" >&2; exit 1; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
printf '%-52s %9s %9s\n' "translation unit" "seconds" "peak MB"
for target in compile_cost_one_step bench_policy_matrix; do
  # The compile commands ninja would run for the target's own sources, writing elsewhere.
  mapfile -t cmds < <(ninja -C "$build" -t commands "$target" | grep -F -- " -c " | grep -F -- "/$target.dir/")
  ((${#cmds[@]} > 0)) || { echo "compile_cost.sh: no compile command for $target in $build" >&2; exit 1; }
  for _ in $(seq "$repeat"); do
    total=0 worst=0
    for cmd in "${cmds[@]}"; do
      src=${cmd##* -c }
      cmd=$(sed -E "s# -MD -MT [^ ]+ -MF [^ ]+##; s# -o [^ ]+\.o # -o $tmp/out.o #" <<< "$cmd")
      (cd "$build" && /usr/bin/time -f "%e %M" -o "$tmp/time" bash -c "$cmd")
      read -r secs kb < "$tmp/time"
      printf '%-52s %9.1f %9.0f\n' "$target: ${src#"$PWD"/}" "$secs" "$((kb / 1024))"
      total=$(awk -v a="$total" -v b="$secs" 'BEGIN { print a + b }')
      worst=$(( kb / 1024 > worst ? kb / 1024 : worst ))
    done
    ((${#cmds[@]} == 1)) ||
      printf '%-52s %9.1f %9.0f   (sum of seconds; largest peak)\n' "$target: all ${#cmds[@]} units" "$total" "$worst"
  done
done
echo "compiler: $(c++ --version | head -1); $(nproc) cores; one compile at a time"
