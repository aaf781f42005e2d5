#pragma once
// GPU softmax over the last dimension with the broadcast additive mask. Contract in ops/softmax.hpp;
// float arithmetic, as the CPU backend.
//
// One thread block per row (a grid-stride loop over rows), its threads striding over the row's
// columns; block reductions (cuda/reduce.cuh) by warp shuffles, then across warps through shared
// memory.
//   forward:  v = scale * x + mask (one fmaf, recomputed identically in every sweep, never stored),
//             1. m = max_j v (a row whose max is -inf, fully masked, is written as zeros),
//             2. s = sum_j exp(v - m), 3. y = exp(v - m) / s.
//             The row's mask offset comes from ops::check's SoftmaxLayout (the same row-major walk
//             over x's leading dims as SoftmaxLayout::mask_row_offset), recomputed per row.
//   backward: s = sum_j dy * y, then dx = scale * y * (dy - s).
// Each thread writes only the columns it read, after the row's last reduction, so y may be x and dx
// may be dy or y.
//
// The kernels are templates (instantiated for float only): a non-template __global__ function
// defined in a header is a duplicate symbol once two translation units include the header.
// Limits: any row length (threads loop over the row); rows up to 2^63 (64-bit offsets, grid-stride).

#include <lnformer/backend/cuda/gpu.cuh>
#include <lnformer/backend/cuda/reduce.cuh>
#include <lnformer/ops/softmax.hpp>

#include <cstdint>

namespace lnformer::cuda::detail::softmax {

/// Where each row's mask lives, passed to the kernel by value (from ops::SoftmaxLayout).
struct MaskRows {
  int lead_rank = 0;
  std::int64_t col_stride = 0;  // 1, or 0 when the mask's last dim is 1
  std::int64_t lead_size[kMaxRank] = {};
  std::int64_t lead_stride[kMaxRank] = {};  // the mask's stride per leading dim of x; 0 broadcasts

  /// As SoftmaxLayout::mask_row_offset: row r's multi-index over x's leading dims, dotted with the
  /// mask's strides.
  /// (Unrolled over kMaxRank so that the arrays stay in the kernel's parameter space, not on the stack.)
  __device__ std::int64_t row_offset(std::int64_t row) const {
    std::int64_t off = 0;
#pragma unroll
    for (int i = kMaxRank - 1; i >= 0; --i) {
      if (i < lead_rank) {
        off += row % lead_size[i] * lead_stride[i];
        row /= lead_size[i];
      }
    }
    return off;
  }
};

inline MaskRows mask_rows(ops::SoftmaxLayout const& l) {
  MaskRows m;
  m.lead_rank = l.lead_rank;
  m.col_stride = l.mask_col_stride;
  for (int i = 0; i < l.lead_rank; ++i) {
    m.lead_size[i] = l.lead_size[static_cast<std::size_t>(i)];
    m.lead_stride[i] = l.mask_lead_stride[static_cast<std::size_t>(i)];
  }
  return m;
}

/// mask: null when there is none; else row r's mask element j is mask[rows.row_offset(r) + j * col_stride].
template <class T>
__global__ void __launch_bounds__(kMaxRowThreads)
    forward_kernel(T* y, T const* x, T const* mask, MaskRows mrows, float scale, std::int64_t rows,
                   std::int64_t n) {
  __shared__ float shared[32];
  for (std::int64_t r = blockIdx.x; r < rows; r += gridDim.x) {
    T const* xr = x + r * n;
    T* yr = y + r * n;  // may equal xr: each thread writes only its own columns, after every read
    T const* mr = mask == nullptr ? nullptr : mask + mrows.row_offset(r);
    std::int64_t const mcs = mrows.col_stride;
    auto const v = [&](std::int64_t j) {
      return mr == nullptr ? scale * xr[j] : __fmaf_rn(scale, xr[j], mr[j * mcs]);
    };
    float m = neg_inf();
    for (std::int64_t j = threadIdx.x; j < n; j += blockDim.x) m = fmaxf(m, v(j));
    m = block_reduce<true>(m, shared);
    if (m == neg_inf()) {  // fully masked row (the same m in every thread: the branch is uniform)
      for (std::int64_t j = threadIdx.x; j < n; j += blockDim.x) yr[j] = 0.f;
      continue;
    }
    float s = 0.f;
    for (std::int64_t j = threadIdx.x; j < n; j += blockDim.x) s += expf(v(j) - m);
    s = block_reduce<false>(s, shared);  // >= 1: the max element contributes exp(0)
    float const inv = 1.f / s;
    for (std::int64_t j = threadIdx.x; j < n; j += blockDim.x) yr[j] = expf(v(j) - m) * inv;
  }
}

template <class T>
__global__ void __launch_bounds__(kMaxRowThreads)
    backward_kernel(T* dx, T const* dy, T const* y, float scale, std::int64_t rows, std::int64_t n) {
  __shared__ float shared[32];
  for (std::int64_t r = blockIdx.x; r < rows; r += gridDim.x) {
    T const* yr = y + r * n;
    T const* dyr = dy + r * n;
    T* dxr = dx + r * n;  // may equal dyr or yr: each thread writes only its own columns, after every read
    float s = 0.f;
    for (std::int64_t j = threadIdx.x; j < n; j += blockDim.x) s += dyr[j] * yr[j];
    s = block_reduce<false>(s, shared);
    for (std::int64_t j = threadIdx.x; j < n; j += blockDim.x) dxr[j] = scale * yr[j] * (dyr[j] - s);
  }
}

}  // namespace lnformer::cuda::detail::softmax

namespace lnformer::ops {

inline void softmax_forward(Gpu, View<Gpu> y, CView<Gpu> x, CView<Gpu> mask, float scale) {
  namespace sm = cuda::detail::softmax;
  auto const l = check::softmax_forward<Gpu>(y, x, mask, scale);
  if (l.rows == 0) return;
  cuda::detail::launch_rows(sm::forward_kernel<float>, l.rows, l.cols, y.data(), x.data(),
                            l.masked ? mask.data() : nullptr, sm::mask_rows(l), scale, l.rows, l.cols);
  LNF_CUDA_LAUNCH_CHECK(softmax_forward_kernel);
}

inline void softmax_backward(Gpu, View<Gpu> dx, CView<Gpu> dy, CView<Gpu> y, float scale) {
  auto const l = check::softmax_backward<Gpu>(dx, dy, y, scale);
  if (l.rows == 0) return;
  cuda::detail::launch_rows(cuda::detail::softmax::backward_kernel<float>, l.rows, l.cols, dx.data(), dy.data(),
                            y.data(), scale, l.rows, l.cols);
  LNF_CUDA_LAUNCH_CHECK(softmax_backward_kernel);
}

}  // namespace lnformer::ops
