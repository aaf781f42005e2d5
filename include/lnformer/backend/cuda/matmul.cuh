#pragma once
// GPU GEMMs through cuBLAS (cublasGemmStridedBatchedEx, f32 in, f32 compute: no TF32, so results
// agree with the CPU backend to f32 rounding). Contract in ops/matmul.hpp.
//
// cuBLAS is column-major: the row-major product c[m, n] = a[m, k] @ b[k, n] is computed as the
// column-major c^T[n, m] = b^T[n, k] @ a^T[k, m]. A row-major operand with unit stride in its last
// dim is, read column-major, already the transpose cuBLAS wants (op N, leading dim = row stride); one
// with unit stride in its second-to-last dim (a transposed view) is read with op T. Only an operand
// with neither (e.g. every other column) is packed into a contiguous scratch buffer first.
//
// Batch dims (rank 3 and 4) go to the strided-batched call: both batch dims in one call when every
// operand's strides nest (s0 = d1 * s1, or the dim is broadcast: stride 0), otherwise one call per
// index of the smaller batch dim, batched over the other (per-head views of [B, T, H, dh] activations
// take B calls of H batches each). The linear layer's bias is added by a small kernel after the GEMM,
// and dbias is a deterministic column sum (no atomics).

#include <lnformer/backend/cuda/gpu.cuh>
#include <lnformer/ops/matmul.hpp>

#include <algorithm>
#include <array>
#include <cstdint>
#include <limits>

namespace lnformer::cuda::detail::gemm {

using Dims = std::array<std::int64_t, 4>;

/// A rank 2..4 operand seen as rank 4 [d0, d1, rows, cols]; a missing or size-1 batch dim has stride
/// 0 (broadcast), and a size-1 matrix dim gets the stride that makes it cuBLAS-presentable.
struct Operand {
  float const* p = nullptr;
  Dims d{1, 1, 1, 1};
  Dims s{0, 0, 0, 0};

  template <class T>
  static Operand of(TensorView<Gpu, T> const& v) {
    Operand o;
    o.p = v.data();
    int const off = 4 - v.rank();
    for (int i = 0; i < v.rank(); ++i) o.d[off + i] = v.size(i), o.s[off + i] = v.strides()[i];
    for (int i = 0; i < 2; ++i)
      if (o.d[i] == 1) o.s[i] = 0;
    if (o.d[3] == 1) o.s[3] = 1;                                    // one column: unit column stride
    if (o.d[2] == 1) o.s[2] = std::max<std::int64_t>(o.d[3], 1);    // one row: a row-major row stride
    return o;
  }
  [[nodiscard]] std::int64_t rows() const { return d[2]; }
  [[nodiscard]] std::int64_t cols() const { return d[3]; }
};

/// How cuBLAS reads the transpose of a row-major operand M[rows, cols] as a column-major
/// [cols, rows] matrix: op N with ld = row stride, or op T of a column-major [rows, cols] with
/// ld = column stride. `ok` false: neither layout fits, the operand must be packed.
struct Presented {
  cublasOperation_t op = CUBLAS_OP_N;
  std::int64_t ld = 1;
  bool ok = false;
};
inline Presented present(Operand const& o) {
  std::int64_t const r = o.rows(), c = o.cols();
  if (o.s[3] == 1 && o.s[2] >= std::max<std::int64_t>(c, 1)) return {CUBLAS_OP_N, o.s[2], true};
  if (o.s[2] == 1 && o.s[3] >= std::max<std::int64_t>(r, 1)) return {CUBLAS_OP_T, o.s[3], true};
  return {};
}

/// Dims and strides by value for a kernel (std::array's accessors are host functions).
struct Geometry {
  std::int64_t d0, d1, d2, d3, s0, s1, s2, s3;

  static Geometry of(Operand const& o) { return {o.d[0], o.d[1], o.d[2], o.d[3], o.s[0], o.s[1], o.s[2], o.s[3]}; }

