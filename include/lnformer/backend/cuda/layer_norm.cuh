#pragma once
// GPU layer norm. Contract in ops/layer_norm.hpp; float arithmetic, as the CPU backend.
//
// Forward: one thread block per row (a grid-stride loop over rows), its threads striding over the
// row's columns; block sums (cuda/reduce.cuh) by warp shuffles, then across warps through shared
// memory. The statistics are the CPU's corrected two-pass algorithm in float: m0 = mean(x), then
// t = x - m0 gives c = mean(t) (m0's rounding error) and var = mean(t^2) - c^2;
// y = ((x - m0) - c) * rstd * gamma + beta. Each thread writes only the columns it read, after the
// block's last reduction, so y may be x.
//
// Backward, up to three kernels on the stream, in this order:
//   1. (dgamma or dbeta wanted) param_partials: a 2-D grid of column tiles (32 columns, one per lane)
//      by row chunks; each thread sums dy * xhat and dy down its column over a strided set of the
//      chunk's rows (float, folded into double every kFoldRows rows), the block adds its 8 row lanes
//      in a fixed order and writes one double partial per (chunk, column) into workspace slot 1.
//   2. (dgamma or dbeta wanted) param_finalize: per column, the partials summed over chunks in chunk
//      order (double) and added (+=) into dgamma / dbeta. No atomics: deterministic for a device.
//   3. (dx wanted) dx_kernel: one block per row, the two row sums of the contract by block reduction,
//      then dx written column by column. It runs last because dx may alias dy or x, which 1 reads.
//
// The kernels are templates (instantiated for float only): a non-template __global__ function
// defined in a header is a duplicate symbol once two translation units include the header.
// Limits: any d >= 1 (threads loop over the row); rows up to 2^63 (64-bit offsets, grid-stride).

#include <lnformer/backend/cuda/gpu.cuh>
#include <lnformer/backend/cuda/reduce.cuh>
#include <lnformer/ops/layer_norm.hpp>

#include <algorithm>
#include <cstddef>
#include <cstdint>

