#pragma once
// AdamW: torch.optim.AdamW (Loshchilov & Hutter), Adam with decoupled weight decay: the parameter
// shrinks by lr * wd before the Adam update, the moments never see the decay.
//
//   p = p * (1 - lr * wd);  then Adam without weight decay (adam.hpp)
//
// Defaults are torch's: (0.9, 0.999), eps 1e-8, weight_decay 1e-2.

#include <lnformer/optim/adam.hpp>
#include <lnformer/optim/concept.hpp>
#include <lnformer/optim/state.hpp>
#include <lnformer/ops/optimizer.hpp>

#include <fmt/format.h>

#include <array>
#include <string>
#include <string_view>

namespace lnformer {

struct AdamW {
  static constexpr std::string_view name = "adamw";
  static constexpr std::array<std::string_view, 2> buffer_names{"exp_avg", "exp_avg_sq"};
  template <class B>
  using State = OptimizerState<AdamW, B>;

  float beta1 = 0.9f;         ///< in [0, 1)
  float beta2 = 0.999f;       ///< in [0, 1)
  float eps = 1e-8f;          ///< > 0
  float weight_decay = 1e-2f; ///< decoupled; for parameters with decay = true

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
    return detail::make_optimizer_state<AdamW>(params, rule, {true, true});
  }

  /// One update with learning rate `lr` from the gradients in `params`.
  template <class B>
  void step(State<B>& state, ParameterList<B> const& params, float lr) const {
    std::int64_t const t = detail::begin_step(*this, state, params, lr);
    ops::AdamCoefficients c = detail::adam_coefficients(beta1, beta2, eps, lr, t);
    for (std::size_t i = 0; i < params.size(); ++i) {
      Parameter<B>& p = *params[i].param;
      // torch: param.mul_(1 - lr * weight_decay), in Python doubles
      c.param_scale =
          static_cast<float>(1.0 - static_cast<double>(lr) * static_cast<double>(state.params[i].weight_decay));
      adam_update(B{}, p.value.view(), state.buffers[0][i].view(), state.buffers[1][i].view(), p.grad.cview(),
                       c);
    }
  }

  [[nodiscard]] std::string describe() const {
    return fmt::format("beta1={} beta2={} eps={} weight_decay={}", beta1, beta2, eps, weight_decay);
  }
};
static_assert(check_optimizer<AdamW>() && Optimizer<AdamW>);

}  // namespace lnformer
