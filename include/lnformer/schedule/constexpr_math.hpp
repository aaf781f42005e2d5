#pragma once
// sqrt and cos usable in constant expressions. GCC folds std::sqrt/std::cos as builtins during
// constant evaluation, clang 14 does not (C++20 does not make <cmath> constexpr), so schedules call
// these: at run time they are std::sqrt/std::cos (bit-identical to what fairseq's Python computes),
// during constant evaluation a Newton iteration and a range-reduced Taylor series, each within an
// ulp or two of the library functions.

#include <cmath>
#include <cstdint>
#include <limits>
#include <type_traits>

namespace lnformer::detail {

/// True unless v is NaN or infinite (std::isfinite is not constexpr in C++20).
constexpr bool constexpr_isfinite(double v) {
  return v == v && v != std::numeric_limits<double>::infinity() && v != -std::numeric_limits<double>::infinity();
}

/// sqrt(x) for x >= 0 (NaN otherwise).
constexpr double constexpr_sqrt(double x) {
  if (!std::is_constant_evaluated()) return std::sqrt(x);
  if (!(x >= 0)) return std::numeric_limits<double>::quiet_NaN();
  if (x == 0 || x == std::numeric_limits<double>::infinity()) return x;
  // Newton from above converges monotonically; stop when the iterate stops decreasing.
  double cur = x > 1 ? x : 1;
  while (true) {
    double const next = 0.5 * (cur + x / cur);
    if (!(next < cur)) return cur;
    cur = next;
  }
}

inline constexpr double kConstexprPi = 3.14159265358979323846;

/// cos(x) for finite x.
constexpr double constexpr_cos(double x) {
  if (!std::is_constant_evaluated()) return std::cos(x);
  if (!constexpr_isfinite(x)) return std::numeric_limits<double>::quiet_NaN();
  // Reduce to [0, pi]: cos is even and 2 pi-periodic.
  if (x < 0) x = -x;
  double const two_pi = 2 * kConstexprPi;
  if (x > two_pi) x -= two_pi * static_cast<double>(static_cast<std::int64_t>(x / two_pi));
  if (x > kConstexprPi) x = two_pi - x;
  // cos(x) = -cos(pi - x): the series runs on [0, pi/2], where 12 terms leave an error < 1e-17.
  double sign = 1;
  if (x > kConstexprPi / 2) {
    x = kConstexprPi - x;
    sign = -1;
  }
  double const x2 = x * x;
  double term = 1, sum = 1;
  for (int k = 1; k <= 12; ++k) {
    term *= -x2 / static_cast<double>((2 * k - 1) * (2 * k));
    sum += term;
  }
  return sign * sum;
}

}  // namespace lnformer::detail
