#pragma once
// Sgd: torch.optim.SGD (momentum, dampening, Nesterov, coupled weight decay), one fused pass per
// parameter tensor.
//
//   d = g + wd * p                                  (wd: the parameter's weight decay)
//   buf = d on the first update, else momentum * buf + (1 - dampening) * d
//   d = nesterov ? d + momentum * buf : buf          (momentum = 0: no buffer, d as is)
//   p = p - lr * d

#include <lnformer/optim/concept.hpp>
#include <lnformer/optim/state.hpp>
#include <lnformer/ops/optimizer.hpp>

#include <fmt/format.h>

#include <array>
#include <string>
#include <string_view>

namespace lnformer {

struct Sgd {
  static constexpr std::string_view name = "sgd";
  static constexpr std::array<std::string_view, 1> buffer_names{"momentum_buffer"};
  template <class B>
  using State = OptimizerState<Sgd, B>;

  float momentum = 0.f;      ///< in [0, 1)
  float dampening = 0.f;     ///< in [0, 1]
  bool nesterov = false;     ///< needs momentum > 0 and dampening = 0 (as torch)
  float weight_decay = 0.f;  ///< coupled (added to the gradient); for parameters with decay = true

  void validate() const {
    detail::check_beta(name, "momentum", momentum);
    LNF_EXPECTS_AS(ValueError, dampening >= 0.f && dampening <= 1.f, "{}: dampening = {} is outside [0, 1]", name,
                   dampening);
    LNF_EXPECTS_AS(ValueError, !nesterov || (momentum > 0.f && dampening == 0.f),
                   "{}: Nesterov momentum needs momentum > 0 and dampening = 0 (got momentum = {}, dampening = {})",
                   name, momentum, dampening);
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
    return detail::make_optimizer_state<Sgd>(params, rule, {momentum != 0.f});
  }

  /// One update with learning rate `lr` from the gradients in `params`.
  template <class B>
  void step(State<B>& state, ParameterList<B> const& params, float lr) const {
    bool const first = state.step == 0;
    detail::begin_step(*this, state, params, lr);
    LNF_EXPECTS_AS(ValueError, state.has_buffer(0) == (momentum != 0.f),
                   "sgd::step: the state was made {} momentum buffers but momentum is now {}; make a new state",
                   state.has_buffer(0) ? "with" : "without", momentum);
    for (std::size_t i = 0; i < params.size(); ++i) {
      Parameter<B>& p = *params[i].param;
      ops::SgdCoefficients const c{.neg_lr = -lr,
                                   .weight_decay = state.params[i].weight_decay,
                                   .momentum = momentum,
                                   .one_minus_dampening = static_cast<float>(1.0 - static_cast<double>(dampening)),
                                   .nesterov = nesterov,
                                   .first = first};
      View<B> buf = state.has_buffer(0) ? state.buffers[0][i].view() : View<B>{};
      sgd_update(B{}, p.value.view(), buf, p.grad.cview(), c);
    }
  }

  [[nodiscard]] std::string describe() const {
    return fmt::format("momentum={} dampening={} nesterov={} weight_decay={}", momentum, dampening, nesterov,
                       weight_decay);
  }
};
static_assert(check_optimizer<Sgd>() && Optimizer<Sgd>);

}  // namespace lnformer
