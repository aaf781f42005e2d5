#pragma once
// Parameters, the forward context, and the small helpers every layer shares.
//
// Layer contract (every type in nn/, norm/ and model/):
//   forward(x, ctx) -> CView  computes the output into a buffer the layer owns and remembers views of
//                             its inputs for backward: inputs must stay alive and unchanged until
//                             backward has run (they are other layers' outputs, so they do).
//   backward(dy)    -> CView  returns the input gradient (ASSIGNED into a buffer the layer owns) and
//                             ACCUMULATES (+=) into the gradients of its parameters.
//   collect(prefix, list)     appends its parameters under fairseq-style names.

#include <lnformer/backend/backends.hpp>
#include <lnformer/core/tensor.hpp>

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace lnformer {

/// A trainable tensor and its gradient (same shape, same backend).
template <class B>
struct Parameter {
  Tensor<B> value;
  Tensor<B> grad;
  /// False for biases, LayerNorm gains and biases and residual scales: excluded from weight decay.
  bool decay = true;

  Parameter() = default;
  explicit Parameter(Shape shape, bool weight_decay = true)
      : value(shape), grad(shape), decay(weight_decay) {}
  [[nodiscard]] Shape const& shape() const { return value.shape(); }
};

template <class B>
struct ParameterRef {
  std::string name;
  Parameter<B>* param;
};

template <class B>
using ParameterList = std::vector<ParameterRef<B>>;

/// Told during a backward pass each time a group of parameters holds its final gradient for that
/// pass: the models' stacks report each layer (and their final layer norm) as soon as its backward
/// has run, so that data-parallel training can sum those gradients over the ranks while the rest
/// of the backward pass computes (dist::GradientReducer). Parameters that collect gradient until
/// the very end (the embeddings, a tied output projection) are never reported; whoever listens
/// handles them after backward. A model's backward(scale, hook) with hook == nullptr reports nothing.
template <class B>
class GradientReadyHook {
 public:
  virtual void ready(ParameterList<B> const& group) = 0;

 protected:
  GradientReadyHook() = default;
  GradientReadyHook(GradientReadyHook const&) = default;
  GradientReadyHook& operator=(GradientReadyHook const&) = default;
  ~GradientReadyHook() = default;
};

/// Per-forward-pass settings. Dropout masks are a pure function of (seed, site, pass), so the same
/// context reproduces the same masks (the Admin profile and the perturbation analysis rely on it).
struct ForwardContext {
  bool training = true;
  std::uint64_t seed = 0;
  std::uint64_t pass = 0;  ///< advance once per forward pass (e.g. the step counter)
};

namespace detail {

/// Tells `hook` (if any) that the parameters `collect(list)` appends hold their final gradients.
template <class B, class Collect>
void report_ready(GradientReadyHook<B>* hook, Collect&& collect) {
  if (hook == nullptr) return;
  ParameterList<B> group;
  collect(group);
  if (!group.empty()) hook->ready(group);
}

/// Reshape `t` to `shape`, reallocating only when the element count changes.
template <class B, class T>
TensorView<B, T> ensure(Tensor<B, T>& t, Shape const& shape) {
  if (t.numel() != shape.numel()) t = Tensor<B, T>(shape);
  return t.view().reshape(shape);
}

/// A stable 64-bit id of a name (FNV-1a): dropout sites are keyed by their parameter-style name, so
/// masks do not depend on construction order.
constexpr std::uint64_t stable_hash(std::string_view s) {
  std::uint64_t h = 0xcbf29ce484222325ull;
  for (char c : s) {
    h ^= static_cast<unsigned char>(c);
    h *= 0x100000001b3ull;
  }
  return h;
}

inline std::string join_name(std::string_view prefix, std::string_view name) {
  if (prefix.empty()) return std::string(name);
  std::string s(prefix);
  s += '.';
  s += name;
  return s;
}

}  // namespace detail
}  // namespace lnformer
