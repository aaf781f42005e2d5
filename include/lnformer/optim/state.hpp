#pragma once
// OptimizerState<O, B>: the per-run state of optimizer O over parameters on backend B, a concrete
// type the caller holds (made by O::make_state, advanced by O::step, saved by io::save_optimizer_state).
//
// It records, per parameter and in the order of the ParameterList it was made from, the name, the
// shape and the weight decay that parameter gets (decided once, in make_state, as torch's param
// groups do), and the optimizer's buffers: buffers[k][i] is buffer O::buffer_names[k] (e.g.
// "exp_avg") of parameter i, of the parameter's shape. A buffer kind the configuration does not use
// (Sgd's momentum buffer when momentum = 0) is an empty vector, not zero tensors.
//
// Every step checks the state against the parameters it is given (count, names, shapes) and names
// the first parameter that differs, so a state cannot silently drive the wrong tensors.

#include <lnformer/core/error.hpp>
#include <lnformer/core/shape.hpp>
#include <lnformer/core/tensor.hpp>
#include <lnformer/nn/parameter.hpp>

#include <fmt/format.h>

#include <array>
#include <cmath>
#include <concepts>
#include <cstdint>
#include <functional>
#include <set>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

namespace lnformer {

/// A per-parameter weight-decay rule: called once per parameter by make_state, returns the weight
/// decay of that parameter (>= 0). The default rule is `p.param->decay ? opt.weight_decay : 0`.
template <class R, class B>
concept WeightDecayRule = std::invocable<R&, ParameterRef<B> const&> &&
                          std::convertible_to<std::invoke_result_t<R&, ParameterRef<B> const&>, float>;

template <class O, class B>
struct OptimizerState {
  static constexpr std::size_t kBufferKinds = O::buffer_names.size();

  struct Entry {
    std::string name;
    Shape shape;
    float weight_decay = 0.f;  ///< this parameter's weight decay (coupled or decoupled, as O does it)
  };

  std::int64_t step = 0;   ///< updates done so far (torch's state['step']); the next update is step + 1
  std::vector<Entry> params;
  std::array<std::vector<Tensor<B>>, kBufferKinds> buffers;  ///< [kind][parameter], or [kind] empty

