#!/usr/bin/env bash
# Data-parallel scaling on this machine: bench_data_parallel under mpirun, rank 0 alone and then all
# ranks, each rank with THREADS OpenMP threads (default 1, so that 2 ranks use the 2 cores).
#
#   bash benchmarks/data_parallel.sh [bench_data_parallel options]     e.g. --steps 10 --json dp.json
#
# Environment: BUILD (default build), RANKS (default 2), THREADS (default 1). Runs as root too (Open
# MPI needs to be told) and oversubscribed when RANKS x THREADS exceeds the cores.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
build=${BUILD:-build}
bin=$build/benchmarks/bench_data_parallel
[[ -x $bin ]] || { echo "data_parallel.sh: no $bin (build with MPI: bash scripts/install-deps.sh; cmake --build $build)" >&2; exit 1; }
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMP_WAIT_POLICY=passive
exec mpirun -np "${RANKS:-2}" --oversubscribe --bind-to none --mca btl_vader_single_copy_mechanism none \
  -x OMP_NUM_THREADS="${THREADS:-1}" -x OMP_WAIT_POLICY "$bin" "$@"
