#pragma once
// Reference activations: plain loops in double. Contract in ops/activation.hpp.

#include <lnformer/backend/reference/reference.hpp>
#include <lnformer/ops/activation.hpp>

#include <cmath>
#include <cstdint>

namespace lnformer::reference::detail {
inline double activation_value(ops::Activation act, double x) {
  if (act == ops::Activation::relu) return x > 0 || std::isnan(x) ? x : 0.0;  // NaN propagates
  return 0.5 * x * (1.0 + std::erf(x / std::sqrt(2.0)));
}
inline double activation_derivative(ops::Activation act, double x) {
  if (act == ops::Activation::relu) return x > 0 ? 1.0 : 0.0;  // relu'(0) = 0
  double const cdf = 0.5 * (1.0 + std::erf(x / std::sqrt(2.0)));
  double const pdf = std::exp(-0.5 * x * x) / std::sqrt(2.0 * 3.14159265358979323846);
  return cdf + x * pdf;
}
}  // namespace lnformer::reference::detail

namespace lnformer::ops {

inline void activation_forward(Reference, View<Reference> y, CView<Reference> x, Activation act) {
  check::activation_forward<Reference>(y, x, act);
  for (std::int64_t i = 0; i < x.numel(); ++i)
    y.data()[i] = static_cast<float>(reference::detail::activation_value(act, x.data()[i]));
}

inline void activation_backward(Reference, View<Reference> dx, CView<Reference> dy, CView<Reference> x,
                                Activation act) {
  check::activation_backward<Reference>(dx, dy, x, act);
  for (std::int64_t i = 0; i < x.numel(); ++i)
    dx.data()[i] =
        static_cast<float>(reference::detail::activation_derivative(act, x.data()[i]) * dy.data()[i]);
}

}  // namespace lnformer::ops
