#pragma once
// Adam: torch.optim.Adam (Kingma & Ba) with coupled weight decay (L2: wd * p added to the gradient),
// one fused pass per parameter tensor. Bias corrections in double from the update count t:
//
//   g = g + wd * p;  m = beta1 m + (1 - beta1) g;  v = beta2 v + (1 - beta2) g^2
//   p = p - lr / (1 - beta1^t) * m / (sqrt(v) / sqrt(1 - beta2^t) + eps)
//
// Defaults are torch's (0.9, 0.999, 1e-8); the papers' fairseq recipes use beta2 = 0.98.

#include <lnformer/optim/concept.hpp>
#include <lnformer/optim/state.hpp>
#include <lnformer/ops/optimizer.hpp>

#include <fmt/format.h>

#include <array>
#include <cmath>
#include <string>
#include <string_view>

namespace lnformer {

namespace detail {
/// The Adam/AdamW scalars of update t (torch 1.13's arithmetic: Python doubles, rounded to float
/// where they meet the tensors).
inline ops::AdamCoefficients adam_coefficients(float beta1, float beta2, float eps, float lr, std::int64_t t) {
  double const b1 = beta1, b2 = beta2, step = static_cast<double>(t);
  double const bias_correction1 = 1.0 - std::pow(b1, step);
  double const bias_correction2 = 1.0 - std::pow(b2, step);
  double const step_size = static_cast<double>(lr) / bias_correction1;
  return {.beta1 = beta1,
          .one_minus_beta1 = static_cast<float>(1.0 - b1),
          .beta2 = beta2,
          .one_minus_beta2 = static_cast<float>(1.0 - b2),
          .weight_decay = 0.f,
          .param_scale = 1.f,
          .bias_correction2_sqrt = static_cast<float>(std::sqrt(bias_correction2)),
          .eps = eps,
          .neg_step_size = static_cast<float>(-step_size)};
}
}  // namespace detail

struct Adam {
  static constexpr std::string_view name = "adam";
  static constexpr std::array<std::string_view, 2> buffer_names{"exp_avg", "exp_avg_sq"};
  template <class B>
  using State = OptimizerState<Adam, B>;

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
    return detail::make_optimizer_state<Adam>(params, rule, {true, true});
  }

  /// One update with learning rate `lr` from the gradients in `params`.
  template <class B>
  void step(State<B>& state, ParameterList<B> const& params, float lr) const {
    std::int64_t const t = detail::begin_step(*this, state, params, lr);
    ops::AdamCoefficients c = detail::adam_coefficients(beta1, beta2, eps, lr, t);
    for (std::size_t i = 0; i < params.size(); ++i) {
      Parameter<B>& p = *params[i].param;
      c.weight_decay = state.params[i].weight_decay;
      adam_update(B{}, p.value.view(), state.buffers[0][i].view(), state.buffers[1][i].view(), p.grad.cview(),
                       c);
    }
  }

  [[nodiscard]] std::string describe() const {
    return fmt::format("beta1={} beta2={} eps={} weight_decay={}", beta1, beta2, eps, weight_decay);
  }
};
static_assert(check_optimizer<Adam>() && Optimizer<Adam>);

}  // namespace lnformer
