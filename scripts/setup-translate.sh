#!/usr/bin/env bash
# Shared set-up of the translation scripts (sourced by run-example.sh and compare-norms.sh): install the
# Debian packages that are missing, build examples/translate in build-example/, and prepare the default
# corpus into data/de-en unless it is there. Sets $translate to the program.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

LNF_DEPS_SKIP_TORCH=1 bash scripts/install-deps.sh

# Its own build directory, so the test build's options stay as scripts/test.sh set them.
echo "setup: building examples/translate in build-example/"
cmake -S . -B build-example -G Ninja -DCMAKE_BUILD_TYPE=Release -DLNF_BUILD_TESTS=OFF \
  -DLNF_BUILD_BENCHMARKS=OFF -DLNF_BUILD_EXAMPLES=ON -DLNF_ENABLE_CUDA=OFF >/dev/null
cmake --build build-example --target translate
translate=$PWD/build-example/examples/translate

export OMP_NUM_THREADS=${OMP_NUM_THREADS:-$(nproc 2>/dev/null || echo 2)}
# Idle OpenMP threads spin between parallel regions rather than sleep: one training process per
# machine, threads = cores (benchmarks/pytorch_peer.sh measured a step 7-15% faster than passive).
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-active}

# The default corpus: German-English pairs from the gettext catalogs of pinned Debian packages
# (apt-get download into data/cache/debian; about a minute). Kept between runs.
if [[ ! -f data/de-en/manifest.json ]]; then
  "$translate" prepare --data data/de-en --cache data/cache/debian
fi
