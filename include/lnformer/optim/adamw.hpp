#pragma once
// AdamW: torch.optim.AdamW (Loshchilov & Hutter), Adam with decoupled weight decay: the parameter
// shrinks by lr * wd before the Adam update, the moments never see the decay.
//
//   p = p * (1 - lr * wd);  then Adam without weight decay (adam.hpp)
//
// Defaults are torch's: (0.9, 0.999), eps 1e-8, weight_decay 1e-2.
// Configuration, state and step loop: optim/adam_family.hpp.

#include <lnformer/ops/optimizer.hpp>
#include <lnformer/optim/adam.hpp>
#include <lnformer/optim/adam_family.hpp>
#include <lnformer/optim/concept.hpp>

#include <cstdint>
#include <string_view>

namespace lnformer {

/// AdamW's rule: Adam's scalars, decoupled weight decay as a parameter scale, the fused adam_update.
struct AdamWRule {
  static constexpr std::string_view name = "adamw";
  static constexpr float default_weight_decay = 1e-2f;
  using Coefficients = ops::AdamCoefficients;

  static Coefficients coefficients(AdamHyper const& h, float lr, std::int64_t t) {
    return detail::adam_coefficients(h, lr, t);
  }
  static void set_weight_decay(Coefficients& c, float lr, float weight_decay) {
    // torch: param.mul_(1 - lr * weight_decay), in Python doubles
    c.param_scale = static_cast<float>(1.0 - static_cast<double>(lr) * static_cast<double>(weight_decay));
  }
  template <class B>
  static void update(B b, View<B> p, View<B> exp_avg, View<B> exp_avg_sq, CView<B> grad, Coefficients const& c) {
    adam_update(b, p, exp_avg, exp_avg_sq, grad, c);
  }
};

using AdamW = AdamFamily<AdamWRule>;
static_assert(check_optimizer<AdamW>() && Optimizer<AdamW>);

}  // namespace lnformer
