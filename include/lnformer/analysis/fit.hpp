#pragma once
// Least-squares line fits for the analysis tools and their tests: y = intercept + slope * x, with the
// coefficient of determination R^2. fit_log_log / fit_log_x fit against log-transformed data.

#include <lnformer/core/error.hpp>

#include <cmath>
#include <cstddef>
#include <vector>

namespace lnformer {

struct LinearFit {
  double slope = 0;
  double intercept = 0;
  double r2 = 0;  ///< 1 - SS_res / SS_tot (1 when y is constant and fitted exactly)
  [[nodiscard]] double operator()(double x) const { return intercept + slope * x; }
};

inline LinearFit fit_line(std::vector<double> const& x, std::vector<double> const& y) {
  LNF_EXPECTS_AS(ValueError, x.size() == y.size() && x.size() >= 2, "fit_line: need >= 2 points of equal count, got {} and {}",
                 x.size(), y.size());
  double const n = static_cast<double>(x.size());
  double mx = 0, my = 0;
  for (std::size_t i = 0; i < x.size(); ++i) mx += x[i], my += y[i];
  mx /= n;
  my /= n;
  double sxx = 0, sxy = 0, syy = 0;
  for (std::size_t i = 0; i < x.size(); ++i) {
    sxx += (x[i] - mx) * (x[i] - mx);
    sxy += (x[i] - mx) * (y[i] - my);
    syy += (y[i] - my) * (y[i] - my);
  }
  LNF_EXPECTS_AS(ValueError, sxx > 0, "fit_line: all x are equal");
  LinearFit f;
  f.slope = sxy / sxx;
  f.intercept = my - f.slope * mx;
  double ss_res = 0;
  for (std::size_t i = 0; i < x.size(); ++i) ss_res += (y[i] - f(x[i])) * (y[i] - f(x[i]));
  f.r2 = syy > 0 ? 1.0 - ss_res / syy : 1.0;
  return f;
}

namespace detail {
inline std::vector<double> logs(std::vector<double> const& v) {
  std::vector<double> out;
  out.reserve(v.size());
  for (double a : v) {
    LNF_EXPECTS_AS(ValueError, a > 0, "log fit: value {} is not positive", a);
    out.push_back(std::log(a));
  }
  return out;
}
}  // namespace detail

/// log y = intercept + slope * log x (a power law y ~ x^slope).
inline LinearFit fit_log_log(std::vector<double> const& x, std::vector<double> const& y) {
  return fit_line(detail::logs(x), detail::logs(y));
}
/// y = intercept + slope * log x (logarithmic growth).
inline LinearFit fit_log_x(std::vector<double> const& x, std::vector<double> const& y) {
  return fit_line(detail::logs(x), y);
}

}  // namespace lnformer
