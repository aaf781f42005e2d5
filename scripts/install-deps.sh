#!/usr/bin/env bash
# Install the Debian 12 packages lnformer builds and tests with; only those not installed yet, with one
# `apt-get update` and only when something is missing. Runs as root, or through sudo when available.
#
#   bash scripts/install-deps.sh            # everything below
#   LNF_DEPS_SKIP_TORCH=1 bash scripts/...  # without python3-torch (large; only the PyTorch parity
#                                            # tests and the benchmark comparisons use it)
set -euo pipefail

packages=(
  # build
  cmake ninja-build g++ pkg-config
  # core dependencies of the library
  libeigen3-dev libdnnl-dev libfmt-dev
  # Debian's dnnl-config.cmake calls find_package(OpenCL) (a Recommends that --no-install-recommends
  # would otherwise drop)
  ocl-icd-opencl-dev opencl-headers
  # tests, tools and optional parts
  doctest-dev nlohmann-json3-dev libcli11-dev libsentencepiece-dev
  # the figures tool (examples/paper_figures renders its PNGs with gnuplot)
  gnuplot-nox
  # fuzzing (libFuzzer runtime)
  clang libclang-rt-14-dev
  # PyTorch for the parity tests and benchmark baselines, with OpenMP OpenBLAS behind numpy
  libopenblas0-openmp
  # data-parallel training (dist/mpi.hpp, the mpirun tests)
  libopenmpi-dev openmpi-bin
)
if [[ "${LNF_DEPS_SKIP_TORCH:-0}" != 1 ]]; then
  packages+=(python3-torch)
fi

missing=()
for p in "${packages[@]}"; do
  # `dpkg -s` also succeeds for removed-but-configured packages, so check the status line.
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done

if ((${#missing[@]} == 0)); then
  echo "install-deps: all ${#packages[@]} packages already installed"
  exit 0
fi

if [[ $(id -u) -eq 0 ]]; then
  as_root=()
elif command -v sudo >/dev/null 2>&1; then
  as_root=(sudo)
else
  echo "install-deps: missing packages: ${missing[*]}" >&2
  echo "install-deps: not root and no sudo; install them as root (apt-get install ${missing[*]})" >&2
  exit 1
fi

echo "install-deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
"${as_root[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -q
"${as_root[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}"