  [[nodiscard]] std::size_t size() const { return params.size(); }
  [[nodiscard]] bool has_buffer(std::size_t kind) const { return !buffers[kind].empty(); }
  /// Index of the parameter called `name`, or size() when there is none.
  [[nodiscard]] std::size_t index_of(std::string_view name) const {
    for (std::size_t i = 0; i < params.size(); ++i)
      if (params[i].name == name) return i;
    return params.size();
  }
};

namespace detail {

/// beta in [0, 1).
inline void check_beta(std::string_view opt, std::string_view field, float v) {
  LNF_EXPECTS_AS(ValueError, v >= 0.f && v < 1.f, "{}: {} = {} is outside [0, 1)", opt, field, v);
}
/// finite and >= 0.
inline void check_non_negative(std::string_view opt, std::string_view field, float v) {
  LNF_EXPECTS_AS(ValueError, std::isfinite(v) && v >= 0.f, "{}: {} = {} must be finite and >= 0", opt, field, v);
}
/// finite and > 0.
inline void check_positive(std::string_view opt, std::string_view field, float v) {
  LNF_EXPECTS_AS(ValueError, std::isfinite(v) && v > 0.f, "{}: {} = {} must be finite and > 0", opt, field, v);
}

/// The learning rate of update `update` (it comes from a schedule) must be finite and >= 0.
inline void check_learning_rate(std::string_view opt, float lr, std::int64_t update) {
  LNF_EXPECTS_AS(ValueError, std::isfinite(lr) && lr >= 0.f,
                 "{}::step: learning rate {} for update {} must be finite and >= 0", opt, lr, update);
}

/// Builds the state of optimizer O over `params`: checks the list (names present and distinct, no
/// parameter twice, gradient shaped like the value), asks `rule` for each parameter's weight decay
/// and allocates zero buffers of the kinds marked in `use_buffer`.
template <class O, class B, class R>
OptimizerState<O, B> make_optimizer_state(ParameterList<B> const& params, R& rule,
                                          std::array<bool, O::buffer_names.size()> const& use_buffer) {
  std::string_view const opt = O::name;
  OptimizerState<O, B> st;
  st.params.reserve(params.size());
  std::set<std::string_view> names;
  std::set<Parameter<B> const*> seen;
  for (std::size_t i = 0; i < params.size(); ++i) {
    ParameterRef<B> const& p = params[i];
    LNF_EXPECTS_AS(ValueError, p.param != nullptr, "{}::make_state: parameter {} ('{}') is a null pointer", opt, i,
                   p.name);
    LNF_EXPECTS_AS(ValueError, !p.name.empty(), "{}::make_state: parameter {} (shape {}) has no name", opt, i,
                   p.param->shape());
    LNF_EXPECTS_AS(ValueError, names.insert(p.name).second,
                   "{}::make_state: two parameters are called '{}'; names identify state and checkpoints", opt,
                   p.name);
    LNF_EXPECTS_AS(ValueError, seen.insert(p.param).second,
                   "{}::make_state: parameter '{}' is the same tensor as an earlier entry of the list; it would be "
                   "updated twice per step (list shared parameters once)",
                   opt, p.name);
    LNF_EXPECTS(p.param->grad.shape() == p.param->value.shape(),
                "{}::make_state: parameter '{}' has value shape {} but gradient shape {}", opt, p.name,
                p.param->value.shape(), p.param->grad.shape());
    float const wd = static_cast<float>(rule(p));
    LNF_EXPECTS_AS(ValueError, std::isfinite(wd) && wd >= 0.f,
                   "{}::make_state: the weight-decay rule gave {} for parameter '{}'; it must be finite and >= 0",
                   opt, wd, p.name);
    st.params.push_back({p.name, p.param->value.shape(), wd});
  }
  for (std::size_t k = 0; k < use_buffer.size(); ++k) {
    if (!use_buffer[k]) continue;
    st.buffers[k].reserve(params.size());
    for (auto const& e : st.params) st.buffers[k].emplace_back(e.shape);  // zero-initialised
  }
  return st;
}

/// The state was made for exactly these parameters: same count, and per position the same name
/// and shape (and a gradient of that shape).
template <class O, class B>
void check_state_matches(OptimizerState<O, B> const& st, ParameterList<B> const& params) {
  std::string_view const opt = O::name;
  LNF_EXPECTS(st.params.size() == params.size(),
              "{}::step: the state was made for {} parameters but {} were given (was it made from another "
              "model, or with another parameter list?)",
              opt, st.params.size(), params.size());
  for (std::size_t i = 0; i < params.size(); ++i) {
    ParameterRef<B> const& p = params[i];
    auto const& e = st.params[i];
    LNF_EXPECTS_AS(ValueError, p.param != nullptr, "{}::step: parameter {} ('{}') is a null pointer", opt, i, p.name);
    LNF_EXPECTS(p.name == e.name,
                "{}::step: parameter {} is '{}' {} but the state's parameter {} is '{}' {} (the list's order or "
                "content changed since make_state)",
                opt, i, p.name, p.param->shape(), i, e.name, e.shape);
    LNF_EXPECTS(p.param->value.shape() == e.shape,
                "{}::step: parameter '{}' has shape {} but its state has shape {}", opt, p.name,
                p.param->value.shape(), e.shape);
    LNF_EXPECTS(p.param->grad.shape() == e.shape,
                "{}::step: the gradient of parameter '{}' has shape {} but the parameter has shape {}", opt, p.name,
                p.param->grad.shape(), e.shape);
  }
  for (std::size_t k = 0; k < st.buffers.size(); ++k) {
    if (st.buffers[k].empty()) continue;
    LNF_EXPECTS(st.buffers[k].size() == params.size(),
                "{}::step: the state holds {} '{}' buffers for {} parameters (a state edited by hand?)", opt,
                st.buffers[k].size(), O::buffer_names[k], params.size());
    for (std::size_t i = 0; i < params.size(); ++i)
      LNF_EXPECTS(st.buffers[k][i].shape() == st.params[i].shape,
                  "{}::step: the '{}' buffer of parameter '{}' has shape {} but the parameter has shape {}", opt,
                  O::buffer_names[k], st.params[i].name, st.buffers[k][i].shape(), st.params[i].shape);
  }
}

/// Checks configuration, learning rate and state, then counts the update: the returned value is the
/// number of the update being made (1 for the first), now also st.step.
template <class O, class B>
std::int64_t begin_step(O const& opt, OptimizerState<O, B>& st, ParameterList<B> const& params, float lr) {
  opt.validate();
  check_learning_rate(O::name, lr, st.step + 1);
  check_state_matches(st, params);
  return ++st.step;
}

}  // namespace detail
}  // namespace lnformer
