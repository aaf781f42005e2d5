#pragma once
// CPU element-wise ops: OpenMP-parallel, vectorisable loops over flat arrays (small tensors stay on
// one thread: a parallel region costs more than it saves below ~32k elements). Sums in double.
// Contract in ops/elementwise.hpp.

#include <lnformer/backend/cpu/cpu.hpp>
#include <lnformer/ops/elementwise.hpp>

#include <omp.h>

#include <array>
#include <cmath>
#include <cstdint>
#include <span>
#include <vector>

namespace lnformer::cpu::detail {

inline constexpr std::int64_t kElementwiseParallelMin = std::int64_t{1} << 15;

/// out[0, n) = in[0, n); the ranges must not overlap.
inline void elementwise_copy(float* out, float const* in, std::int64_t n) {
#pragma omp parallel for simd schedule(static) if (n >= kElementwiseParallelMin)
  for (std::int64_t i = 0; i < n; ++i) out[i] = in[i];
}

/// y = x where x has arbitrary strides and y is contiguous (row-major). Size-1 dimensions are dropped
/// and dimensions that are contiguous with each other are merged first (ops::detail::merge_dims), so a
/// permuted view such as [B, H, T, dh] -> [B, T, H, dh] becomes rows of dh contiguous floats.
inline void strided_copy(float* y, CView<Cpu> x) {
  std::int64_t const n = x.numel();
  if (n == 0) return;
  std::array<std::int64_t, kMaxRank> size{}, stride{};
  int const r = ops::detail::merge_dims(x, size, stride);
  float const* src = x.data();
  if (r == 0) {
    y[0] = src[0];
    return;
  }
  if (r == 1 && stride[0] == 1) {
    elementwise_copy(y, src, n);
    return;
  }
  // Rows: the last merged dimension (m elements at stride s); outer: the other r-1 dimensions.
  std::int64_t const m = size[r - 1], s = stride[r - 1];
  std::int64_t const rows = n / m;
#pragma omp parallel if (n >= kElementwiseParallelMin)
  {
    int const nt = omp_get_num_threads(), t = omp_get_thread_num();
    std::int64_t const r0 = rows * t / nt, r1 = rows * (t + 1) / nt;
    // Odometer over the outer dimensions, started at row r0.
    std::array<std::int64_t, kMaxRank> idx{};
    std::int64_t off = 0;
    for (std::int64_t rem = r0, i = r - 2; i >= 0; --i) {
      idx[i] = rem % size[i];
      rem /= size[i];
      off += idx[i] * stride[i];
    }
    for (std::int64_t row = r0; row < r1; ++row) {
      float* out = y + row * m;
      float const* in = src + off;
      if (s == 1) {
#pragma omp simd
        for (std::int64_t j = 0; j < m; ++j) out[j] = in[j];
      } else {
        for (std::int64_t j = 0; j < m; ++j) out[j] = in[j * s];
      }
      for (int i = r - 2; i >= 0; --i) {
        off += stride[i];
        if (++idx[i] < size[i]) break;
        off -= idx[i] * stride[i];
        idx[i] = 0;
      }
    }
  }
}

}  // namespace lnformer::cpu::detail

namespace lnformer::cpu::detail {
/// dw += alpha * (column) sums of dy ⊙ x, for scale_add_backward.
inline void scale_add_dw(View<Cpu> dw, CView<Cpu> dy, CView<Cpu> x, float alpha, bool per_feature, std::int64_t n,
                         std::int64_t d, std::int64_t rows) {
  float const* pdy = dy.data();
  float const* px = x.data();
  if (!per_feature) {  // dw: [1] += alpha * sum(dy ⊙ x)
    double s = 0;
#pragma omp parallel for simd schedule(static) reduction(+ : s) if (n >= kElementwiseParallelMin)
    for (std::int64_t i = 0; i < n; ++i) s += static_cast<double>(pdy[i]) * px[i];
    dw.data()[0] = static_cast<float>(dw.data()[0] + static_cast<double>(alpha) * s);
    return;
  }
  // dw: [d] += alpha * column sums of dy ⊙ x over [rows, d]. Each thread sums a block of rows into
  // its own slice of a per-calling-thread scratch buffer (kept between calls: no steady-state
  // allocation), then the slices are added up per column.
  thread_local std::vector<double> scratch;
  int const threads = n >= kElementwiseParallelMin ? omp_get_max_threads() : 1;
  scratch.assign(static_cast<std::size_t>(threads) * static_cast<std::size_t>(d), 0.0);
  double* partial = scratch.data();  // taken here: inside the region `scratch` would name each worker's own
  int used = 1;
#pragma omp parallel num_threads(threads) if (threads > 1)
  {
    int const nt = omp_get_num_threads(), t = omp_get_thread_num();
#pragma omp single
    used = nt;
    std::int64_t const r0 = rows * t / nt, r1 = rows * (t + 1) / nt;
    double* acc = partial + static_cast<std::int64_t>(t) * d;
    for (std::int64_t r = r0; r < r1; ++r) {
#pragma omp simd
      for (std::int64_t c = 0; c < d; ++c) acc[c] += static_cast<double>(pdy[r * d + c]) * px[r * d + c];
    }
  }
  float* pdw = dw.data();
  for (std::int64_t c = 0; c < d; ++c) {
    double s = 0;
    for (int t = 0; t < used; ++t) s += partial[static_cast<std::int64_t>(t) * d + c];
    pdw[c] = static_cast<float>(pdw[c] + static_cast<double>(alpha) * s);
  }
}
}  // namespace lnformer::cpu::detail

