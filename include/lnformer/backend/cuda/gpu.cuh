#pragma once
// The GPU backend's core: error checks for CUDA and cuBLAS calls, device memory traits for `Gpu`,
// and the per-thread context (stream, cuBLAS handle, workspaces) created once per thread.
//
// Memory is stream-ordered (cudaMallocAsync/cudaFreeAsync on the context's stream, from the device's
// default pool with its release threshold raised): after the first steps, allocating and freeing the
// activations of a training step reuses pooled memory without a device synchronisation. Every kernel
// and cuBLAS call of this backend runs on the calling thread's stream; copies to the host synchronise
// it. Tensors of Gpu are meant to be used by one thread (the one that made them).

#if !defined(__CUDACC__)
#error "lnformer/backend/cuda/*.cuh is CUDA C++: include it from a .cu file compiled by nvcc (link lnformer::cuda)"
#endif

#include <lnformer/backend/cuda/tag.hpp>
#include <lnformer/core/error.hpp>
#include <lnformer/core/tensor.hpp>

#include <cublas_v2.h>
#include <cuda_runtime.h>

#include <fmt/format.h>

#include <algorithm>
#include <array>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <memory>
#include <string>
#include <string_view>

namespace lnformer::cuda::detail {

[[noreturn]] inline void raise_cuda(cudaError_t err, char const* call, SourceLocation loc) {
  std::string const msg = fmt::format("CUDA call `{}` failed: {} ({}) at {}", call, cudaGetErrorString(err),
                                      cudaGetErrorName(err), ::lnformer::detail::where(loc));
  if (err == cudaErrorMemoryAllocation) throw OutOfMemoryError(msg);
  throw BackendError(msg);
}

[[noreturn]] inline void raise_cublas(cublasStatus_t st, char const* call, SourceLocation loc) {
  throw BackendError(fmt::format("cuBLAS call `{}` failed: {} ({}) at {}", call, cublasGetStatusString(st),
                                 cublasGetStatusName(st), ::lnformer::detail::where(loc)));
}

}  // namespace lnformer::cuda::detail

