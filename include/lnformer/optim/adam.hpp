#pragma once
// Adam: torch.optim.Adam (Kingma & Ba) with coupled weight decay (L2: wd * p added to the gradient),
// one fused pass per parameter tensor. Bias corrections in double from the update count t:
//
//   g = g + wd * p;  m = beta1 m + (1 - beta1) g;  v = beta2 v + (1 - beta2) g^2
//   p = p - lr / (1 - beta1^t) * m / (sqrt(v) / sqrt(1 - beta2^t) + eps)
//
// Defaults are torch's (0.9, 0.999, 1e-8); the papers' fairseq recipes use beta2 = 0.98.
// Configuration, state and step loop: optim/adam_family.hpp.

#include <lnformer/ops/optimizer.hpp>
#include <lnformer/optim/adam_family.hpp>
#include <lnformer/optim/concept.hpp>

#include <cmath>
#include <cstdint>
#include <string_view>

namespace lnformer {

namespace detail {
/// The Adam/AdamW scalars of update t (torch 1.13's arithmetic: Python doubles, rounded to float
/// where they meet the tensors); no weight decay of either kind.
inline ops::AdamCoefficients adam_coefficients(AdamHyper const& h, float lr, std::int64_t t) {
  double const b1 = h.beta1, b2 = h.beta2, step = static_cast<double>(t);
  double const bias_correction1 = 1.0 - std::pow(b1, step);
  double const bias_correction2 = 1.0 - std::pow(b2, step);
  double const step_size = static_cast<double>(lr) / bias_correction1;
  return {.beta1 = h.beta1,
          .one_minus_beta1 = static_cast<float>(1.0 - b1),
          .beta2 = h.beta2,
          .one_minus_beta2 = static_cast<float>(1.0 - b2),
          .weight_decay = 0.f,
          .param_scale = 1.f,
          .bias_correction2_sqrt = static_cast<float>(std::sqrt(bias_correction2)),
          .eps = h.eps,
          .neg_step_size = static_cast<float>(-step_size)};
}
}  // namespace detail

/// Adam's rule: coupled weight decay, the fused adam_update.
struct AdamRule {
  static constexpr std::string_view name = "adam";
  static constexpr float default_weight_decay = 0.f;
  using Coefficients = ops::AdamCoefficients;

  static Coefficients coefficients(AdamHyper const& h, float lr, std::int64_t t) {
    return detail::adam_coefficients(h, lr, t);
  }
  static void set_weight_decay(Coefficients& c, float /*lr*/, float weight_decay) { c.weight_decay = weight_decay; }
  template <class B>
  static void update(B b, View<B> p, View<B> exp_avg, View<B> exp_avg_sq, CView<B> grad, Coefficients const& c) {
    adam_update(b, p, exp_avg, exp_avg_sq, grad, c);
  }
};

using Adam = AdamFamily<AdamRule>;
static_assert(check_optimizer<Adam>() && Optimizer<Adam>);

}  // namespace lnformer
