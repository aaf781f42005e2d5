// Built when the package (or subproject) provides lnformer::nccl: the NCCL communicator's header
// compiles with the GPU backend and links against libnccl and MPI through that one target. A plain
// run (not under mpirun, maybe without a GPU) only reports NCCL's version and the reducer's type.
#include <lnformer/dist/nccl.cuh>
#include <lnformer/lnformer.hpp>
#include <lnformer/version.hpp>

#include <fmt/format.h>

#include <type_traits>

int main() {
  using namespace lnformer;
  static_assert(std::is_base_of_v<dist::Communicator, dist::Nccl>);
  static_assert(std::is_base_of_v<GradientReadyHook<Gpu>, dist::GradientReducer<Gpu>>);
  int version = 0;
  if (ncclGetVersion(&version) != ncclSuccess) return 1;
  fmt::print("lnformer {} nccl consumer ok: NCCL {}.{}.{}; launched by MPI: {}\n", version_string, version / 10000,
             version / 100 % 100, version % 100, dist::launched_by_mpi());
  return 0;
}
