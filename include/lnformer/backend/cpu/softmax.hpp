#pragma once
// CPU softmax: OpenMP over rows, `omp simd` inner loops, float arithmetic, and a vectorisable exp
// (glibc's expf is only vectorised under -ffast-math). Contract in ops/softmax.hpp.
//
// Forward per row (three sweeps over a row that stays in L1):
//   1. y = scale * x + mask, and the row max m    (y may alias x: element-wise)
//   2. y = exp(y - m), and the row sum s          (every argument is <= 0)
//   3. y *= 1 / s
// A row whose max is -inf (fully masked) is written as zeros.

#include <lnformer/backend/cpu/cpu.hpp>
#include <lnformer/ops/softmax.hpp>

#include <omp.h>

#include <algorithm>
#include <array>
#include <bit>
#include <cstdint>
#include <limits>

namespace lnformer::cpu::detail {

/// exp(x) for x <= 0 (and -inf), within ~1.2 ulp of the exact value; NaN gives NaN. Results below
/// exp(-87) ~ 1.6e-38 (the edge of the subnormal range) flush to 0. x = n ln2 + r with |r| <= ln2 / 2
/// (a Cody-Waite split of ln2, so r is exact to float precision), e^r by its degree-7 Taylor
/// polynomial (truncation error < 1e-8 relative), 2^n built in the exponent bits.
/// Branch-free on purpose: the selects are integer masks, because GCC (under the default
/// -ftrapping-math) leaves a float `a > b ? a : b` as control flow and will not vectorise the loop.
inline float exp_nonpositive(float x) {
  constexpr float kLowest = -87.f;  // exp(kLowest) is still a normal float
  constexpr float kLog2e = 1.44269504088896341f;
  constexpr float kLn2Hi = 0.693359375f;              // 9 significant bits: n * kLn2Hi is exact
  constexpr float kLn2Lo = -2.12194440054690583e-4f;  // ln 2 - kLn2Hi
  auto const bits = [](float v) { return std::bit_cast<std::uint32_t>(v); };
  std::uint32_t const in_range =
      -static_cast<std::uint32_t>(x >= kLowest);  // all ones, or 0 for -inf/NaN/tiny
  std::uint32_t const is_nan = -static_cast<std::uint32_t>(x != x);
  float const xc = std::bit_cast<float>((bits(x) & in_range) | (bits(kLowest) & ~in_range));
  auto const n = static_cast<std::int32_t>(xc * kLog2e - 0.5f);  // round to nearest (the argument is <= 0)
  float const nf = static_cast<float>(n);
  float const r = (xc - nf * kLn2Hi) - nf * kLn2Lo;
  float p = 1.f / 5040.f;
  p = p * r + 1.f / 720.f;
  p = p * r + 1.f / 120.f;
  p = p * r + 1.f / 24.f;
  p = p * r + 1.f / 6.f;
  p = p * r + 0.5f;
  p = p * r + 1.f;
  p = p * r + 1.f;
  float const e = p * std::bit_cast<float>((n + 127) << 23);  // n >= -126: 2^n is a normal float
  return std::bit_cast<float>((bits(e) & in_range) | (bits(x) & is_nan));
}

namespace softmax {
/// Below this many elements a parallel region costs more than it saves.
inline constexpr std::int64_t kParallelMinElems = 1 << 14;

/// Passes 2 and 3 on one row already holding v = scale * x + mask, with row max m (finite).
inline void exp_normalise(float* yr, std::int64_t n, float m) {
  float s = 0.f;
#pragma omp simd reduction(+ : s)
  for (std::int64_t j = 0; j < n; ++j) {
    float const e = exp_nonpositive(yr[j] - m);
    yr[j] = e;
    s += e;
  }
  float const inv = 1.f / s;  // s >= 1: the max element contributes exp(0)
#pragma omp simd
  for (std::int64_t j = 0; j < n; ++j) yr[j] *= inv;
}
}  // namespace softmax

}  // namespace lnformer::cpu::detail