  /// Offset of the element at row-major position i of [d0, d1, d2, d3].
  __device__ std::int64_t offset(std::int64_t i) const {
    std::int64_t const col = i % d3;
    i /= d3;
    std::int64_t const r = i % d2;
    i /= d2;
    std::int64_t const b1 = i % d1;
    std::int64_t const b0 = i / d1;
    return b0 * s0 + b1 * s1 + r * s2 + col * s3;
  }
};

/// Copy a strided rank-4 operand into dense row-major memory (broadcast batch dims stay size 1).
template <class T>  // a template: a plain __global__ in a header is defined in every .cu including it
__global__ void pack_kernel(T* __restrict__ dst, T const* __restrict__ src, Geometry g, std::int64_t n) {
  for (std::int64_t i = blockIdx.x * static_cast<std::int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<std::int64_t>(gridDim.x) * blockDim.x)
    dst[i] = src[g.offset(i)];
}

/// c = beta c over a strided rank-4 view (beta = 0 writes zeros, whatever c held).
template <class T>
__global__ void scale_kernel(T* __restrict__ c, Geometry g, std::int64_t n, T beta) {
  for (std::int64_t i = blockIdx.x * static_cast<std::int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<std::int64_t>(gridDim.x) * blockDim.x) {
    T& v = c[g.offset(i)];
    v = beta == T(0) ? T(0) : beta * v;
  }
}

inline void scale_c(Operand const& c, float beta) {
  std::int64_t const n = c.d[0] * c.d[1] * c.d[2] * c.d[3];
  if (n == 0 || beta == 1.f) return;
  scale_kernel<float><<<blocks_for(n), kThreads, 0, context().stream()>>>(const_cast<float*>(c.p), Geometry::of(c),
                                                                          n, beta);
  LNF_CUDA_LAUNCH_CHECK(scale_kernel);
}

/// `o` packed densely into workspace `slot` of the context; the returned operand points there.
inline Operand packed(Operand const& o, int slot) {
  auto& ctx = context();
  std::int64_t const n = o.d[0] * o.d[1] * o.d[2] * o.d[3];
  auto* dst = static_cast<float*>(ctx.workspace(slot, static_cast<std::size_t>(n) * sizeof(float)));
  if (n > 0) {
    pack_kernel<float><<<blocks_for(n), kThreads, 0, ctx.stream()>>>(dst, o.p, Geometry::of(o), n);
    LNF_CUDA_LAUNCH_CHECK(pack_kernel);
  }
  Operand q = o;
  q.p = dst;
  q.s = {o.d[0] == 1 ? 0 : o.d[1] * o.d[2] * o.d[3], o.d[1] == 1 ? 0 : o.d[2] * o.d[3], o.d[3], 1};
  if (q.d[2] == 1) q.s[2] = std::max<std::int64_t>(q.d[3], 1);
  return q;
}

inline int as_int(std::int64_t v, char const* what) {
  LNF_EXPECTS_AS(ValueError, v <= std::numeric_limits<int>::max(),
                 "Gpu matmul: {} = {} does not fit cuBLAS's 32-bit interface", what, v);
  return static_cast<int>(v);
}

/// c = alpha a @ b + beta c over the batch dims of c (a and b broadcast where their dim is 1).
inline void run(View<Gpu> cv, CView<Gpu> av, CView<Gpu> bv, float alpha, float beta) {
  if (cv.numel() == 0) return;
  auto& ctx = context();
  Operand c = Operand::of(cv), a = Operand::of(av), b = Operand::of(bv);
  std::int64_t const m = c.rows(), n = c.cols(), k = a.cols();
  if (k == 0) return scale_c(c, beta);  // an empty sum: c = beta c (not left to cuBLAS)
  Presented pa = present(a), pb = present(b);
  if (!pa.ok) a = packed(a, 1), pa = present(a);
  if (!pb.ok) b = packed(b, 2), pb = present(b);
  // c must be written with unit column stride (checked); its row stride is the column-major ld.
  std::int64_t const ldc = c.d[2] == 1 ? std::max<std::int64_t>(n, 1) : c.s[2];

  auto call = [&](float const* A, float const* B, float* C, std::int64_t batches, std::int64_t sa,
                  std::int64_t sb, std::int64_t sc) {
    // column-major: C^T[n, m] = op(b-presented)[n, k] @ op(a-presented)[k, m]
    LNF_CUBLAS_CHECK(cublasGemmStridedBatchedEx(
        ctx.blas(), pb.op, pa.op, as_int(n, "n"), as_int(m, "m"), as_int(k, "k"), &alpha, B, CUDA_R_32F,
        as_int(std::max<std::int64_t>(pb.ld, 1), "ldb"), sb, A, CUDA_R_32F,
        as_int(std::max<std::int64_t>(pa.ld, 1), "lda"), sa, &beta, C, CUDA_R_32F, as_int(ldc, "ldc"), sc,
        as_int(batches, "batch count"), CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
  };
  auto* C = const_cast<float*>(c.p);  // c is the mutable output view
  std::int64_t const d0 = c.d[0], d1 = c.d[1];
  // Do the two batch dims nest into one for every operand?
  auto nests = [&](Operand const& o) { return o.s[0] == d1 * o.s[1] || d0 == 1; };
  if (d1 == 1) {
    call(a.p, b.p, C, d0, a.s[0], b.s[0], c.s[0]);
  } else if (nests(a) && nests(b) && nests(c)) {
    call(a.p, b.p, C, d0 * d1, a.s[1], b.s[1], c.s[1]);
  } else if (d0 <= d1) {
    for (std::int64_t i = 0; i < d0; ++i)
      call(a.p + i * a.s[0], b.p + i * b.s[0], C + i * c.s[0], d1, a.s[1], b.s[1], c.s[1]);
  } else {
    for (std::int64_t j = 0; j < d1; ++j)
      call(a.p + j * a.s[1], b.p + j * b.s[1], C + j * c.s[1], d0, a.s[0], b.s[0], c.s[0]);
  }
}

using ops::detail::gemm::rows_of;
using ops::detail::gemm::swap_last2;

/// c = alpha x @ y where c is 1 in batch dims where x or y are not: summed over those dims (the
/// gradient of a broadcast operand). One GEMM per index of the summed dims, the first assigning
/// (ops::detail::gemm::for_each_reduced); a sum over an empty batch dim writes zeros.
inline void run_reduce(View<Gpu> c, CView<Gpu> x, CView<Gpu> y, float alpha) {
  namespace og = ops::detail::gemm;
  if (c.numel() == 0) return;
  if (og::sums_over_empty(c, x, y)) return scale_c(Operand::of(c), 0.f);
  og::for_each_reduced(c, x, y,
                       [&](View<Gpu> cs, CView<Gpu> xs, CView<Gpu> ys, float beta) { run(cs, xs, ys, alpha, beta); });
}

/// y[i, j] += bias[j] (bias may be null: nothing added), then relu where asked, for y [rows, cols]
/// with row stride ys (bias with stride bs).
template <class T>
__global__ void add_bias_kernel(T* __restrict__ y, T const* __restrict__ bias, std::int64_t bs, std::int64_t rows,
                                std::int64_t cols, std::int64_t ys, bool relu) {
  std::int64_t const n = rows * cols;
  for (std::int64_t i = blockIdx.x * static_cast<std::int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<std::int64_t>(gridDim.x) * blockDim.x) {
    std::int64_t const r = i / cols, j = i % cols;
    T const v = bias != nullptr ? y[r * ys + j] + bias[j * bs] : y[r * ys + j];
    y[r * ys + j] = relu && v <= T(0) ? T(0) : v;  // NaN propagates
  }
}

/// dbias[j] += sum_i dy[i, j]: a block of 32 x 8 threads per 32 columns; each of the 8 row groups
/// sums a strided share of the rows in double, then the 8 partials are added in a fixed order.
template <class T>
__global__ void column_sums_kernel(T* __restrict__ dbias, std::int64_t sb, T const* __restrict__ dy,
                                   std::int64_t rows, std::int64_t cols, std::int64_t s0, std::int64_t s1) {
  __shared__ double part[8][32];
  std::int64_t const j = blockIdx.x * 32 + threadIdx.x;
  double acc = 0;
  if (j < cols)
    for (std::int64_t i = threadIdx.y; i < rows; i += 8) acc += dy[i * s0 + j * s1];
  part[threadIdx.y][threadIdx.x] = acc;
  __syncthreads();
  if (threadIdx.y == 0 && j < cols) {
    double total = 0;
    for (int g = 0; g < 8; ++g) total += part[g][threadIdx.x];
    dbias[j * sb] += static_cast<T>(total);
  }
}

inline void column_sums_add(View<Gpu> dbias, CView<Gpu> dy) {
  std::int64_t const rows = dy.size(0), cols = dy.size(1);
  if (cols == 0) return;
  auto& ctx = context();
  unsigned const blocks = static_cast<unsigned>((cols + 31) / 32);
  column_sums_kernel<float><<<blocks, dim3(32, 8), 0, ctx.stream()>>>(dbias.data(), dbias.stride(0), dy.data(), rows, cols,
                                                              dy.stride(0), dy.stride(1));
  LNF_CUDA_LAUNCH_CHECK(column_sums_kernel);
}

}  // namespace lnformer::cuda::detail::gemm

namespace lnformer::ops {

inline void matmul(Gpu, View<Gpu> c, CView<Gpu> a, CView<Gpu> b, float alpha = 1.f, float beta = 0.f) {
  check::matmul<Gpu>(c, a, b, alpha, beta);
  cuda::detail::gemm::run(c, a, b, alpha, beta);
}

inline void matmul_backward(Gpu, View<Gpu> da, View<Gpu> db, CView<Gpu> dc, CView<Gpu> a, CView<Gpu> b,
                            float alpha = 1.f) {
  check::matmul_backward<Gpu>(da, db, dc, a, b, alpha);
  namespace gm = cuda::detail::gemm;
  if (!da.empty()) gm::run_reduce(da, dc, gm::swap_last2(b), alpha);  // [.., m, n] @ [.., n, k]
  if (!db.empty()) gm::run_reduce(db, gm::swap_last2(a), dc, alpha);  // [.., k, m] @ [.., m, n]
}

inline void linear_forward(Gpu, View<Gpu> y, CView<Gpu> x, CView<Gpu> w, CView<Gpu> bias,
                           Epilogue ep = Epilogue::none) {
  check::linear_forward<Gpu>(y, x, w, bias);
  namespace gm = cuda::detail::gemm;
  auto const y2 = gm::rows_of(y);
  gm::run(y2, gm::rows_of(x), gm::swap_last2(w), 1.f, 0.f);  // [N, in] @ [in, out]
  bool const relu = ep == Epilogue::relu;
  if ((!bias.empty() || relu) && y2.numel() != 0) {
    auto& ctx = cuda::context();
    gm::add_bias_kernel<float><<<cuda::blocks_for(y2.numel()), cuda::kThreads, 0, ctx.stream()>>>(
        y2.data(), bias.empty() ? nullptr : bias.data(), bias.empty() ? 0 : bias.stride(0), y2.size(0), y2.size(1),
        y2.size(0) == 1 ? y2.size(1) : y2.stride(0), relu);
    LNF_CUDA_LAUNCH_CHECK(add_bias_kernel);
  }
}

inline void linear_backward(Gpu, View<Gpu> dx, View<Gpu> dw, View<Gpu> dbias, CView<Gpu> dy, CView<Gpu> x,
                            CView<Gpu> w) {
  check::linear_backward<Gpu>(dx, dw, dbias, dy, x, w);
  namespace gm = cuda::detail::gemm;
  auto const dy2 = gm::rows_of(dy);
  if (!dx.empty()) gm::run(gm::rows_of(dx), dy2, w, 1.f, 0.f);                  // [N, out] @ [out, in]
  if (!dw.empty()) gm::run(dw, gm::swap_last2(dy2), gm::rows_of(x), 1.f, 1.f);  // [out, N] @ [N, in]
  if (!dbias.empty()) gm::column_sums_add(dbias, dy2);
}

}  // namespace lnformer::ops