namespace lnformer::cuda::detail::layer_norm {

/// param_partials geometry: 32 columns (lanes) by 8 row lanes per block.
inline constexpr int kColTile = 32;
inline constexpr int kRowLanes = 8;
/// Rows a thread sums in float before folding the sum into its double total.
inline constexpr int kFoldRows = 32;
/// Device scratch slot of the parameter partials (see cuda::Context::workspace).
inline constexpr int kWorkspaceSlot = 1;

template <class T>
__global__ void __launch_bounds__(kMaxRowThreads)
    forward_kernel(T* y, T* mean, T* rstd, T const* x, T const* gamma, T const* beta, float eps,
                   std::int64_t rows, std::int64_t d) {
  __shared__ float shared[64];  // block_sum2's size (block_sum uses 32)
  float const inv_d = 1.f / static_cast<float>(d);
  for (std::int64_t r = blockIdx.x; r < rows; r += gridDim.x) {
    T const* xr = x + r * d;
    T* yr = y + r * d;  // may equal xr: each thread writes only its own columns, after every read
    float s0 = 0.f;
    for (std::int64_t j = threadIdx.x; j < d; j += blockDim.x) s0 += xr[j];
    float const m0 = block_sum(s0, shared) * inv_d;
    float s1 = 0.f, s2 = 0.f;
    for (std::int64_t j = threadIdx.x; j < d; j += blockDim.x) {
      float const t = xr[j] - m0;
      s1 += t;
      s2 += t * t;
    }
    block_sum2(s1, s2, shared);
    float const c = s1 * inv_d;  // m0's rounding error: the true mean is m0 + c
    float v = s2 * inv_d - c * c;
    v = v < 0.f ? 0.f : v;  // not fmaxf: a NaN variance stays NaN, as on the CPU
    float const rs = 1.f / sqrtf(v + eps);
    for (std::int64_t j = threadIdx.x; j < d; j += blockDim.x) yr[j] = ((xr[j] - m0) - c) * rs * gamma[j] + beta[j];
    if (threadIdx.x == 0) {
      if (mean != nullptr) mean[r] = m0 + c;
      if (rstd != nullptr) rstd[r] = rs;
    }
  }
}

/// Block (tile, chunk): columns [tile * 32, tile * 32 + 32), rows [chunk * rows_per_chunk, ...).
/// partial[(2 * chunk) * d + j] = sum dy * xhat, partial[(2 * chunk + 1) * d + j] = sum dy.
template <class T>
__global__ void __launch_bounds__(kColTile * kRowLanes)
    param_partials_kernel(double* partial, T const* dy, T const* x, T const* mean, T const* rstd,
                          std::int64_t rows, std::int64_t d, std::int64_t rows_per_chunk) {
  __shared__ double sg[kRowLanes][kColTile];
  __shared__ double sb[kRowLanes][kColTile];
  std::int64_t const j = static_cast<std::int64_t>(blockIdx.x) * kColTile + threadIdx.x;
  std::int64_t const chunk = blockIdx.y;
  std::int64_t const r0 = chunk * rows_per_chunk;
  std::int64_t const r1 = r0 + rows_per_chunk < rows ? r0 + rows_per_chunk : rows;
  double tg = 0.0, tb = 0.0;
  if (j < d) {
    float fg = 0.f, fb = 0.f;
    int pending = 0;
    for (std::int64_t r = r0 + threadIdx.y; r < r1; r += kRowLanes) {
      float const g = dy[r * d + j];
      float const xh = (x[r * d + j] - mean[r]) * rstd[r];
      fg += g * xh;
      fb += g;
      if (++pending == kFoldRows) {
        tg += fg;
        tb += fb;
        fg = 0.f;
        fb = 0.f;
        pending = 0;
      }
    }
    tg += fg;
    tb += fb;
  }
  sg[threadIdx.y][threadIdx.x] = tg;
  sb[threadIdx.y][threadIdx.x] = tb;
  __syncthreads();
  if (threadIdx.y == 0 && j < d) {
    double g = 0.0, b = 0.0;
    for (int k = 0; k < kRowLanes; ++k) {  // fixed order: deterministic
      g += sg[k][threadIdx.x];
      b += sb[k][threadIdx.x];
    }
    partial[2 * chunk * d + j] = g;
    partial[(2 * chunk + 1) * d + j] = b;
  }
}

/// dgamma[j] += sum over chunks of the dy * xhat partials, dbeta[j] likewise (either may be null).
template <class T>
__global__ void param_finalize_kernel(T* dgamma, T* dbeta, double const* partial, std::int64_t chunks,
                                      std::int64_t d) {
  std::int64_t const step = static_cast<std::int64_t>(gridDim.x) * blockDim.x;
  for (std::int64_t j = static_cast<std::int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; j < d; j += step) {
    double g = 0.0, b = 0.0;
    for (std::int64_t c = 0; c < chunks; ++c) {  // chunk order: deterministic
      g += partial[2 * c * d + j];
      b += partial[(2 * c + 1) * d + j];
    }
    if (dgamma != nullptr) dgamma[j] += static_cast<float>(g);
    if (dbeta != nullptr) dbeta[j] += static_cast<float>(b);
  }
}

/// dx[r, j] = rstd * (gamma dy - mean(gamma dy) - xhat mean(gamma dy xhat)), one block per row.
template <class T>
__global__ void __launch_bounds__(kMaxRowThreads)
    dx_kernel(T* dx, T const* dy, T const* x, T const* mean, T const* rstd, T const* gamma, T const* residual,
              std::int64_t rows, std::int64_t d) {
  __shared__ float shared[64];
  float const inv_d = 1.f / static_cast<float>(d);
  for (std::int64_t r = blockIdx.x; r < rows; r += gridDim.x) {
    T const* xr = x + r * d;
    T const* dyr = dy + r * d;
    T* dxr = dx + r * d;  // may equal dyr or xr: each thread writes only its own columns, after every read
    float const m = mean[r], s = rstd[r];
    float sg = 0.f, sgx = 0.f;
    for (std::int64_t j = threadIdx.x; j < d; j += blockDim.x) {
      float const xh = (xr[j] - m) * s;
      float const g = gamma[j] * dyr[j];
      sg += g;
      sgx += g * xh;
    }
    block_sum2(sg, sgx, shared);
    float const a = sg * inv_d, b = sgx * inv_d;
    T const* rr = residual != nullptr ? residual + r * d : nullptr;  // may equal dxr: read, then written
    for (std::int64_t j = threadIdx.x; j < d; j += blockDim.x) {
      T const v = s * (gamma[j] * dyr[j] - a - (xr[j] - m) * s * b);
      dxr[j] = rr != nullptr ? rr[j] + v : v;
    }
  }
}

}  // namespace lnformer::cuda::detail::layer_norm

