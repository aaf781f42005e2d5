#!/usr/bin/env bash
# The main job, from a fresh clone: install what is missing, build the example trainer, run it.
#
#   bash scripts/run-example.sh                      PreLN, no warm-up, reverse task (about 2 minutes
#                                                    on two cores)
#   bash scripts/run-example.sh --norm post --warmup 400
#   bash scripts/run-example.sh --help               every option
#
# Arguments are passed to the program (build-example/examples/reverse). Until the translation trainer
# (examples/translate) lands, this is a small Seq2Seq learning to reverse token sequences: it prints
# progress, then held-out accuracy and example outputs.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

LNF_DEPS_SKIP_TORCH=1 bash scripts/install-deps.sh

# Its own build directory, so the test build's options stay as scripts/test.sh set them.
cmake -S . -B build-example -G Ninja -DCMAKE_BUILD_TYPE=Release -DLNF_BUILD_TESTS=OFF \
  -DLNF_BUILD_BENCHMARKS=OFF -DLNF_BUILD_EXAMPLES=ON -DLNF_ENABLE_CUDA=OFF >/dev/null
cmake --build build-example --target reverse

export OMP_NUM_THREADS=${OMP_NUM_THREADS:-$(nproc 2>/dev/null || echo 2)}
exec ./build-example/examples/reverse "$@"
