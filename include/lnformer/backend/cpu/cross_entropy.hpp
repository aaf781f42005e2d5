#pragma once
// CPU label-smoothed cross-entropy. Contract in ops/cross_entropy.hpp.
//
// OpenMP over rows; within a row, `omp simd` loops over V. V ~ 10^4 makes a row 40 KB, so it stays in
// L1/L2 between passes: forward makes two (the max; then sum exp(x - m) and sum (m - x) together),
// backward one (dlogits = g * exp(x - lse) - g * eps_i, then the target element).
//
// Precision: nll = (m - x_t) + log s and smooth = sum_v (m - x_v) + V log s are formed from
// differences to the row max m, never as lse - x with lse ~ |x|, so logits of magnitude 1e4 lose
// nothing to cancellation (V * lse - sum x would lose everything in float).
// NaN: a NaN (or +inf) logit makes sum (m - x) NaN, and the row's lse, nll and loss are then NaN; a
// row whose cached lse is NaN gets a NaN gradient. So a divergence is never hidden.

#include <lnformer/backend/cpu/cpu.hpp>
#include <lnformer/ops/cross_entropy.hpp>

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstdint>
#include <limits>

namespace lnformer::cpu::detail::xent {

/// Below this many logits a parallel region costs more than it saves.
inline constexpr std::int64_t kParallelMin = std::int64_t{1} << 14;

/// exp(x) for x <= 88 (softmax arguments are <= 0), written so that GCC vectorises it inside `omp simd`
/// loops; libm's expf does not vectorise without -ffast-math. Relative error below 1e-7 (under 2 ulp)
/// down to -87.3; x < -87.7 (also -inf) gives exactly 0. Not for NaN (the callers detect NaN per row).
///
/// Range reduction x = k ln2 + r, |r| <= ln2 / 2, with ln2 split in two (Cody-Waite) so k ln2 is
/// exact; exp(r) = 1 + r + r^2 P(r) with Cephes' degree-5 minimax P; 2^k written into the exponent
/// bits (k = -127 gives the bits of +0, which is how the underflow becomes 0).
/// No float selects on purpose: GCC (-O3, -ftrapping-math) threads a float clamp into two paths,
/// which leaves the float arithmetic conditional and the loop scalar. The clamp at -88 is an unsigned
/// min on the bits instead (floats below -88 have larger patterns), and k + 127 = trunc(x / ln2 + 127.5)
/// is a floor because the argument is positive.
inline float exp_nonpos(float x) {
  float const xc =
      std::bit_cast<float>(std::min(std::bit_cast<std::uint32_t>(x), 0xC2B00000u));     // max(x, -88)
  auto const biased_k = static_cast<std::int32_t>(xc * 1.44269504088896341f + 127.5f);  // k + 127 in [0, 254]
  float const k = static_cast<float>(biased_k) - 127.f;
  float const r = (xc - k * 0.693359375f) - k * -2.12194440e-4f;
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  float const exp_r = (p * r) * r + r + 1.f;
  return exp_r * std::bit_cast<float>(static_cast<std::uint32_t>(biased_k) << 23);
}

/// Reductions over a row keep kLanes independent partial results (4 SSE registers, 1 AVX-512
/// register): `omp simd reduction` alone keeps one vector accumulator, and the max pass then runs at
/// the latency of one dependent max per vector (measured 3x slower with AVX-512).
inline constexpr std::int64_t kLanes = 16;

/// max_v x[v]; NaN entries are skipped here and caught by the gap sum in row_sums.
inline float row_max(float const* x, std::int64_t V) {
  float lane[kLanes];
  for (float& l : lane) l = -std::numeric_limits<float>::infinity();
  std::int64_t const full = V / kLanes * kLanes;
  for (std::int64_t v = 0; v < full; v += kLanes)
#pragma omp simd
    for (std::int64_t j = 0; j < kLanes; ++j) lane[j] = std::max(lane[j], x[v + j]);
  float m = -std::numeric_limits<float>::infinity();
  for (float l : lane) m = std::max(m, l);
  for (std::int64_t v = full; v < V; ++v) m = std::max(m, x[v]);
  return m;
}

/// {sum_v exp(x[v] - m), sum_v (m - x[v])} in one pass.
struct RowSums {
  float exp_sum, gap;
};
inline RowSums row_sums(float const* x, std::int64_t V, float m) {
  float es[kLanes] = {}, gs[kLanes] = {};
  std::int64_t const full = V / kLanes * kLanes;
  for (std::int64_t v = 0; v < full; v += kLanes)
#pragma omp simd
    for (std::int64_t j = 0; j < kLanes; ++j) {
      float const z = x[v + j] - m;
      es[j] += exp_nonpos(z);
      gs[j] -= z;
    }
  RowSums r{0.f, 0.f};
  for (std::int64_t j = 0; j < kLanes; ++j) {
    r.exp_sum += es[j];
    r.gap += gs[j];
  }
  for (std::int64_t v = full; v < V; ++v) {
    float const z = x[v] - m;
    r.exp_sum += exp_nonpos(z);
    r.gap -= z;
  }
  return r;
}

}  // namespace lnformer::cpu::detail::xent

