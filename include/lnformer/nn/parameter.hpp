#pragma once
// Parameters: a trainable tensor with its gradient, named references to them, and lists of those
// (what optimizers, checkpoints and the data-parallel reducer take).
//
// This header used to hold the forward context, the gradient hook, the layer contract and the
// backend includes as well; they have their own headers now (nn/forward_context.hpp,
// nn/gradient_ready_hook.hpp, nn/layer.hpp) and are included at the end, so code that includes
// only this header keeps compiling.

#include <lnformer/core/shape.hpp>
#include <lnformer/core/tensor.hpp>

#include <string>
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

}  // namespace lnformer

#include <lnformer/nn/forward_context.hpp>
#include <lnformer/nn/gradient_ready_hook.hpp>
#include <lnformer/nn/layer.hpp>
