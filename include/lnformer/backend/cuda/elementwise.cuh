#pragma once
// GPU element-wise ops: grid-stride kernels over flat arrays, a strided gather for copy, and
// deterministic reductions. Contract in ops/elementwise.hpp; the arithmetic mirrors the CPU backend's
// (same operand order; the device may fuse a multiply-add).
//
// Reductions (sum_squares, global_l2_norm, the dw of scale_add_backward) accumulate in double and are
// deterministic: every block writes its partial sum (a fixed shared-memory tree over a fixed thread
// -> element assignment) into workspace slot 1, then one block adds the partials in a fixed order.
// The launch geometry depends only on the sizes and the device's multiprocessor count, so the same
// inputs on the same GPU give the same bits. sum_squares and global_l2_norm copy one double to the host
// (which synchronises the stream); global_l2_norm writes the partials of all its tensors first and
// copies once.
//
// Every kernel is a template (instantiated for float): a non-template __global__ function in a header
// would be defined again in every .cu file that includes it, and such programs would not link.

#include <lnformer/backend/cuda/gpu.cuh>
#include <lnformer/ops/elementwise.hpp>

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <span>

namespace lnformer::cuda::detail::elementwise {

// --- element-wise kernels ---------------------------------------------------------------------------

__device__ inline std::int64_t first_index() {
  return static_cast<std::int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
}
__device__ inline std::int64_t grid_stride() { return static_cast<std::int64_t>(gridDim.x) * blockDim.x; }

template <class T>
__global__ void add_kernel(T* y, T const* a, T const* b, std::int64_t n) {
  for (std::int64_t i = first_index(); i < n; i += grid_stride()) y[i] = a[i] + b[i];
}

/// How the residual gate w enters: absent (factor alpha), a scalar [1] (alpha * w[0]) or per feature [d].
enum class Gate { none, scalar, per_feature };

/// y = alpha * x * w + f. Scalar or absent gate: (alpha * w[0]) * x + f, as the CPU; per feature:
/// alpha * x[i] * w[i % d] + f[i].
template <Gate G>
__global__ void scale_add_kernel(float* y, float const* x, float const* w, float alpha, float const* f,
                                 std::int64_t n, std::int64_t d) {
  float a = alpha;
  if constexpr (G == Gate::scalar) a = alpha * w[0];
  for (std::int64_t i = first_index(); i < n; i += grid_stride()) {
    if constexpr (G == Gate::per_feature)
      y[i] = alpha * x[i] * w[i % d] + f[i];
    else
      y[i] = a * x[i] + f[i];
  }
}

/// dx = alpha * dy * w (assign), gate handled as in scale_add_kernel.
template <Gate G>
__global__ void scale_backward_kernel(float* dx, float const* dy, float const* w, float alpha, std::int64_t n,
                                      std::int64_t d) {
  float a = alpha;
  if constexpr (G == Gate::scalar) a = alpha * w[0];
  for (std::int64_t i = first_index(); i < n; i += grid_stride()) {
    if constexpr (G == Gate::per_feature)
      dx[i] = alpha * dy[i] * w[i % d];
    else
      dx[i] = a * dy[i];
  }
}

template <class T>
__global__ void scale_kernel(T* y, T s, std::int64_t n) {
  for (std::int64_t i = first_index(); i < n; i += grid_stride()) y[i] *= s;
}

template <class T>
__global__ void axpy_kernel(T* y, T a, T const* x, std::int64_t n) {
  for (std::int64_t i = first_index(); i < n; i += grid_stride()) y[i] += a * x[i];
}

template <class T>
__global__ void fill_kernel(T* y, T v, std::int64_t n) {
  for (std::int64_t i = first_index(); i < n; i += grid_stride()) y[i] = v;
}

/// The dimensions of a strided source, innermost first (size[0], stride[0] is the fastest-varying one).
struct StridedLayout {
  int rank = 0;
  std::int64_t size[kMaxRank] = {};
  std::int64_t stride[kMaxRank] = {};
};

/// y[i] = x[offset of row-major index i]: y contiguous, x strided.
template <class T>
__global__ void strided_copy_kernel(T* y, T const* x, std::int64_t n, StridedLayout src) {
  for (std::int64_t i = first_index(); i < n; i += grid_stride()) {
    std::int64_t rem = i, off = 0;
#pragma unroll
    for (int k = 0; k < kMaxRank; ++k) {  // fixed trip count: src's arrays stay in registers
      if (k < src.rank) {
        std::int64_t const idx = rem % src.size[k];
        rem /= src.size[k];
        off += idx * src.stride[k];
      }
    }
    y[i] = x[off];
  }
}

// --- deterministic reductions -----------------------------------------------------------------------

/// Threads per reduction block: a power of two (the shared-memory tree halves it).
inline constexpr int kReduceThreads = kThreads;
static_assert((kReduceThreads & (kReduceThreads - 1)) == 0, "the reduction tree needs a power of two");

/// Sum of v over the block (blockDim.x == kReduceThreads), in a fixed order; every thread gets it.
/// Holds one __shared__ buffer: at most one call per kernel.
__device__ inline double block_sum(double v) {
  __shared__ double buf[kReduceThreads];
  buf[threadIdx.x] = v;
  __syncthreads();
  for (int s = kReduceThreads / 2; s > 0; s >>= 1) {
    if (static_cast<int>(threadIdx.x) < s) buf[threadIdx.x] += buf[threadIdx.x + s];
    __syncthreads();
  }
  return buf[0];
}

/// partials[blockIdx.x] = this block's share of sum(a[i]^2) (Square) or sum(a[i] * b[i]), in double.
template <bool Square, class T>
__global__ void partial_sums_kernel(T const* a, T const* b, std::int64_t n, double* partials) {
  double acc = 0.0;
  for (std::int64_t i = first_index(); i < n; i += grid_stride()) {
    double const ai = a[i];
    if constexpr (Square)
      acc += ai * ai;
    else
      acc += ai * static_cast<double>(b[i]);
  }
  double const s = block_sum(acc);
  if (threadIdx.x == 0) partials[blockIdx.x] = s;
}

/// One block: s = sum of partials[0, count) in a fixed order; then *out = s, or, with dw, the CPU's
/// dw[0] = (float)(dw[0] + (double)alpha * s).
template <class T>
__global__ void final_sum_kernel(double const* partials, std::int64_t count, double* out, T* dw, T alpha) {
  double acc = 0.0;
  for (std::int64_t k = threadIdx.x; k < count; k += blockDim.x) acc += partials[k];
  double const s = block_sum(acc);
  if (threadIdx.x == 0) {
    if (dw != nullptr)
      dw[0] = static_cast<T>(dw[0] + static_cast<double>(alpha) * s);
    else
      *out = s;
  }
}

/// Column sums of dy * x over [rows, d]: block (kColumnTile, kRowLanes) covers kColumnTile columns of the
/// rows [blockIdx.y * rows_per_chunk, +rows_per_chunk); lane ty takes every kRowLanes-th row, then lane 0
/// adds the kRowLanes lane sums in order into partials[blockIdx.y * d + c].
inline constexpr int kColumnTile = 32;
inline constexpr int kRowLanes = 8;

template <class T>
__global__ void column_partials_kernel(T const* dy, T const* x, std::int64_t rows, std::int64_t d,
                                       std::int64_t rows_per_chunk, double* partials) {
  __shared__ double buf[kRowLanes][kColumnTile];
  std::int64_t const c = static_cast<std::int64_t>(blockIdx.x) * kColumnTile + threadIdx.x;
  std::int64_t const r0 = static_cast<std::int64_t>(blockIdx.y) * rows_per_chunk;
  std::int64_t const r1 = r0 + rows_per_chunk < rows ? r0 + rows_per_chunk : rows;
  double acc = 0.0;
  if (c < d)
    for (std::int64_t r = r0 + threadIdx.y; r < r1; r += kRowLanes)
      acc += static_cast<double>(dy[r * d + c]) * x[r * d + c];
  buf[threadIdx.y][threadIdx.x] = acc;
  __syncthreads();
  if (threadIdx.y == 0 && c < d) {
    double s = 0.0;
    for (int k = 0; k < kRowLanes; ++k) s += buf[k][threadIdx.x];
    partials[static_cast<std::int64_t>(blockIdx.y) * d + c] = s;
  }
}

/// dw[c] = (float)(dw[c] + (double)alpha * sum over chunks k of partials[k * d + c]), k in order.
template <class T>
__global__ void column_accumulate_kernel(double const* partials, std::int64_t chunks, std::int64_t d, T* dw, T alpha) {
  for (std::int64_t c = first_index(); c < d; c += grid_stride()) {
    double s = 0.0;
    for (std::int64_t k = 0; k < chunks; ++k) s += partials[k * d + c];
    dw[c] = static_cast<T>(dw[c] + static_cast<double>(alpha) * s);
  }
}

/// Blocks of a partial-sum launch over n elements: enough to fill the device a few times over.
inline unsigned reduce_blocks(std::int64_t n) {
  auto const cap = static_cast<unsigned>(4 * context().multiprocessors());
  return std::min(blocks_for(n, kReduceThreads), std::max(cap, 1u));
}

/// Sum over xs of sum(x^2) in double: partials of every non-empty tensor into workspace slot 1, one final
/// block, one copy to the host.
inline double sum_of_squares(std::span<CView<Gpu> const> xs) {
  std::int64_t total = 0;
  for (auto const& x : xs)
    if (!x.empty()) total += reduce_blocks(x.numel());
  if (total == 0) return 0.0;
  auto& ctx = context();
  auto* partials = static_cast<double*>(ctx.workspace(1, static_cast<std::size_t>(total + 1) * sizeof(double)));
  double* result = partials + total;
  std::int64_t offset = 0;
  for (auto const& x : xs) {
    if (x.empty()) continue;
    unsigned const blocks = reduce_blocks(x.numel());
    partial_sums_kernel<true, float><<<blocks, kReduceThreads, 0, ctx.stream()>>>(x.data(), nullptr, x.numel(),
                                                                                   partials + offset);
    LNF_CUDA_LAUNCH_CHECK(partial_sums_kernel);
    offset += blocks;
  }
  final_sum_kernel<float><<<1, kReduceThreads, 0, ctx.stream()>>>(partials, total, result, nullptr, 0.f);
  LNF_CUDA_LAUNCH_CHECK(final_sum_kernel);
  double s = 0.0;
  LNF_CUDA_CHECK(cudaMemcpyAsync(&s, result, sizeof(double), cudaMemcpyDeviceToHost, ctx.stream()));
  ctx.synchronize();
  return s;
}

/// dw += alpha * sum over rows of dy * x, reduced to w's shape: [1] (all elements) or [d] (columns).
inline void accumulate_gate_gradient(float* dw, std::int64_t d, float const* dy, float const* x, std::int64_t n,
                                     float alpha) {
  auto& ctx = context();
  if (d == 1) {
    unsigned const blocks = reduce_blocks(n);
    auto* partials = static_cast<double*>(ctx.workspace(1, blocks * sizeof(double)));
    partial_sums_kernel<false, float><<<blocks, kReduceThreads, 0, ctx.stream()>>>(dy, x, n, partials);
    LNF_CUDA_LAUNCH_CHECK(partial_sums_kernel);
    final_sum_kernel<float><<<1, kReduceThreads, 0, ctx.stream()>>>(partials, blocks, nullptr, dw, alpha);
    LNF_CUDA_LAUNCH_CHECK(final_sum_kernel);
    return;
  }
  // Per feature: chunks of rows so that about 4 blocks per multiprocessor run; grid.y <= 65535.
  std::int64_t const rows = n / d;
  std::int64_t const column_blocks = (d + kColumnTile - 1) / kColumnTile;
  std::int64_t const target = 4 * static_cast<std::int64_t>(ctx.multiprocessors());
  std::int64_t chunks = std::clamp<std::int64_t>((target + column_blocks - 1) / column_blocks, 1,
                                                 std::min<std::int64_t>(rows, 65535));
  std::int64_t const rows_per_chunk = (rows + chunks - 1) / chunks;
  chunks = (rows + rows_per_chunk - 1) / rows_per_chunk;  // no empty chunk
  auto* partials =
      static_cast<double*>(ctx.workspace(1, static_cast<std::size_t>(chunks * d) * sizeof(double)));
  dim3 const grid(static_cast<unsigned>(column_blocks), static_cast<unsigned>(chunks));
  dim3 const block(kColumnTile, kRowLanes);
  column_partials_kernel<float><<<grid, block, 0, ctx.stream()>>>(dy, x, rows, d, rows_per_chunk, partials);
  LNF_CUDA_LAUNCH_CHECK(column_partials_kernel);
  column_accumulate_kernel<float><<<blocks_for(d), kThreads, 0, ctx.stream()>>>(partials, chunks, d, dw, alpha);
  LNF_CUDA_LAUNCH_CHECK(column_accumulate_kernel);
}

}  // namespace lnformer::cuda::detail::elementwise

