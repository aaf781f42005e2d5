#pragma once
// LayerNorm over the last dimension: y = (x - mean) / sqrt(var + eps) * weight + bias, weight 1 and
// bias 0 at initialisation (PyTorch/fairseq names: `weight`, `bias`).

#include <lnformer/nn/init.hpp>
#include <lnformer/nn/parameter.hpp>
#include <lnformer/ops/layer_norm.hpp>

namespace lnformer {

template <class B>
class LayerNorm {
 public:
  LayerNorm() = default;
  explicit LayerNorm(std::int64_t d, float eps = 1e-5f)
      : weight(Shape{d}, false), bias(Shape{d}, false), eps_(eps) {
    init::constant(weight.value, 1.f);
  }

  Parameter<B> weight;  // [d]
  Parameter<B> bias;    // [d]

  CView<B> forward(CView<B> x) {
    x_ = x;
    Shape const rows{x.numel() / x.size(-1)};
    y_ = detail::ensure(y_buf_, x.shape());
    ops::layer_norm_forward(B{}, y_, detail::ensure(mean_, rows), detail::ensure(rstd_, rows), x, weight.value,
                            bias.value, eps_);
    return y_;
  }
  /// The gradient for x, plus `residual` (a gradient reaching x by another path) where given.
  CView<B> backward(CView<B> dy, CView<B> residual = {}) {
    auto dx = detail::ensure(dx_buf_, x_.shape());
    ops::layer_norm_backward(B{}, dx, weight.grad, bias.grad, dy, x_, mean_, rstd_, weight.value, residual);
    return dx;
  }
  void collect(std::string const& prefix, ParameterList<B>& out) {
    out.push_back({detail::join_name(prefix, "weight"), &weight});
    out.push_back({detail::join_name(prefix, "bias"), &bias});
  }
  [[nodiscard]] float eps() const { return eps_; }
  void share_backward_buffers(LayerNorm& other) { dx_buf_.share(other.dx_buf_); }

 private:
  float eps_ = 1e-5f;
  CView<B> x_;
  View<B> y_;
  Tensor<B> y_buf_, mean_, rstd_;
  detail::BackwardBuffer<B> dx_buf_;
};

/// What a policy without a final LayerNorm puts after the stack: nothing.
template <class B>
struct Identity {
  Identity() = default;
  explicit Identity(std::int64_t /*d*/) {}
  CView<B> forward(CView<B> x) { return x; }
  CView<B> backward(CView<B> dy) { return dy; }
  void collect(std::string const&, ParameterList<B>&) {}
};

}  // namespace lnformer
