#pragma once
// AdamFamily<Rule>: what Adam, AdamW and RAdam share, written once (ensmallen style: one template,
// one rule per variant, the named variants as aliases: `using Adam = AdamFamily<AdamRule>`).
// The configuration (beta1, beta2, eps, weight_decay), validate(), make_state, the per-parameter loop
// of step() and describe() live here; a rule says how the update's scalars are computed and which
// fused update (ops/optimizer.hpp) applies them. The configuration stays an aggregate, so
// `Adam{.beta2 = 0.98f}` is written as before.
//
// A rule provides (AdamRuleFor checks each, naming what is missing):
//
//   struct MyRule {
//     static constexpr std::string_view name = "mine";        // the optimizer's runtime name
//     static constexpr float default_weight_decay = 0.f;       // the family's weight_decay default
//     using Coefficients = ops::AdamCoefficients;              // what its update op takes
//     static Coefficients coefficients(AdamHyper const&, float lr, std::int64_t t);  // update t (from 1)
//     static void set_weight_decay(Coefficients&, float lr, float weight_decay);     // per parameter
//     template <class B> static void update(B, View<B> p, View<B> exp_avg, View<B> exp_avg_sq, CView<B> grad,
//                                           Coefficients const&);                    // calls the op
//   };

#include <lnformer/nn/parameter.hpp>
#include <lnformer/ops/optimizer.hpp>
#include <lnformer/optim/state.hpp>

#include <fmt/format.h>

#include <array>
#include <concepts>
#include <cstdint>
#include <string>
#include <string_view>

namespace lnformer {

/// The hyperparameters a rule's coefficients depend on (the configuration less weight decay, which
/// is per parameter).
struct AdamHyper {
  float beta1 = 0.9f;
  float beta2 = 0.999f;
  float eps = 1e-8f;
};

template <class R>
concept AdamRuleFor =
    requires { { R::name } -> std::convertible_to<std::string_view>; } &&
    requires { { R::default_weight_decay } -> std::convertible_to<float>; } &&
    requires(AdamHyper const& h, float lr, std::int64_t t, typename R::Coefficients& c) {
      { R::coefficients(h, lr, t) } -> std::same_as<typename R::Coefficients>;
      R::set_weight_decay(c, lr, lr);
    };

template <class Rule>
struct AdamFamily {
  static_assert(requires { { Rule::name } -> std::convertible_to<std::string_view>; },
                "AdamFamily: the rule needs `static constexpr std::string_view name` (see optim/adam_family.hpp)");
  static_assert(requires { { Rule::default_weight_decay } -> std::convertible_to<float>; },
                "AdamFamily: the rule needs `static constexpr float default_weight_decay` (see optim/adam_family.hpp)");
  static_assert(AdamRuleFor<Rule>,
                "AdamFamily: the rule needs `using Coefficients`, `static Coefficients coefficients(AdamHyper const&, "
                "float lr, std::int64_t t)` and `static void set_weight_decay(Coefficients&, float lr, float wd)` "
                "(see optim/adam_family.hpp)");

  static constexpr std::string_view name = Rule::name;
  static constexpr std::array<std::string_view, 2> buffer_names{"exp_avg", "exp_avg_sq"};
  template <class B>
  using State = OptimizerState<AdamFamily, B>;

  float beta1 = 0.9f;                                ///< in [0, 1)
  float beta2 = 0.999f;                              ///< in [0, 1)
  float eps = 1e-8f;                                 ///< > 0
  float weight_decay = Rule::default_weight_decay;  ///< for parameters with decay = true (the rule says how)

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
    return detail::make_optimizer_state<AdamFamily>(params, rule, {true, true});
  }

  /// One update with learning rate `lr` from the gradients in `params`.
  template <class B>
  void step(State<B>& state, ParameterList<B> const& params, float lr) const {
    std::int64_t const t = detail::begin_step(*this, state, params, lr);
    typename Rule::Coefficients c = Rule::coefficients(AdamHyper{beta1, beta2, eps}, lr, t);
    for (std::size_t i = 0; i < params.size(); ++i) {
      Parameter<B>& p = *params[i].param;
      Rule::set_weight_decay(c, lr, state.params[i].weight_decay);
      Rule::update(B{}, p.value.view(), state.buffers[0][i].view(), state.buffers[1][i].view(), p.grad.cview(), c);
    }
  }

  /// The rule's extra facts about update t, where it has them (RAdam: whether it rectifies).
  [[nodiscard]] auto rectification(std::int64_t t) const
    requires requires { Rule::rectification(beta2, t); }
  {
    return Rule::rectification(beta2, t);
  }

  [[nodiscard]] std::string describe() const {
    return fmt::format("beta1={} beta2={} eps={} weight_decay={}", beta1, beta2, eps, weight_decay);
  }
};

}  // namespace lnformer
