#pragma once
// Activation functions, element-wise on contiguous tensors of any shape.
//
//   activation_forward(B, View y, CView x, Activation act)
//     y = act(x)                                     y, x: same shape; y may alias x
//   activation_backward(B, View dx, CView dy, CView x, Activation act)
//     dx = act'(x) * dy   (ASSIGN)                   dx, dy, x: same shape; dx may alias dy
//
// relu(x) = max(x, 0) with relu'(0) = 0 (as PyTorch).
// gelu(x) = x * Phi(x) = 0.5 x (1 + erf(x / sqrt 2)), the exact form (PyTorch's default, fairseq);
//   gelu'(x) = Phi(x) + x phi(x).
// Implementations: ops::activation_forward(Cpu, ...) in backend/cpu/activation.hpp,
// ops::activation_forward(Reference, ...) in backend/reference/activation.hpp.

#include <lnformer/core/error.hpp>
#include <lnformer/core/tensor.hpp>

#include <string_view>

namespace lnformer::ops {

enum class Activation { relu, gelu };

[[nodiscard]] constexpr std::string_view name(Activation act) {
  switch (act) {
    case Activation::relu:
      return "relu";
    case Activation::gelu:
      return "gelu";
  }
  return "unknown";
}

namespace check {

template <class B>
void activation_forward(View<B> y, CView<B> x, Activation act) {
  LNF_EXPECTS(y.shape() == x.shape(),
              "activation_forward({}): y has shape {} but x has shape {}; they must match", name(act),
              y.shape(), x.shape());
  LNF_EXPECTS(y.is_contiguous() && x.is_contiguous(),
              "activation_forward({}): y (shape {}) and x (shape {}) must be contiguous", name(act),
              y.shape(), x.shape());
  LNF_EXPECTS_AS(ValueError, act == Activation::relu || act == Activation::gelu,
                 "activation_forward: unknown activation {}", static_cast<int>(act));
}

template <class B>
void activation_backward(View<B> dx, CView<B> dy, CView<B> x, Activation act) {
  LNF_EXPECTS(dx.shape() == x.shape() && dy.shape() == x.shape(),
              "activation_backward({}): dx has shape {}, dy has shape {} and x has shape {}; all must match",
              name(act), dx.shape(), dy.shape(), x.shape());
  LNF_EXPECTS(dx.is_contiguous() && dy.is_contiguous() && x.is_contiguous(),
              "activation_backward({}): dx, dy and x (shape {}) must be contiguous", name(act), x.shape());
  LNF_EXPECTS_AS(ValueError, act == Activation::relu || act == Activation::gelu,
                 "activation_backward: unknown activation {}", static_cast<int>(act));
}

}  // namespace check
}  // namespace lnformer::ops

namespace lnformer {
using ops::Activation;  // a configuration value for layers (FeedForward), so also lnformer::Activation
}  // namespace lnformer