namespace lnformer::ops {

inline void layer_norm_forward(Gpu, View<Gpu> y, View<Gpu> mean, View<Gpu> rstd, CView<Gpu> x,
                               CView<Gpu> gamma, CView<Gpu> beta, float eps) {
  namespace ln = cuda::detail::layer_norm;
  auto const dims = check::layer_norm_forward<Gpu>(y, mean, rstd, x, gamma, beta, eps);
  std::int64_t const rows = dims.rows, d = dims.d;
  if (rows == 0) return;
  cuda::detail::launch_rows(ln::forward_kernel<float>, rows, d, y.data(), mean.empty() ? nullptr : mean.data(),
                            rstd.empty() ? nullptr : rstd.data(), x.data(), gamma.data(), beta.data(), eps, rows, d);
  LNF_CUDA_LAUNCH_CHECK(layer_norm_forward_kernel);
}

inline void layer_norm_backward(Gpu, View<Gpu> dx, View<Gpu> dgamma, View<Gpu> dbeta, CView<Gpu> dy,
                                CView<Gpu> x, CView<Gpu> mean, CView<Gpu> rstd, CView<Gpu> gamma,
                                CView<Gpu> residual = {}) {
  namespace ln = cuda::detail::layer_norm;
  auto const dims = check::layer_norm_backward<Gpu>(dx, dgamma, dbeta, dy, x, mean, rstd, gamma, residual);
  std::int64_t const rows = dims.rows, d = dims.d;
  bool const want_dx = !dx.empty();
  bool const want_params = !dgamma.empty() || !dbeta.empty();
  if (rows == 0 || (!want_dx && !want_params)) return;
  auto& ctx = cuda::context();

  // Parameter gradients first: they read dy and x, which dx may overwrite.
  if (want_params) {
    std::int64_t const tiles = (d + ln::kColTile - 1) / ln::kColTile;
    // About 8 blocks per multiprocessor in all, at least 8 rows (one per row lane) per chunk, and no
    // more chunks than gridDim.y allows.
    std::int64_t const target_blocks = std::int64_t{8} * ctx.multiprocessors();
    std::int64_t chunks = (target_blocks + tiles - 1) / tiles;
    chunks = std::clamp<std::int64_t>(chunks, 1, (rows + ln::kRowLanes - 1) / ln::kRowLanes);
    chunks = std::min<std::int64_t>(chunks, 65535);
    std::int64_t const rows_per_chunk = (rows + chunks - 1) / chunks;
    chunks = (rows + rows_per_chunk - 1) / rows_per_chunk;  // no empty trailing chunk
    auto* partial = static_cast<double*>(
        ctx.workspace(ln::kWorkspaceSlot, static_cast<std::size_t>(2 * chunks * d) * sizeof(double)));
    dim3 const grid(static_cast<unsigned>(tiles), static_cast<unsigned>(chunks));
    dim3 const block(ln::kColTile, ln::kRowLanes);
    ln::param_partials_kernel<<<grid, block, 0, ctx.stream()>>>(partial, dy.data(), x.data(), mean.data(),
                                                                 rstd.data(), rows, d, rows_per_chunk);
    LNF_CUDA_LAUNCH_CHECK(layer_norm_param_partials_kernel);
    ln::param_finalize_kernel<<<cuda::blocks_for(d), cuda::kThreads, 0, ctx.stream()>>>(
        dgamma.empty() ? nullptr : dgamma.data(), dbeta.empty() ? nullptr : dbeta.data(), partial, chunks, d);
    LNF_CUDA_LAUNCH_CHECK(layer_norm_param_finalize_kernel);
  }
  if (want_dx) {
    cuda::detail::launch_rows(ln::dx_kernel<float>, rows, d, dx.data(), dy.data(), x.data(), mean.data(),
                              rstd.data(), gamma.data(), residual.empty() ? nullptr : residual.data(), rows, d);
    LNF_CUDA_LAUNCH_CHECK(layer_norm_dx_kernel);
  }
}

}  // namespace lnformer::ops
