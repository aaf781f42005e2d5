// Built when the package provides lnformer::mpi: the data-parallel header compiles and links against
// the exported target (MPI::MPI_CXX comes with it). Not started under mpirun: a plain run checks the
// one-process path.
#include <lnformer/dist/mpi.hpp>

#include <fmt/format.h>

int main() {
  lnformer::dist::SingleProcess one;
  float x = 2.f;
  one.allreduce_sum(std::span<float>(&x, 1));
  fmt::print("mpi consumer: launched by MPI: {}; single-process sum {}\n", lnformer::dist::launched_by_mpi(), x);
  return x == 2.f ? 0 : 1;
}