namespace lnformer::ops {

inline void cross_entropy_forward(Cpu, View<Cpu> loss, View<Cpu> nll, View<Cpu> lse, CView<Cpu> logits,
                                  IView<Cpu> targets, float eps, std::int32_t padding_idx) {
  check::cross_entropy_forward<Cpu>(loss, nll, lse, logits, targets, eps, padding_idx);
  std::int64_t const N = logits.size(0), V = logits.size(1);
  auto const w = detail::label_smoothing(eps, V);
  float const* xs = logits.data();
  std::int32_t const* ts = targets.data();
  float* loss_out = loss.data();
  float* nll_out = nll.empty() ? nullptr : nll.data();
  float* lse_out = lse.data();
#pragma omp parallel for schedule(static) if (N * V >= cpu::detail::xent::kParallelMin)
  for (std::int64_t n = 0; n < N; ++n) {
    float const* x = xs + n * V;
    float const m = cpu::detail::xent::row_max(x, V);
    auto const [s, gap] = cpu::detail::xent::row_sums(x, V, m);  // sum exp(x - m), sum (m - x)
    float const log_s = std::isnan(gap) ? std::numeric_limits<float>::quiet_NaN() : std::log(s);
    lse_out[n] = m + log_s;
    std::int32_t const t = ts[n];
    float row_nll = 0.f, row_loss = 0.f;
    if (t != padding_idx) {
      row_nll = (m - x[t]) + log_s;
      double const smooth = static_cast<double>(gap) + static_cast<double>(V) * log_s;
      row_loss = static_cast<float>(w.target * row_nll + w.uniform * smooth);
    }
    loss_out[n] = row_loss;
    if (nll_out != nullptr) nll_out[n] = row_nll;
  }
}

inline void cross_entropy_backward(Cpu, View<Cpu> dlogits, CView<Cpu> dloss, CView<Cpu> logits,
                                   CView<Cpu> lse, IView<Cpu> targets, float eps, std::int32_t padding_idx) {
  check::cross_entropy_backward<Cpu>(dlogits, dloss, logits, lse, targets, eps, padding_idx);
  std::int64_t const N = logits.size(0), V = logits.size(1);
  auto const w = detail::label_smoothing(eps, V);
  float const* xs = logits.data();
  float* dxs = dlogits.data();
  float const* gs = dloss.data();
  float const* ls = lse.data();
  std::int32_t const* ts = targets.data();
#pragma omp parallel for schedule(static) if (N * V >= cpu::detail::xent::kParallelMin)
  for (std::int64_t n = 0; n < N; ++n) {
    float const* x = xs + n * V;
    float* dx = dxs + n * V;  // may alias x: element v is read before it is written
    std::int32_t const t = ts[n];
    float const l = ls[n];
    if (t == padding_idx || std::isnan(l)) {
      float const fill = t == padding_idx ? 0.f : l;
#pragma omp simd
      for (std::int64_t v = 0; v < V; ++v) dx[v] = fill;
      continue;
    }
    float const g = gs[n];
    auto const g_uniform = static_cast<float>(g * w.uniform);
#pragma omp simd
    for (std::int64_t v = 0; v < V; ++v) dx[v] = g * cpu::detail::xent::exp_nonpos(x[v] - l) - g_uniform;
    dx[t] -= static_cast<float>(g * w.target);
  }
}

}  // namespace lnformer::ops
