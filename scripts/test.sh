#!/usr/bin/env bash
# The test command: from a clean clone on Debian 12 to every test run, twice.
#
#   1. install the missing Debian packages            (scripts/install-deps.sh)
#   2. build/       Release, everything (tests, benchmarks, examples; CUDA code if nvcc is there)
#   3. ctest in build/                                 (unit tests + consumer_install/_subdirectory);
#      then the tests labelled cpu_paths (+ parity) again with ONEDNN_MAX_CPU_ISA=AVX2 (on AVX-512
#      machines) and with LNF_SCALAR_PHILOX=1 LNF_SCALAR_BF16=1 (on AVX2 machines): paths the CPU would not take itself
#   4. build-asan/  Debug -O1 with LNF_SANITIZE=address,undefined, tests only
#   5. ctest in build-asan/
#   6. build-fuzz/  clang + libFuzzer + ASan/UBSan: fuzz for 60 s in all, split between the safetensors
#                   reader and the corpus reader + SentencePiece + batching (scripts/fuzz.sh)
#
# Every stage runs even when an earlier independent one failed (a failing test does not hide a
# sanitizer report), the builds keep going past a broken target (ninja -k 0), and the script exits
# non-zero if anything failed. Timings per stage are printed at the end.
#
# Environment knobs:
#   LNF_TEST_DEPS=0      skip the package check (step 1)
#   LNF_TEST_ASAN=0      skip the sanitizer build (steps 4-5)
#   LNF_TEST_JOBS=N      build parallelism (default: number of cores)
#   LNF_TEST_CTEST_JOBS=N  tests run at once (default 2; each test uses OMP_NUM_THREADS=2)
#   LNF_TEST_REGEX=re    run only the tests matching re (ctest -R), in both builds
#   LNF_TEST_FUZZ=0      skip the fuzzing stage (6)
#   LNF_FUZZ_SECONDS=N   how long the fuzzing stage runs, all targets together (default 60)
set -uo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.." || exit 1

jobs=${LNF_TEST_JOBS:-$(nproc 2>/dev/null || echo 2)}
ctest_jobs=${LNF_TEST_CTEST_JOBS:-2}
ctest_filter=()
if [[ -n "${LNF_TEST_REGEX:-}" ]]; then ctest_filter=(-R "$LNF_TEST_REGEX"); fi

stage_names=()
stage_results=()
stage_times=()
failed=0

# stage <name> <command...>: run, time and record one stage.
stage() {
  local name=$1
  shift
  echo
  echo "==== ${name}: $*"
  local t0 t1 rc
  t0=$(date +%s.%N)
  "$@"
  rc=$?
  t1=$(date +%s.%N)
  stage_names+=("$name")
  stage_times+=("$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.1f", b - a }')")
  if ((rc == 0)); then
    stage_results+=(ok)
  else
    stage_results+=("FAILED (exit $rc)")
    failed=1
  fi
  echo "==== ${name}: ${stage_results[-1]} in ${stage_times[-1]} s"
  return "$rc"
}

skip() {
  stage_names+=("$1")
  stage_results+=("skipped ($2)")
  stage_times+=("-")
}

# shellcheck disable=SC2317  # called through the EXIT trap
summary() {
  echo
  echo "==== summary"
  local i total
  for i in "${!stage_names[@]}"; do
    printf '  %-22s %8s s   %s\n' "${stage_names[$i]}" "${stage_times[$i]}" "${stage_results[$i]}"
  done
  total=$(awk -v a="$script_t0" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }')
  printf '  %-22s %8s s\n' "total" "$total"
  local isa="AVX2 only"
  grep -qw avx512f /proc/cpuinfo && isa="AVX-512"
  grep -qw avx512_bf16 /proc/cpuinfo && isa="AVX-512 with BF16"
  grep -qw avx2 /proc/cpuinfo || isa="no AVX2"
  echo "  CPU: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(nproc) cores, $isa"
  if ((failed)); then echo "==== FAILED"; else echo "==== all passed"; fi
}
script_t0=$(date +%s.%N)
trap summary EXIT

