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

#include <lnformer/optim/concept.hpp>
#include <lnformer/optim/state.hpp>
#include <lnformer/ops/optimizer.hpp>

#include <fmt/format.h>

#include <array>
#include <cmath>
#include <string>
#include <string_view>

namespace lnformer {

struct RAdam {
  static constexpr std::string_view name = "radam";
  static constexpr std::array<std::string_view, 2> buffer_names{"exp_avg", "exp_avg_sq"};
  template <class B>
  using State = OptimizerState<RAdam, B>;

  float beta1 = 0.9f;        ///< in [0, 1)
  float beta2 = 0.999f;      ///< in [0, 1)
  float eps = 1e-8f;         ///< > 0
  float weight_decay = 0.f;  ///< coupled (L2); for parameters with decay = true

  void validate() const {
    detail::check_beta(name, "beta1", beta1);
    detail::check_beta(name, "beta2", beta2);
    detail::check_positive(name, "eps", eps);
    detail::check_non_negative(name, "weight_decay", weight_decay);
  }

  /// State over `params`; parameters with decay = true get weight_decay, the others 0.
  template <class B>
  [[nodiscard]] State<B> make_state(ParameterList<B> const& params) const {
    return make_state(params, [this](ParameterRef<B> const& p) { return p.param->decay ? weight_decay : 0.f; });
  }
  /// State over `params`, each parameter's weight decay given by `rule(ParameterRef)`.
  template <class B, WeightDecayRule<B> R>
  [[nodiscard]] State<B> make_state(ParameterList<B> const& params, R&& rule) const {
    validate();
    return detail::make_optimizer_state<RAdam>(params, rule, {true, true});
  }

  /// Whether update t (from 1) uses the rectified adaptive step (rho_t > 5), and the factor r.
  struct Rectification {
    bool rectify = false;
    double rect = 1.0;
  };
  [[nodiscard]] Rectification rectification(std::int64_t t) const {
    double const b2 = beta2, step = static_cast<double>(t);
    double const bias_correction2 = 1.0 - std::pow(b2, step);
    double const rho_inf = 2.0 / (1.0 - b2) - 1.0;
    double const rho_t = rho_inf - 2.0 * step * std::pow(b2, step) / bias_correction2;
    if (!(rho_t > 5.0)) return {};
    return {true, std::sqrt((rho_t - 4.0) * (rho_t - 2.0) * rho_inf / ((rho_inf - 4.0) * (rho_inf - 2.0) * rho_t))};
  }

  /// One update with learning rate `lr` from the gradients in `params`.
  template <class B>
  void step(State<B>& state, ParameterList<B> const& params, float lr) const {
    std::int64_t const t = detail::begin_step(*this, state, params, lr);
    double const b1 = beta1, b2 = beta2, step = static_cast<double>(t);
    double const bias_correction1 = 1.0 - std::pow(b1, step);
    double const bias_correction2 = 1.0 - std::pow(b2, step);
    Rectification const r = rectification(t);
    ops::RAdamCoefficients c{.beta1 = beta1,
                             .one_minus_beta1 = static_cast<float>(1.0 - b1),
                             .beta2 = beta2,
                             .one_minus_beta2 = static_cast<float>(1.0 - b2),
                             .weight_decay = 0.f,
                             .bias_correction1 = static_cast<float>(bias_correction1),
                             .lr = lr,
                             .rectify = r.rectify,
                             .bias_correction2_sqrt = static_cast<float>(std::sqrt(bias_correction2)),
                             .eps = eps,
                             .rect = static_cast<float>(r.rect)};
    for (std::size_t i = 0; i < params.size(); ++i) {
      Parameter<B>& p = *params[i].param;
      c.weight_decay = state.params[i].weight_decay;
      radam_update(B{}, p.value.view(), state.buffers[0][i].view(), state.buffers[1][i].view(), p.grad.cview(),
                        c);
    }
  }

  [[nodiscard]] std::string describe() const {
    return fmt::format("beta1={} beta2={} eps={} weight_decay={}", beta1, beta2, eps, weight_decay);
  }
};
static_assert(check_optimizer<RAdam>() && Optimizer<RAdam>);

}  // namespace lnformer