/// LNF_CUDA_CHECK(call): run a CUDA runtime call; an error becomes lnformer::BackendError (or
/// OutOfMemoryError) naming the call, the CUDA error and the source location.
#define LNF_CUDA_CHECK(...)                                                                              \
  do {                                                                                                   \
    cudaError_t const lnf_err_ = (__VA_ARGS__);                                                          \
    if (lnf_err_ != cudaSuccess) [[unlikely]]                                                            \
      ::lnformer::cuda::detail::raise_cuda(lnf_err_, #__VA_ARGS__, ::lnformer::SourceLocation::current()); \
  } while (false)

/// LNF_CUBLAS_CHECK(call): the same for cuBLAS and cuBLASLt calls.
#define LNF_CUBLAS_CHECK(...)                                                                               \
  do {                                                                                                      \
    cublasStatus_t const lnf_st_ = (__VA_ARGS__);                                                           \
    if (lnf_st_ != CUBLAS_STATUS_SUCCESS) [[unlikely]]                                                      \
      ::lnformer::cuda::detail::raise_cublas(lnf_st_, #__VA_ARGS__, ::lnformer::SourceLocation::current()); \
  } while (false)

/// LNF_CUDA_LAUNCH_CHECK(kernel-name): after a kernel launch, report a launch error (bad
/// configuration, no device image for this GPU) naming the kernel.
#define LNF_CUDA_LAUNCH_CHECK(kernel)                                                                     \
  do {                                                                                                    \
    cudaError_t const lnf_err_ = cudaGetLastError();                                                      \
    if (lnf_err_ != cudaSuccess) [[unlikely]]                                                             \
      ::lnformer::cuda::detail::raise_cuda(lnf_err_, "launch of " #kernel, ::lnformer::SourceLocation::current()); \
  } while (false)

namespace lnformer::cuda {

/// True when the CUDA runtime sees at least one device. Never throws: tests use it to skip.
inline bool device_available() {
  int n = 0;
  return cudaGetDeviceCount(&n) == cudaSuccess && n > 0;
}

/// Why there is no usable device, for skip messages ("" when there is one).
inline std::string device_unavailable_reason() {
  int n = 0;
  cudaError_t const err = cudaGetDeviceCount(&n);
  if (err != cudaSuccess) return fmt::format("no CUDA device: {} ({})", cudaGetErrorString(err), cudaGetErrorName(err));
  if (n == 0) return "no CUDA device: cudaGetDeviceCount reports 0 devices";
  return {};
}

namespace detail {
/// This thread's context: 0 not made yet, 1 alive, 2 destroyed (thread exit). A tensor freed after
/// its thread's context is gone (a static Tensor<Gpu>) is then freed synchronously instead.
inline int& context_state() {
  thread_local int state = 0;
  return state;
}
}  // namespace detail

/// Per-thread CUDA state. `context()` returns this thread's instance, created on first use.
class Context {
 public:
  Context() {
    if (std::string why = device_unavailable_reason(); !why.empty())
      throw BackendError(fmt::format("lnformer Gpu backend: {}", why));
    try {
      LNF_CUDA_CHECK(cudaGetDevice(&device_));
      LNF_CUDA_CHECK(cudaGetDeviceProperties(&props_, device_));
      LNF_CUDA_CHECK(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking));
      // Keep freed blocks in the pool rather than returning them to the driver at every
      // synchronisation: the steady-state training step then allocates from the pool.
      LNF_CUDA_CHECK(cudaDeviceGetDefaultMemPool(&pool_, device_));
      std::uint64_t threshold = UINT64_MAX;
      LNF_CUDA_CHECK(cudaMemPoolSetAttribute(pool_, cudaMemPoolAttrReleaseThreshold, &threshold));
      LNF_CUBLAS_CHECK(cublasCreate(&blas_));
      LNF_CUBLAS_CHECK(cublasSetStream(blas_, stream_));
      // f32 GEMMs stay f32 (no silent TF32): parity with the CPU backend is checked to 1e-4.
      LNF_CUBLAS_CHECK(cublasSetMathMode(blas_, CUBLAS_DEFAULT_MATH));
      blas_workspace_ = pool_allocate(kBlasWorkspaceBytes, "cuBLAS workspace");
      LNF_CUBLAS_CHECK(cublasSetWorkspace(blas_, blas_workspace_, kBlasWorkspaceBytes));
    } catch (...) {
      release();
      throw;
    }
    detail::context_state() = 1;
  }
  Context(Context const&) = delete;
  Context& operator=(Context const&) = delete;
  ~Context() {
    release();
    detail::context_state() = 2;
  }

  [[nodiscard]] cudaStream_t stream() const { return stream_; }
  [[nodiscard]] cublasHandle_t blas() const { return blas_; }
  [[nodiscard]] cudaDeviceProp const& properties() const { return props_; }
  [[nodiscard]] int device() const { return device_; }
  [[nodiscard]] int multiprocessors() const { return props_.multiProcessorCount; }

  /// Device buffer `slot` (0 .. kWorkspaceSlots-1) of this thread, at least `bytes` long, for an op's
  /// scratch (reduction partials, packed operands, error flags); one op uses distinct slots. Memory
  /// comes from the same stream-ordered pool as tensors, so a buffer that grows reuses what tensors
  /// freed, and its old block is freed in stream order (kernels still reading it finish first). Valid
  /// until the next call for the same slot with more bytes.
  static constexpr int kWorkspaceSlots = 4;
  static constexpr std::size_t kBlasWorkspaceBytes = std::size_t{32} << 20;
  [[nodiscard]] void* workspace(int slot, std::size_t bytes) {
    LNF_EXPECTS(slot >= 0 && slot < kWorkspaceSlots, "cuda::Context::workspace: slot {} of {}", slot,
                kWorkspaceSlots);
    auto& w = workspace_[static_cast<std::size_t>(slot)];
    if (w.bytes < bytes) {
      std::size_t const size = (bytes + 255) / 256 * 256;
      void* fresh = pool_allocate(size, fmt::format("workspace slot {}", slot));
      if (w.data != nullptr) cudaFreeAsync(w.data, stream_);
      w.data = fresh;
      w.bytes = size;
    }
    return w.data;
  }

  /// Wait for everything queued on this thread's stream.
  void synchronize() const { LNF_CUDA_CHECK(cudaStreamSynchronize(stream_)); }

 private:
  void* pool_allocate(std::size_t bytes, std::string const& what) {
    void* p = nullptr;
    cudaError_t const err = cudaMallocAsync(&p, bytes, stream_);
    if (err != cudaSuccess) {
      cudaGetLastError();
      std::string const msg = fmt::format("Gpu {}: cannot allocate {} bytes: {}", what, bytes, cudaGetErrorString(err));
      if (err == cudaErrorMemoryAllocation) throw OutOfMemoryError(msg);
      throw BackendError(msg);
    }
    return p;
  }
  // Errors are ignored here: at process exit the runtime may already be shutting down.
  void release() noexcept {
    if (stream_ != nullptr) {
      for (auto& w : workspace_)
        if (w.data != nullptr) cudaFreeAsync(w.data, stream_);
      if (blas_workspace_ != nullptr) cudaFreeAsync(blas_workspace_, stream_);
      cudaStreamSynchronize(stream_);
    }
    workspace_ = {};
    blas_workspace_ = nullptr;
    if (blas_ != nullptr) cublasDestroy(blas_);
    blas_ = nullptr;
    if (stream_ != nullptr) cudaStreamDestroy(stream_);
    stream_ = nullptr;
  }

  struct Workspace {
    void* data = nullptr;
    std::size_t bytes = 0;
  };
  int device_ = 0;
  cudaDeviceProp props_{};
  cudaStream_t stream_ = nullptr;
  cudaMemPool_t pool_ = nullptr;
  cublasHandle_t blas_ = nullptr;
  void* blas_workspace_ = nullptr;
  std::array<Workspace, kWorkspaceSlots> workspace_{};
};

inline Context& context() {
  thread_local Context ctx;
  return ctx;
}

/// Launch geometry for a grid-stride loop over n elements.
inline constexpr int kThreads = 256;
inline unsigned blocks_for(std::int64_t n, int threads = kThreads) {
  std::int64_t const b = (n + threads - 1) / threads;
  return static_cast<unsigned>(std::clamp<std::int64_t>(b, 1, std::int64_t{65535} * 8));
}

}  // namespace lnformer::cuda

namespace lnformer {

template <>
struct BackendTraits<Gpu> {
  static constexpr bool host_accessible = false;
  static constexpr std::string_view name = "gpu";
  static constexpr std::size_t alignment = 256;

  static void* allocate(std::size_t bytes) {
    auto& ctx = cuda::context();
    void* p = nullptr;
    cudaError_t const err = cudaMallocAsync(&p, bytes == 0 ? 1 : bytes, ctx.stream());
    if (err != cudaSuccess) {
      cudaGetLastError();  // clear the sticky-free error state of the runtime API
      std::size_t free_b = 0, total_b = 0;
      cudaMemGetInfo(&free_b, &total_b);
      std::string const msg =
          fmt::format("Gpu: cannot allocate {} bytes ({:.1f} MiB) on device {}: {} ({:.1f} MiB free of {:.1f} MiB)",
                      bytes, static_cast<double>(bytes) / (1 << 20), ctx.device(), cudaGetErrorString(err),
                      static_cast<double>(free_b) / (1 << 20), static_cast<double>(total_b) / (1 << 20));
      if (err == cudaErrorMemoryAllocation) throw OutOfMemoryError(msg);
      throw BackendError(msg);
    }
    return p;
  }
  /// In the order of this thread's stream. Tensors are used by the thread that made them; one freed
  /// where there is no live context (after thread exit, or on a thread that never used the GPU) is
  /// freed synchronously, without creating a context for it.
  static void deallocate(void* p) noexcept {
    if (cuda::detail::context_state() == 1) cudaFreeAsync(p, cuda::context().stream());
    else cudaFree(p);
  }
  static void copy(void* dst, void const* src, std::size_t bytes) {
    LNF_CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToDevice, cuda::context().stream()));
  }
  static void to_host(void* dst, void const* src, std::size_t bytes) {
    auto& ctx = cuda::context();
    LNF_CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToHost, ctx.stream()));
    ctx.synchronize();
  }
  static void from_host(void* dst, void const* src, std::size_t bytes) {
    auto& ctx = cuda::context();
    LNF_CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyHostToDevice, ctx.stream()));
    ctx.synchronize();  // the host buffer may be freed as soon as we return
  }
  static void fill_zero(void* dst, std::size_t bytes) {
    LNF_CUDA_CHECK(cudaMemsetAsync(dst, 0, bytes, cuda::context().stream()));
  }
};

}  // namespace lnformer