namespace lnformer::ops {

inline void softmax_forward(Cpu, View<Cpu> y, CView<Cpu> x, CView<Cpu> mask, float scale) {
  auto const l = check::softmax_forward<Cpu>(y, x, mask, scale);
  std::int64_t const rows = l.rows, n = l.cols;
  if (rows == 0) return;
  float const* xp = x.data();
  float* yp = y.data();  // may equal xp
  float const* mp = l.masked ? mask.data() : nullptr;
  bool const parallel = rows * n >= cpu::detail::softmax::kParallelMinElems && rows > 1;

#pragma omp parallel if (parallel)
  {
    // Each thread takes a contiguous block of rows and walks the mask's row offsets like an
    // odometer (no division per row).
    int const nt = omp_get_num_threads();
    int const t = omp_get_thread_num();
    std::int64_t const per = (rows + nt - 1) / nt;
    std::int64_t const r0 = std::min(rows, t * per), r1 = std::min(rows, r0 + per);
    std::array<std::int64_t, kMaxRank> idx{};
    std::int64_t moff = 0;
    if (mp != nullptr && r0 < r1) {
      std::int64_t rem = r0;
      for (int i = l.lead_rank - 1; i >= 0; --i) {
        idx[i] = rem % l.lead_size[i];
        rem /= l.lead_size[i];
      }
      moff = l.mask_row_offset(r0);
    }
    constexpr float kNegInf = -std::numeric_limits<float>::infinity();
    for (std::int64_t r = r0; r < r1; ++r) {
      float const* xr = xp + r * n;
      float* yr = yp + r * n;
      float m = kNegInf;
      if (mp == nullptr) {
#pragma omp simd reduction(max : m)
        for (std::int64_t j = 0; j < n; ++j) {
          float const v = scale * xr[j];
          yr[j] = v;
          m = std::max(m, v);
        }
      } else if (l.mask_col_stride == 1) {
        float const* mr = mp + moff;
#pragma omp simd reduction(max : m)
        for (std::int64_t j = 0; j < n; ++j) {
          float const v = scale * xr[j] + mr[j];
          yr[j] = v;
          m = std::max(m, v);
        }
      } else {
        float const c = mp[moff];  // the mask's last dim is 1: one value for the whole row
#pragma omp simd reduction(max : m)
        for (std::int64_t j = 0; j < n; ++j) {
          float const v = scale * xr[j] + c;
          yr[j] = v;
          m = std::max(m, v);
        }
      }
      if (m == kNegInf) {
        std::fill(yr, yr + n, 0.f);  // fully masked row: zeros by contract, not 0/0
      } else {
        cpu::detail::softmax::exp_normalise(yr, n, m);
      }
      if (mp != nullptr) {  // advance the odometer to row r + 1
        for (int i = l.lead_rank - 1; i >= 0; --i) {
          moff += l.mask_lead_stride[i];
          if (++idx[i] < l.lead_size[i]) break;
          moff -= idx[i] * l.mask_lead_stride[i];
          idx[i] = 0;
        }
      }
    }
  }
}

inline void softmax_backward(Cpu, View<Cpu> dx, CView<Cpu> dy, CView<Cpu> y, float scale) {
  auto const l = check::softmax_backward<Cpu>(dx, dy, y, scale);
  std::int64_t const rows = l.rows, n = l.cols;
  float const* yp = y.data();
  float const* dyp = dy.data();
  float* dxp = dx.data();  // may equal dyp or yp: the row sum reads the whole row before any write

#pragma omp parallel for schedule(static) if (rows * n >= cpu::detail::softmax::kParallelMinElems)
  for (std::int64_t r = 0; r < rows; ++r) {
    float const* yr = yp + r * n;
    float const* dyr = dyp + r * n;
    float* dxr = dxp + r * n;
    float s = 0.f;
#pragma omp simd reduction(+ : s)
    for (std::int64_t j = 0; j < n; ++j) s += dyr[j] * yr[j];
#pragma omp simd
    for (std::int64_t j = 0; j < n; ++j) dxr[j] = scale * yr[j] * (dyr[j] - s);
  }
}

}  // namespace lnformer::ops
