#pragma once
// GPU embedding: a row gather forward, a scatter-add backward. Contract in ops/embedding.hpp.
//
// Ids live on the device, so their range is checked there: a first kernel records the smallest flat
// position of an id outside [0, V) in a device word (workspace slot 2, atomicMin), the op's kernel then
// does nothing when that word is set (so, as the contract requires, nothing is written for bad ids), and
// the word is copied to the host after (one stream synchronisation per call); a bad id throws the
// CPU's ValueError, naming the id, its position and V.
//
// The backward adds scale * dy[n, :] into dtable[ids[n], :] with float atomicAdd, one thread per
// element of dy. Every addition is one float rounding, as on the CPU, but the order in which the tokens
// of a repeated id are added depends on scheduling, so the low bits of those rows may differ from run to
// run (and from the CPU, which adds in token order). The padding row, and every row no token names, is
// not touched.

#include <lnformer/backend/cuda/gpu.cuh>
#include <lnformer/ops/embedding.hpp>

#include <cstddef>
#include <cstdint>

namespace lnformer::cuda::detail::embedding {

// The kernels are templates (instantiated for float and int32 ids): a non-template __global__ function in
// a header would be defined in every .cu file including it.

/// The "no bad id" value of the device word: larger than any position.
inline constexpr unsigned long long kNoBadId = ~0ull;

template <class Id>
__global__ void find_bad_id_kernel(Id const* ids, std::int64_t N, std::int64_t V, unsigned long long* first_bad) {
  std::int64_t const stride = static_cast<std::int64_t>(gridDim.x) * blockDim.x;
  for (std::int64_t n = static_cast<std::int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; n < N; n += stride) {
    Id const id = ids[n];
    if (id < 0 || id >= V) atomicMin(first_bad, static_cast<unsigned long long>(n));
  }
}

/// y[n * d + c] = scale * table[ids[n] * d + c], one thread per element of y.
template <class T, class Id>
__global__ void forward_kernel(T* y, T const* table, Id const* ids, std::int64_t total, std::int64_t d, T scale,
                               unsigned long long const* first_bad) {
  if (*first_bad != kNoBadId) return;
  std::int64_t const stride = static_cast<std::int64_t>(gridDim.x) * blockDim.x;
  for (std::int64_t i = static_cast<std::int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < total; i += stride) {
    std::int64_t const n = i / d, c = i - n * d;
    y[i] = scale * table[static_cast<std::int64_t>(ids[n]) * d + c];
  }
}

/// dtable[ids[n] * d + c] += scale * dy[n * d + c] for ids[n] != padding_idx (atomic: ids repeat).
template <class T, class Id>
__global__ void backward_kernel(T* dtable, T const* dy, Id const* ids, std::int64_t total, std::int64_t d, T scale,
                                Id padding_idx, unsigned long long const* first_bad) {
  if (*first_bad != kNoBadId) return;
  std::int64_t const stride = static_cast<std::int64_t>(gridDim.x) * blockDim.x;
  for (std::int64_t i = static_cast<std::int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < total; i += stride) {
    std::int64_t const n = i / d, c = i - n * d;
    Id const id = ids[n];
    if (id == padding_idx) continue;
    atomicAdd(dtable + static_cast<std::int64_t>(id) * d + c, scale * dy[i]);
  }
}

/// Queues the range check of ids against [0, V); returns the device word the op's kernel must test.
inline unsigned long long* queue_id_check(std::int32_t const* ids, std::int64_t N, std::int64_t V) {
  auto& ctx = context();
  auto* first_bad = static_cast<unsigned long long*>(ctx.workspace(2, sizeof(unsigned long long)));
  LNF_CUDA_CHECK(cudaMemsetAsync(first_bad, 0xFF, sizeof(unsigned long long), ctx.stream()));  // kNoBadId
  find_bad_id_kernel<std::int32_t><<<blocks_for(N), kThreads, 0, ctx.stream()>>>(ids, N, V, first_bad);
  LNF_CUDA_LAUNCH_CHECK(find_bad_id_kernel);
  return first_bad;
}

/// Waits for the stream and throws the CPU's ValueError if the check found an id outside [0, V).
inline void raise_if_bad_id(char const* op, unsigned long long const* first_bad, ops::IView<Gpu> ids, std::int64_t V,
                            Shape const& table_shape) {
  auto& ctx = context();
  unsigned long long bad = kNoBadId;
  LNF_CUDA_CHECK(cudaMemcpyAsync(&bad, first_bad, sizeof bad, cudaMemcpyDeviceToHost, ctx.stream()));
  ctx.synchronize();
  if (bad == kNoBadId) return;
  auto const n = static_cast<std::int64_t>(bad);
  std::int32_t id = 0;
  LNF_CUDA_CHECK(cudaMemcpyAsync(&id, ids.data() + n, sizeof id, cudaMemcpyDeviceToHost, ctx.stream()));
  ctx.synchronize();
  LNF_EXPECTS_AS(
      ValueError, id >= 0 && id < V,
      "{}: id {} at position {} of ids (shape {}) is out of range [0, V = {}) for a table of shape {}", op, id, n,
      ids.shape(), V, table_shape);
  throw BackendError(fmt::format("{}: the device flagged id {} at position {} of ids as out of range [0, {}), "
                                 "but it is in range",
                                 op, id, n, V));  // unreachable unless the ids changed under us
}

}  // namespace lnformer::cuda::detail::embedding

namespace lnformer::ops {

inline void embedding_forward(Gpu, View<Gpu> y, CView<Gpu> table, IView<Gpu> ids, float scale) {
  check::embedding_forward<Gpu>(y, table, ids);
  std::int64_t const N = ids.numel(), V = table.size(0), d = table.size(1);
  if (N == 0) return;
  namespace k = cuda::detail::embedding;
  unsigned long long const* first_bad = k::queue_id_check(ids.data(), N, V);
  if (std::int64_t const total = N * d; total > 0) {
    k::forward_kernel<float, std::int32_t><<<cuda::blocks_for(total), cuda::kThreads, 0, cuda::context().stream()>>>(
        y.data(), table.data(), ids.data(), total, d, scale, first_bad);
    LNF_CUDA_LAUNCH_CHECK(embedding_forward_kernel);
  }
  k::raise_if_bad_id("embedding_forward", first_bad, ids, V, table.shape());
}

inline void embedding_backward(Gpu, View<Gpu> dtable, CView<Gpu> dy, IView<Gpu> ids, float scale,
                               std::int32_t padding_idx = -1) {
  check::embedding_backward<Gpu>(dtable, dy, ids, padding_idx);
  std::int64_t const N = ids.numel(), V = dtable.size(0), d = dtable.size(1);
  if (N == 0) return;
  namespace k = cuda::detail::embedding;
  unsigned long long const* first_bad = k::queue_id_check(ids.data(), N, V);
  if (std::int64_t const total = N * d; total > 0) {
    k::backward_kernel<float, std::int32_t><<<cuda::blocks_for(total), cuda::kThreads, 0, cuda::context().stream()>>>(
        dtable.data(), dy.data(), ids.data(), total, d, scale, padding_idx, first_bad);
    LNF_CUDA_LAUNCH_CHECK(embedding_backward_kernel);
  }
  k::raise_if_bad_id("embedding_backward", first_bad, ids, V, dtable.shape());
}

}  // namespace lnformer::ops
