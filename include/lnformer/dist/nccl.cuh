#pragma once
// dist::Nccl: the Communicator for data-parallel training on GPUs. Gradients and parameters move
// between GPUs with NCCL (from the CUDA toolkit) straight from device memory, on the GPU backend's
// stream; the small host-side collectives (loss sums, stop decisions, checkpoint metadata) and the
// bootstrap (rank 0's ncclUniqueId sent to every rank) go over MPI. CUDA C++: include it from a .cu
// file and link lnformer::nccl (CMake), which brings lnformer::cuda and lnformer::mpi.
//
//   int main(int argc, char** argv) {
//     lnformer::dist::MpiSession mpi(argc, argv);
//     lnformer::dist::Mpi world;
//     lnformer::dist::Nccl comm(world);      // picks this rank's GPU: before any Gpu tensor is made
//     Seq2Seq<PreLN, Gpu> model(cfg, 1);
//     Trainer trainer(model, Adam{}, InverseSqrt{}, {.comm = &comm});
//   }
//
// One rank per GPU: rank r uses device (local rank on its host) % (devices on the host); NCCL does not
// allow two ranks of one communicator on the same GPU. Errors (a failed NCCL call, a peer that died)
// are CommErrors naming the call; abort() aborts the NCCL communicator, then the MPI job.

#include <lnformer/backend/cuda/gpu.cuh>
#include <lnformer/dist/communicator.hpp>
#include <lnformer/dist/mpi.hpp>

#include <nccl.h>

#include <cstdlib>
#include <string>

namespace lnformer::dist::detail {
inline void nccl_check(ncclResult_t rc, char const* call) {
  if (rc == ncclSuccess) return;
  throw CommError(fmt::format("{} failed: {} ({})", call, ncclGetErrorString(rc), static_cast<int>(rc)));
}
}  // namespace lnformer::dist::detail

#define LNF_NCCL_CHECK(call) ::lnformer::dist::detail::nccl_check((call), #call)

namespace lnformer::dist {

/// This process's rank among the ranks on its host (MPI's shared-memory split of `comm`).
inline int local_rank(MPI_Comm comm = MPI_COMM_WORLD) {
  MPI_Comm node = MPI_COMM_NULL;
  LNF_MPI_CHECK(MPI_Comm_split_type(comm, MPI_COMM_TYPE_SHARED, 0, MPI_INFO_NULL, &node));
  int r = 0;
  int const rc = MPI_Comm_rank(node, &r);
  MPI_Comm_free(&node);
  LNF_MPI_CHECK(rc);
  return r;
}

class Nccl final : public Communicator {
 public:
  /// Selects this rank's GPU (cudaSetDevice) and joins the NCCL communicator of `host`'s ranks.
  /// Construct it before this thread makes any Gpu tensor (the context binds to the current device).
  explicit Nccl(Mpi& host) : host_(host) {
    int devices = 0;
    LNF_CUDA_CHECK(cudaGetDeviceCount(&devices));
    LNF_EXPECTS_AS(CommError, devices > 0, "dist::Nccl: no CUDA device on this host (rank {})", host.rank());
    LNF_EXPECTS_AS(CommError, cuda::detail::context_state() == 0,
                   "dist::Nccl: construct the communicator before this thread uses the GPU (it selects the device)");
    device_ = local_rank() % devices;
    LNF_CUDA_CHECK(cudaSetDevice(device_));
    ncclUniqueId id{};
    if (host.rank() == 0) LNF_NCCL_CHECK(ncclGetUniqueId(&id));
    host.broadcast(std::as_writable_bytes(std::span<ncclUniqueId>(&id, 1)));
    LNF_NCCL_CHECK(ncclCommInitRank(&comm_, host.size(), id, host.rank()));
  }
  Nccl(Nccl const&) = delete;
  Nccl& operator=(Nccl const&) = delete;
  ~Nccl() override {
    if (comm_ != nullptr) ncclCommDestroy(comm_);
  }

  [[nodiscard]] int rank() const override { return host_.rank(); }
  [[nodiscard]] int size() const override { return host_.size(); }
  [[nodiscard]] std::string_view name() const override { return "NCCL"; }
  [[nodiscard]] bool device_collectives() const override { return true; }
  /// The GPU this rank uses.
  [[nodiscard]] int device() const { return device_; }
  [[noreturn]] void abort(int code) override {
    if (comm_ != nullptr) ncclCommAbort(comm_);
    comm_ = nullptr;
    host_.abort(code);
  }

 protected:
  // Host memory: over MPI.
  void do_allreduce_sum(std::span<float> x) override { host_.allreduce_sum(x); }
  void do_allreduce_sum(std::span<double> x) override { host_.allreduce_sum(x); }
  void do_allreduce_sum(std::span<std::int64_t> x) override { host_.allreduce_sum(x); }
  void do_broadcast(std::span<std::byte> x, int root) override { host_.broadcast(x, root); }
  void do_barrier() override { host_.barrier(); }

  // Device memory: NCCL on the calling thread's GPU stream, in order with the kernels around it.
  // The stream is synchronised after each call so that a peer's failure surfaces here, as a
  // CommError, and so that the communication time in stats() is real time, not launch time.
  void do_allreduce_sum_device(float* x, std::size_t n) override {
    auto& ctx = cuda::context();
    LNF_NCCL_CHECK(ncclAllReduce(x, x, n, ncclFloat, ncclSum, comm_, ctx.stream()));
    wait(ctx);
  }
  void do_broadcast_device(float* x, std::size_t n, int root) override {
    auto& ctx = cuda::context();
    LNF_NCCL_CHECK(ncclBroadcast(x, x, n, ncclFloat, root, comm_, ctx.stream()));
    wait(ctx);
  }

 private:
  void wait(cuda::Context& ctx) {
    cudaError_t const err = cudaStreamSynchronize(ctx.stream());
    ncclResult_t async = ncclSuccess;
    ncclCommGetAsyncError(comm_, &async);
    LNF_NCCL_CHECK(async);
    LNF_CUDA_CHECK(err);
  }

  Mpi& host_;
  ncclComm_t comm_ = nullptr;
  int device_ = 0;
};

}  // namespace lnformer::dist
