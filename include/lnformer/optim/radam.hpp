#pragma once
// RAdam: torch.optim.RAdam as in torch 1.13 (Liu et al. 2019, "On the Variance of the Adaptive
// Learning Rate"), the optimizer of the Admin experiments. Coupled weight decay. With t the update
// count (double precision):
//
//   g = g + wd * p;  m = beta1 m + (1 - beta1) g;  v = beta2 v + (1 - beta2) g^2
//   rho_inf = 2 / (1 - beta2) - 1,  rho_t = rho_inf - 2 t beta2^t / (1 - beta2^t)
//   rho_t > 5:  r = sqrt((rho_t - 4)(rho_t - 2) rho_inf / ((rho_inf - 4)(rho_inf - 2) rho_t))
//               p = p - lr * m / (1 - beta1^t) * sqrt(1 - beta2^t) / (sqrt(v) + eps) * r
//   otherwise:  p = p - lr * m / (1 - beta1^t)          (un-adapted momentum step)
//
// Note torch's eps is added to sqrt(v) before the bias correction (unlike Adam). The Admin
// reference code uses its own RAdam (fairseq fork), which differs in the first steps (it skips
// the update while rho_t < 5 unless degenerated_to_sgd); this is torch's.
// Configuration, state and step loop: optim/adam_family.hpp.

#include <lnformer/ops/optimizer.hpp>
#include <lnformer/optim/adam_family.hpp>
#include <lnformer/optim/concept.hpp>

#include <cmath>
#include <cstdint>
#include <string_view>

namespace lnformer {

/// RAdam's rule: the variance rectification, coupled weight decay, the fused radam_update.
struct RAdamRule {
  static constexpr std::string_view name = "radam";
  static constexpr float default_weight_decay = 0.f;
  using Coefficients = ops::RAdamCoefficients;

  /// Whether update t (from 1) uses the rectified adaptive step (rho_t > 5), and the factor r.
  struct Rectification {
    bool rectify = false;
    double rect = 1.0;
  };
  static Rectification rectification(float beta2, std::int64_t t) {
    double const b2 = beta2, step = static_cast<double>(t);
    double const bias_correction2 = 1.0 - std::pow(b2, step);
    double const rho_inf = 2.0 / (1.0 - b2) - 1.0;
    double const rho_t = rho_inf - 2.0 * step * std::pow(b2, step) / bias_correction2;
    if (!(rho_t > 5.0)) return {};
    return {true, std::sqrt((rho_t - 4.0) * (rho_t - 2.0) * rho_inf / ((rho_inf - 4.0) * (rho_inf - 2.0) * rho_t))};
  }

  static Coefficients coefficients(AdamHyper const& h, float lr, std::int64_t t) {
    double const b1 = h.beta1, b2 = h.beta2, step = static_cast<double>(t);
    double const bias_correction1 = 1.0 - std::pow(b1, step);
    double const bias_correction2 = 1.0 - std::pow(b2, step);
    Rectification const r = rectification(h.beta2, t);
    return {.beta1 = h.beta1,
            .one_minus_beta1 = static_cast<float>(1.0 - b1),
            .beta2 = h.beta2,
            .one_minus_beta2 = static_cast<float>(1.0 - b2),
            .weight_decay = 0.f,
            .bias_correction1 = static_cast<float>(bias_correction1),
            .lr = lr,
            .rectify = r.rectify,
            .bias_correction2_sqrt = static_cast<float>(std::sqrt(bias_correction2)),
            .eps = h.eps,
            .rect = static_cast<float>(r.rect)};
  }
  static void set_weight_decay(Coefficients& c, float /*lr*/, float weight_decay) { c.weight_decay = weight_decay; }
  template <class B>
  static void update(B b, View<B> p, View<B> exp_avg, View<B> exp_avg_sq, CView<B> grad, Coefficients const& c) {
    radam_update(b, p, exp_avg, exp_avg_sq, grad, c);
  }
};

using RAdam = AdamFamily<RAdamRule>;
static_assert(check_optimizer<RAdam>() && Optimizer<RAdam>);

}  // namespace lnformer
