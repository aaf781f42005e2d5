#pragma once
// CPU layer norm: OpenMP over rows, `omp simd` inner loops, float arithmetic throughout.
// Contract in ops/layer_norm.hpp.
//
// Forward statistics use the corrected two-pass algorithm (Chan, Golub & LeVeque 1983) in float:
// pass 1 gives a provisional mean m0; pass 2 sums t = x - m0 and t^2, where c = mean(t) is the
// rounding error of m0 and var = mean(t^2) - c^2. Normalising as (x - m0) - c keeps rows with a large
// common offset (x = 1000 + noise) accurate to a few ulps of the noise, which float accumulation of
// a plain mean would not; double accumulation is not needed.
//
// Backward: dgamma/dbeta are reduced over rows without races or atomics: each thread owns a
// contiguous block of rows and a private partial sum (float over at most kFlushRows rows, then folded
// into a double), and the partials are combined per feature in a fixed thread order, so the result
// is deterministic for a given thread count. The scratch lives in a thread_local buffer of the
// calling thread that only ever grows: no allocation per call in the steady state.

#include <lnformer/backend/cpu/cpu.hpp>
#include <lnformer/ops/layer_norm.hpp>

#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

namespace lnformer::cpu::detail::layer_norm {

/// Below this many elements a parallel region costs more than it saves.
inline constexpr std::int64_t kParallelMinElems = 1 << 14;
/// Rows summed in float before folding into the double partial (bounds float error growth).
inline constexpr int kFlushRows = 64;

/// Per-thread partial sums for the dgamma/dbeta reduction, owned by the calling thread.
struct Scratch {
  std::vector<float> f;   // [threads][2][dp]: running float sums over < kFlushRows rows
  std::vector<double> d;  // [threads][2][dp]: folded totals
};
inline Scratch& scratch() {
  thread_local Scratch s;
  return s;
}

}  // namespace lnformer::cpu::detail::layer_norm

