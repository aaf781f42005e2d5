#pragma once
// The Optimizer concept. An optimizer is an aggregate of its configuration (no learning rate: that
// comes per step, from a schedule) with
//
//   struct MyOpt {
//     static constexpr std::string_view name = "mine";
//     static constexpr std::array<std::string_view, K> buffer_names{...};   // per-parameter buffers
//     template <class B> using State = OptimizerState<MyOpt, B>;
//     void validate() const;                                                 // ValueError naming the field
//     template <class B> State<B> make_state(ParameterList<B> const&) const; // default weight-decay rule
//     template <class B, WeightDecayRule<B> R> State<B> make_state(ParameterList<B> const&, R&&) const;
//     template <class B> void step(State<B>&, ParameterList<B> const&, float lr) const;
//     std::string describe() const;                                          // the configuration, for logs
//   };
//
// The update kernels are called unqualified (sgd_update(B{}, ...)), found by argument-dependent
// lookup in lnformer::ops at instantiation, whatever the include order (ops/optimizer.hpp is their
// contract; each backend implements them, and the Backend concept requires them).
//
// step(state, params, lr) makes one update from the gradients in params (it neither clips nor
// zeroes them) and counts it in state.step.

#include <lnformer/backend/cpu/tag.hpp>
#include <lnformer/nn/parameter.hpp>
#include <lnformer/optim/state.hpp>

#include <concepts>
#include <cstddef>
#include <string>
#include <string_view>

namespace lnformer {

template <class O, class B>
concept OptimizerFor =
    requires { { O::name } -> std::convertible_to<std::string_view>; } &&
    requires { { O::buffer_names.size() } -> std::convertible_to<std::size_t>; } &&
    std::default_initializable<O> && std::copyable<O> &&
    std::same_as<typename O::template State<B>, OptimizerState<O, B>> &&
    requires(O const& o, ParameterList<B> const& params, OptimizerState<O, B>& st, float lr) {
      o.validate();
      { o.make_state(params) } -> std::same_as<OptimizerState<O, B>>;
      o.step(st, params, lr);
      { o.describe() } -> std::convertible_to<std::string>;
    };

/// An optimizer usable with the CPU backend (every optimizer is: the host kernels serve it).
template <class O>
concept Optimizer = OptimizerFor<O, Cpu>;

/// Checks an optimizer member by member, so that a user-written optimizer that misses one fails with
/// a message naming it: `static_assert(check_optimizer<MyOpt>());`.
template <class O, class B = Cpu>
consteval bool check_optimizer() {
  static_assert(requires { { O::name } -> std::convertible_to<std::string_view>; },
                "Optimizer: missing `static constexpr std::string_view name` (see optim/concept.hpp)");
  static_assert(requires { { O::buffer_names.size() } -> std::convertible_to<std::size_t>; },
                "Optimizer: missing `static constexpr std::array<std::string_view, K> buffer_names` (the "
                "per-parameter buffers, e.g. {\"exp_avg\", \"exp_avg_sq\"}; see optim/concept.hpp)");
  static_assert(std::default_initializable<O> && std::copyable<O>,
                "Optimizer: an optimizer is a copyable aggregate of its configuration with defaults for every field");
  static_assert(requires { typename O::template State<B>; },
                "Optimizer: missing `template <class B> using State = OptimizerState<O, B>;`");
  if constexpr (requires { typename O::template State<B>; }) {
    static_assert(std::same_as<typename O::template State<B>, OptimizerState<O, B>>,
                  "Optimizer: State<B> must be OptimizerState<O, B> (what save/load_optimizer_state read and write)");
  }
  static_assert(requires(O const& o) { o.validate(); },
                "Optimizer: missing `void validate() const` (throws ValueError for a bad configuration)");
  static_assert(requires(O const& o, ParameterList<B> const& params) {
    { o.make_state(params) } -> std::same_as<OptimizerState<O, B>>;
  }, "Optimizer: missing `template <class B> State<B> make_state(ParameterList<B> const&) const`");
  static_assert(requires(O const& o, ParameterList<B> const& params, OptimizerState<O, B>& st, float lr) {
    o.step(st, params, lr);
  }, "Optimizer: missing `template <class B> void step(State<B>&, ParameterList<B> const&, float lr) const`");
  static_assert(requires(O const& o) { { o.describe() } -> std::convertible_to<std::string>; },
                "Optimizer: missing `std::string describe() const` (the configuration, written into checkpoints)");
  return true;
}

}  // namespace lnformer
