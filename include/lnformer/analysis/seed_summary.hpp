#pragma once
// Summaries of a quantity measured once per seed (models drawn from seeds model_seed, model_seed + 1,
// ...): the median and the spread. The analyses report medians because some of the papers' quantities
// have heavy tails across initialisations (Post-LN's output change at 48 sublayers ranges about 10x
// over 10 seeds), where a mean of a few seeds is carried by one draw and a median is not.

#include <lnformer/core/error.hpp>

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <vector>

namespace lnformer {

struct SeedSummary {
  int n = 0;          ///< number of values (seeds)
  double min = 0;
  double q1 = 0;      ///< first quartile
  double median = 0;
  double q3 = 0;      ///< third quartile
  double max = 0;
  double mean = 0;
};

namespace detail {
/// Quantile p of sorted values, linear between order statistics (numpy's default, R type 7).
inline double sorted_quantile(std::vector<double> const& s, double p) {
  double const h = p * static_cast<double>(s.size() - 1);
  auto const lo = static_cast<std::size_t>(std::floor(h));
  std::size_t const hi = std::min(lo + 1, s.size() - 1);
  return s[lo] + (h - static_cast<double>(lo)) * (s[hi] - s[lo]);
}
}  // namespace detail

inline SeedSummary summarize(std::vector<double> v) {
  LNF_EXPECTS_AS(ValueError, !v.empty(), "summarize: no values");
  std::sort(v.begin(), v.end());
  SeedSummary s;
  s.n = static_cast<int>(v.size());
  s.min = v.front();
  s.max = v.back();
  s.q1 = detail::sorted_quantile(v, 0.25);
  s.median = detail::sorted_quantile(v, 0.5);
  s.q3 = detail::sorted_quantile(v, 0.75);
  for (double x : v) s.mean += x;
  s.mean /= static_cast<double>(v.size());
  return s;
}

}  // namespace lnformer