if [[ "${LNF_TEST_DEPS:-1}" != 0 ]]; then
  stage "install-deps" bash scripts/install-deps.sh || { echo "cannot continue without the dependencies"; exit 1; }
else
  skip "install-deps" "LNF_TEST_DEPS=0"
fi

# nvcc is often installed outside PATH; CMake's FindCUDAToolkit also looks in /usr/local/cuda.
if ! command -v nvcc >/dev/null 2>&1 && [[ -x /usr/local/cuda/bin/nvcc ]]; then
  export PATH="/usr/local/cuda/bin:$PATH"
fi

# --- Release: everything ------------------------------------------------------------------------
if stage "configure build/" cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Release; then
  stage "build build/" cmake --build build --parallel "$jobs" -- -k 0
  stage "ctest build/" ctest --test-dir build --output-on-failure -j "$ctest_jobs" "${ctest_filter[@]}"
  # The same CPU-path-dependent tests (label cpu_paths, and the PyTorch parity of whole models) again
  # on the paths this CPU would not take by itself: oneDNN limited to AVX2 (its AVX-512 brgemm and bf16
  # kernels never run on AVX2-only CI machines), and the portable loops of the library's own
  # run-time dispatch: dropout's Philox and the bf16 operand conversion (which the native run takes
  # with AVX2 and AVX-512 where the CPU has them).
  if grep -qw avx512f /proc/cpuinfo; then
    stage "ctest build/ AVX2" env ONEDNN_MAX_CPU_ISA=AVX2 \
      ctest --test-dir build --output-on-failure -j "$ctest_jobs" -L 'cpu_paths|parity' "${ctest_filter[@]}"
  else
    skip "ctest build/ AVX2" "no AVX-512 here: the native run above was the AVX2 path; oneDNN's AVX-512 paths (brgemm matmul, native bf16 GEMMs) were not run on this machine"
  fi
  if grep -qw avx2 /proc/cpuinfo; then
    stage "ctest build/ scalar Philox" env LNF_SCALAR_PHILOX=1 LNF_SCALAR_BF16=1 \
      ctest --test-dir build --output-on-failure -j "$ctest_jobs" -L cpu_paths "${ctest_filter[@]}"
  else
    skip "ctest build/ scalar Philox" "no AVX2 here: the native run above was the portable Philox path"
  fi
else
  skip "build build/" "configure failed"
  skip "ctest build/" "configure failed"
fi

# --- sanitizers: tests only ---------------------------------------------------------------------
# Debug keeps assertions (Eigen's included); -O1 keeps the finite-difference tests quick. CPU only:
# the CUDA configuration is checked by build/ above.
if [[ "${LNF_TEST_ASAN:-1}" != 0 ]]; then
  if stage "configure build-asan/" cmake -S . -B build-asan -G Ninja -DCMAKE_BUILD_TYPE=Debug \
      "-DCMAKE_CXX_FLAGS_DEBUG=-O1 -g" -DLNF_SANITIZE=address,undefined \
      -DLNF_BUILD_BENCHMARKS=OFF -DLNF_BUILD_EXAMPLES=OFF -DLNF_ENABLE_CUDA=OFF; then
    stage "build build-asan/" cmake --build build-asan --parallel "$jobs" -- -k 0
    stage "ctest build-asan/" ctest --test-dir build-asan --output-on-failure -j "$ctest_jobs" "${ctest_filter[@]}"
  else
    skip "build build-asan/" "configure failed"
    skip "ctest build-asan/" "configure failed"
  fi
else
  skip "sanitizers" "LNF_TEST_ASAN=0"
fi

# --- fuzzing: the safetensors reader and the corpus path against hostile files ------------------
if [[ "${LNF_TEST_FUZZ:-1}" != 0 ]]; then
  stage "fuzz" env FUZZ_SECONDS="${LNF_FUZZ_SECONDS:-60}" FUZZ_BUILD_DIR="$PWD/build-fuzz" bash scripts/fuzz.sh
else
  skip "fuzz" "LNF_TEST_FUZZ=0"
fi

exit "$failed"