namespace lnformer::ops {

inline void layer_norm_forward(Cpu, View<Cpu> y, View<Cpu> mean, View<Cpu> rstd, CView<Cpu> x,
                               CView<Cpu> gamma, CView<Cpu> beta, float eps) {
  auto const dims = check::layer_norm_forward<Cpu>(y, mean, rstd, x, gamma, beta, eps);
  std::int64_t const rows = dims.rows, d = dims.d;
  float const* xp = x.data();
  float* yp = y.data();  // may equal xp: every loop below reads x[j] before writing y[j]
  float const* gp = gamma.data();
  float const* bp = beta.data();
  float* mp = mean.empty() ? nullptr : mean.data();
  float* sp = rstd.empty() ? nullptr : rstd.data();
  float const inv_d = 1.f / static_cast<float>(d);

#pragma omp parallel for schedule(static) if (rows * d >= cpu::detail::layer_norm::kParallelMinElems)
  for (std::int64_t r = 0; r < rows; ++r) {
    float const* xr = xp + r * d;
    float* yr = yp + r * d;
    float s0 = 0.f;
#pragma omp simd reduction(+ : s0)
    for (std::int64_t j = 0; j < d; ++j) s0 += xr[j];
    float const m0 = s0 * inv_d;
    float s1 = 0.f, s2 = 0.f;
#pragma omp simd reduction(+ : s1, s2)
    for (std::int64_t j = 0; j < d; ++j) {
      float const t = xr[j] - m0;
      s1 += t;
      s2 += t * t;
    }
    float const c = s1 * inv_d;  // m0's rounding error: the true mean is m0 + c
    float const var = std::max(s2 * inv_d - c * c, 0.f);
    float const rs = 1.f / std::sqrt(var + eps);
#pragma omp simd
    for (std::int64_t j = 0; j < d; ++j) yr[j] = ((xr[j] - m0) - c) * rs * gp[j] + bp[j];
    if (mp != nullptr) mp[r] = m0 + c;
    if (sp != nullptr) sp[r] = rs;
  }
}

inline void layer_norm_backward(Cpu, View<Cpu> dx, View<Cpu> dgamma, View<Cpu> dbeta, CView<Cpu> dy,
                                CView<Cpu> x, CView<Cpu> mean, CView<Cpu> rstd, CView<Cpu> gamma,
                                CView<Cpu> residual = {}) {
  namespace ln = cpu::detail::layer_norm;
  auto const dims = check::layer_norm_backward<Cpu>(dx, dgamma, dbeta, dy, x, mean, rstd, gamma, residual);
  std::int64_t const rows = dims.rows, d = dims.d;
  bool const want_dx = !dx.empty();
  bool const want_params = !dgamma.empty() || !dbeta.empty();
  if (rows == 0 || (!want_dx && !want_params)) return;

  float const* xp = x.data();
  float const* dyp = dy.data();
  float* dxp = want_dx ? dx.data() : nullptr;  // may equal dyp or xp: see the pass order below
  float const* rp = residual.empty() ? nullptr : residual.data();  // may equal dxp
  float const* mp = mean.data();
  float const* sp = rstd.data();
  float const* gp = gamma.data();
  float* dgp = dgamma.empty() ? nullptr : dgamma.data();
  float* dbp = dbeta.empty() ? nullptr : dbeta.data();
  float const inv_d = 1.f / static_cast<float>(d);

  bool const parallel = rows * d >= ln::kParallelMinElems && rows > 1;
  int const max_threads = parallel ? omp_get_max_threads() : 1;
  std::int64_t const dp = (d + 15) / 16 * 16;  // per-thread slices padded to a cache line
  float* fs = nullptr;
  double* ds = nullptr;
  if (want_params) {
    auto& sc = ln::scratch();
    auto const need = static_cast<std::size_t>(max_threads) * 2 * static_cast<std::size_t>(dp);
    if (sc.f.size() < need) sc.f.resize(need);
    if (sc.d.size() < need) sc.d.resize(need);
    fs = sc.f.data();
    ds = sc.d.data();
  }

#pragma omp parallel if (parallel)
  {
    int const nt = omp_get_num_threads();
    int const t = omp_get_thread_num();
    std::int64_t const per = (rows + nt - 1) / nt;
    std::int64_t const r0 = std::min(rows, t * per), r1 = std::min(rows, r0 + per);
    float* acc_g = want_params ? fs + static_cast<std::int64_t>(t) * 2 * dp : nullptr;
    float* acc_b = want_params ? acc_g + dp : nullptr;
    double* tot_g = want_params ? ds + static_cast<std::int64_t>(t) * 2 * dp : nullptr;
    double* tot_b = want_params ? tot_g + dp : nullptr;
    auto const fold = [&] {
#pragma omp simd
      for (std::int64_t j = 0; j < d; ++j) {
        tot_g[j] += acc_g[j];
        tot_b[j] += acc_b[j];
        acc_g[j] = 0.f;
        acc_b[j] = 0.f;
      }
    };
    if (want_params) {
      std::fill(acc_g, acc_g + 2 * dp, 0.f);
      std::fill(tot_g, tot_g + 2 * dp, 0.0);
    }
    int pending = 0;
    for (std::int64_t r = r0; r < r1; ++r) {
      float const* xr = xp + r * d;
      float const* dyr = dyp + r * d;
      float const m = mp[r], s = sp[r];
      // Pass 1 reads dy and x only: the row sums for dx and the parameter partials.
      float sg = 0.f, sgx = 0.f;
      if (want_dx && want_params) {
#pragma omp simd reduction(+ : sg, sgx)
        for (std::int64_t j = 0; j < d; ++j) {
          float const xh = (xr[j] - m) * s;
          float const g = gp[j] * dyr[j];
          sg += g;
          sgx += g * xh;
          acc_g[j] += dyr[j] * xh;
          acc_b[j] += dyr[j];
        }
      } else if (want_dx) {
#pragma omp simd reduction(+ : sg, sgx)
        for (std::int64_t j = 0; j < d; ++j) {
          float const xh = (xr[j] - m) * s;
          float const g = gp[j] * dyr[j];
          sg += g;
          sgx += g * xh;
        }
      } else {
#pragma omp simd
        for (std::int64_t j = 0; j < d; ++j) {
          float const xh = (xr[j] - m) * s;  // rounded as in the loop above: same dgamma either way
          acc_g[j] += dyr[j] * xh;
          acc_b[j] += dyr[j];
        }
      }
      // Pass 2 writes dx element by element, after everything that reads this row of dy.
      if (want_dx) {
        float* dxr = dxp + r * d;
        float const a = sg * inv_d, b = sgx * inv_d;
        if (rp != nullptr) {
          float const* rr = rp + r * d;
#pragma omp simd
          for (std::int64_t j = 0; j < d; ++j) dxr[j] = rr[j] + s * (gp[j] * dyr[j] - a - (xr[j] - m) * s * b);
        } else {
#pragma omp simd
          for (std::int64_t j = 0; j < d; ++j) dxr[j] = s * (gp[j] * dyr[j] - a - (xr[j] - m) * s * b);
        }
      }
      if (want_params && ++pending == ln::kFlushRows) {
        fold();
        pending = 0;
      }
    }
    if (want_params) {
      fold();
#pragma omp barrier
      // Combine the partials per feature, threads in a fixed order (deterministic).
#pragma omp for schedule(static)
      for (std::int64_t j = 0; j < d; ++j) {
        double g = 0, b = 0;
        for (int u = 0; u < nt; ++u) {
          g += ds[static_cast<std::int64_t>(u) * 2 * dp + j];
          b += ds[static_cast<std::int64_t>(u) * 2 * dp + dp + j];
        }
        if (dgp != nullptr) dgp[j] += static_cast<float>(g);
        if (dbp != nullptr) dbp[j] += static_cast<float>(b);
      }
    }
  }
}

}  // namespace lnformer::ops