namespace lnformer::ops {

inline void add(Gpu, View<Gpu> y, CView<Gpu> a, CView<Gpu> b) {
  check::add<Gpu>(y, a, b);
  std::int64_t const n = y.numel();
  if (n == 0) return;
  namespace k = cuda::detail::elementwise;
  cudaStream_t const stream = cuda::context().stream();
  k::add_kernel<float><<<cuda::blocks_for(n), cuda::kThreads, 0, stream>>>(y.data(), a.data(), b.data(), n);
  LNF_CUDA_LAUNCH_CHECK(add_kernel);
}

inline void scale_add(Gpu, View<Gpu> y, CView<Gpu> x, CView<Gpu> w, float alpha, CView<Gpu> f) {
  check::scale_add<Gpu>(y, x, w, f);
  std::int64_t const n = x.numel();
  if (n == 0) return;
  namespace k = cuda::detail::elementwise;
  auto const blocks = cuda::blocks_for(n);
  cudaStream_t const stream = cuda::context().stream();
  if (w.empty())
    k::scale_add_kernel<k::Gate::none><<<blocks, cuda::kThreads, 0, stream>>>(y.data(), x.data(), nullptr, alpha,
                                                                               f.data(), n, 1);
  else if (w.numel() == 1)
    k::scale_add_kernel<k::Gate::scalar><<<blocks, cuda::kThreads, 0, stream>>>(y.data(), x.data(), w.data(), alpha,
                                                                                 f.data(), n, 1);
  else
    k::scale_add_kernel<k::Gate::per_feature><<<blocks, cuda::kThreads, 0, stream>>>(
        y.data(), x.data(), w.data(), alpha, f.data(), n, w.numel());
  LNF_CUDA_LAUNCH_CHECK(scale_add_kernel);
}

/// dw is computed before dx: with dx aliasing dy, dw still sees the incoming dy (stream order).
inline void scale_add_backward(Gpu, View<Gpu> dx, View<Gpu> dw, CView<Gpu> dy, CView<Gpu> x, CView<Gpu> w,
                               float alpha) {
  check::scale_add_backward<Gpu>(dx, dw, dy, x, w);
  std::int64_t const n = dy.numel();
  if (n == 0) return;
  namespace k = cuda::detail::elementwise;
  if (!dw.empty()) k::accumulate_gate_gradient(dw.data(), w.numel(), dy.data(), x.data(), n, alpha);
  if (dx.empty()) return;
  auto const blocks = cuda::blocks_for(n);
  cudaStream_t const stream = cuda::context().stream();
  if (w.empty())
    k::scale_backward_kernel<k::Gate::none><<<blocks, cuda::kThreads, 0, stream>>>(dx.data(), dy.data(), nullptr,
                                                                                    alpha, n, 1);
  else if (w.numel() == 1)
    k::scale_backward_kernel<k::Gate::scalar><<<blocks, cuda::kThreads, 0, stream>>>(dx.data(), dy.data(),
                                                                                      w.data(), alpha, n, 1);
  else
    k::scale_backward_kernel<k::Gate::per_feature><<<blocks, cuda::kThreads, 0, stream>>>(
        dx.data(), dy.data(), w.data(), alpha, n, w.numel());
  LNF_CUDA_LAUNCH_CHECK(scale_backward_kernel);
}

inline void scale(Gpu, View<Gpu> y, float s) {
  check::scale<Gpu>(y);
  std::int64_t const n = y.numel();
  if (n == 0) return;
  namespace k = cuda::detail::elementwise;
  k::scale_kernel<float><<<cuda::blocks_for(n), cuda::kThreads, 0, cuda::context().stream()>>>(y.data(), s, n);
  LNF_CUDA_LAUNCH_CHECK(scale_kernel);
}

inline void axpy(Gpu, View<Gpu> y, float a, CView<Gpu> x) {
  check::axpy<Gpu>(y, x);
  std::int64_t const n = y.numel();
  if (n == 0) return;
  namespace k = cuda::detail::elementwise;
  k::axpy_kernel<float><<<cuda::blocks_for(n), cuda::kThreads, 0, cuda::context().stream()>>>(y.data(), a, x.data(), n);
  LNF_CUDA_LAUNCH_CHECK(axpy_kernel);
}

inline void fill(Gpu, View<Gpu> y, float v) {
  check::fill<Gpu>(y);
  std::int64_t const n = y.numel();
  if (n == 0) return;
  namespace k = cuda::detail::elementwise;
  k::fill_kernel<float><<<cuda::blocks_for(n), cuda::kThreads, 0, cuda::context().stream()>>>(y.data(), v, n);
  LNF_CUDA_LAUNCH_CHECK(fill_kernel);
}

/// y = x for any strides of x: size-1 dimensions are dropped and dimensions contiguous with each other
/// merged (ops::detail::merge_dims, as on the CPU); a source that is then one unit-stride run is one
/// device-to-device copy.
inline void copy(Gpu, View<Gpu> y, CView<Gpu> x) {
  check::copy<Gpu>(y, x);
  std::int64_t const n = x.numel();
  if (n == 0) return;
  std::int64_t size[kMaxRank] = {}, stride[kMaxRank] = {};  // merged dimensions, outermost first
  int const r = ops::detail::merge_dims(x, size, stride);
  cudaStream_t const stream = cuda::context().stream();
  if (r == 0 || (r == 1 && stride[0] == 1)) {  // one element, or one contiguous run
    LNF_CUDA_CHECK(cudaMemcpyAsync(y.data(), x.data(), static_cast<std::size_t>(n) * sizeof(float),
                                   cudaMemcpyDeviceToDevice, stream));
    return;
  }
  namespace k = cuda::detail::elementwise;
  k::StridedLayout layout;
  layout.rank = r;
  for (int i = 0; i < r; ++i) {  // innermost first
    layout.size[i] = size[r - 1 - i];
    layout.stride[i] = stride[r - 1 - i];
  }
  k::strided_copy_kernel<float><<<cuda::blocks_for(n), cuda::kThreads, 0, stream>>>(y.data(), x.data(), n, layout);
  LNF_CUDA_LAUNCH_CHECK(strided_copy_kernel);
}

inline double sum_squares(Gpu, CView<Gpu> x) {
  check::sum_squares<Gpu>(x);
  if (x.empty()) return 0.0;  // an absent tensor (default view) contributes nothing
  return cuda::detail::elementwise::sum_of_squares(std::span<CView<Gpu> const>(&x, 1));
}

inline double global_l2_norm(Gpu, std::span<CView<Gpu> const> xs) {
  for (auto const& x : xs) check::sum_squares<Gpu>(x);
  return std::sqrt(cuda::detail::elementwise::sum_of_squares(xs));
}

}  // namespace lnformer::ops