namespace lnformer::ops {

inline void add(Cpu, View<Cpu> y, CView<Cpu> a, CView<Cpu> b) {
  check::add<Cpu>(y, a, b);
  std::int64_t const n = y.numel();
  float* py = y.data();
  float const* pa = a.data();
  float const* pb = b.data();
#pragma omp parallel for simd schedule(static) if (n >= cpu::detail::kElementwiseParallelMin)
  for (std::int64_t i = 0; i < n; ++i) py[i] = pa[i] + pb[i];
}

inline void scale_add(Cpu, View<Cpu> y, CView<Cpu> x, CView<Cpu> w, float alpha, CView<Cpu> f) {
  check::scale_add<Cpu>(y, x, w, f);
  std::int64_t const n = x.numel();
  float* py = y.data();
  float const* px = x.data();
  float const* pf = f.data();
  if (w.numel() <= 1) {  // absent or a scalar gate: one factor for every element
    float const a = w.empty() ? alpha : alpha * w.data()[0];
#pragma omp parallel for simd schedule(static) if (n >= cpu::detail::kElementwiseParallelMin)
    for (std::int64_t i = 0; i < n; ++i) py[i] = a * px[i] + pf[i];
    return;
  }
  // w: [d], x viewed as [rows, d].
  std::int64_t const d = w.numel(), rows = n / d;
  float const* pw = w.data();
#pragma omp parallel for schedule(static) if (n >= cpu::detail::kElementwiseParallelMin)
  for (std::int64_t r = 0; r < rows; ++r) {
#pragma omp simd
    for (std::int64_t c = 0; c < d; ++c) py[r * d + c] = alpha * px[r * d + c] * pw[c] + pf[r * d + c];
  }
}

inline void scale_add_backward(Cpu, View<Cpu> dx, View<Cpu> dw, CView<Cpu> dy, CView<Cpu> x, CView<Cpu> w,
                               float alpha) {
  check::scale_add_backward<Cpu>(dx, dw, dy, x, w);
  std::int64_t const n = dy.numel();
  float const* pdy = dy.data();
  bool const per_feature = w.numel() > 1;
  std::int64_t const d = per_feature ? w.numel() : 1, rows = n / d;
  // dw before dx: dx may alias dy, which dw reads.
  if (!dw.empty()) cpu::detail::scale_add_dw(dw, dy, x, alpha, per_feature, n, d, rows);
  if (!dx.empty()) {  // dx = alpha * dy ⊙ w (assign)
    float* pdx = dx.data();
    if (!per_feature) {
      float const a = w.empty() ? alpha : alpha * w.data()[0];
#pragma omp parallel for simd schedule(static) if (n >= cpu::detail::kElementwiseParallelMin)
      for (std::int64_t i = 0; i < n; ++i) pdx[i] = a * pdy[i];
    } else {
      float const* pw = w.data();
#pragma omp parallel for schedule(static) if (n >= cpu::detail::kElementwiseParallelMin)
      for (std::int64_t r = 0; r < rows; ++r) {
#pragma omp simd
        for (std::int64_t c = 0; c < d; ++c) pdx[r * d + c] = alpha * pdy[r * d + c] * pw[c];
      }
    }
  }
}


inline void scale(Cpu, View<Cpu> y, float s) {
  check::scale<Cpu>(y);
  std::int64_t const n = y.numel();
  float* py = y.data();
#pragma omp parallel for simd schedule(static) if (n >= cpu::detail::kElementwiseParallelMin)
  for (std::int64_t i = 0; i < n; ++i) py[i] *= s;
}

inline void axpy(Cpu, View<Cpu> y, float a, CView<Cpu> x) {
  check::axpy<Cpu>(y, x);
  std::int64_t const n = y.numel();
  float* py = y.data();
  float const* px = x.data();
#pragma omp parallel for simd schedule(static) if (n >= cpu::detail::kElementwiseParallelMin)
  for (std::int64_t i = 0; i < n; ++i) py[i] += a * px[i];
}

inline void fill(Cpu, View<Cpu> y, float v) {
  check::fill<Cpu>(y);
  std::int64_t const n = y.numel();
  float* py = y.data();
#pragma omp parallel for simd schedule(static) if (n >= cpu::detail::kElementwiseParallelMin)
  for (std::int64_t i = 0; i < n; ++i) py[i] = v;
}

inline void copy(Cpu, View<Cpu> y, CView<Cpu> x) {
  check::copy<Cpu>(y, x);
  cpu::detail::strided_copy(y.data(), x);
}

inline double sum_squares(Cpu, CView<Cpu> x) {
  check::sum_squares<Cpu>(x);
  if (x.empty()) return 0.0;  // an absent tensor (default view) contributes nothing
  std::int64_t const n = x.numel();
  float const* px = x.data();
  double s = 0;
#pragma omp parallel for simd schedule(static) reduction(+ : s) if (n >= cpu::detail::kElementwiseParallelMin)
  for (std::int64_t i = 0; i < n; ++i) s += static_cast<double>(px[i]) * px[i];
  return s;
}

inline double global_l2_norm(Cpu, std::span<CView<Cpu> const> xs) {
  double s = 0;
  for (auto const& x : xs) s += sum_squares(Cpu{}, x);
  return std::sqrt(s);
}

}  // namespace lnformer::ops
