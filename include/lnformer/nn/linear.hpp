#pragma once
// Linear: y = x W^T + b, W [out, in] (PyTorch layout), b [out]. Initialised as fairseq does:
// Xavier uniform weight, zero bias.

#include <lnformer/nn/init.hpp>
#include <lnformer/nn/parameter.hpp>
#include <lnformer/ops/matmul.hpp>

#include <cstdint>
#include <vector>

namespace lnformer {

template <class B>
class Linear {
 public:
  Linear() = default;
  Linear(std::int64_t in, std::int64_t out, bool with_bias = true)
      : weight(Shape{out, in}), in_(in), out_(out) {
    if (with_bias) bias = Parameter<B>(Shape{out}, /*weight_decay=*/false);
  }

  Parameter<B> weight;  // [out, in]
  Parameter<B> bias;    // [out] or empty

  [[nodiscard]] std::int64_t in_features() const { return in_; }
  [[nodiscard]] std::int64_t out_features() const { return out_; }

  /// x [..., in] contiguous -> y [..., out].
  CView<B> forward(CView<B> x) {
    x_ = x;
    y_ = detail::ensure(y_buf_, last_dim_replaced(x.shape(), out_));
    ops::linear_forward(B{}, y_, x, weight.value, bias.value);
    return y_;
  }
  /// dy [..., out] -> dx [..., in]; dW and db accumulate.
  CView<B> backward(CView<B> dy) {
    auto dx = detail::ensure(dx_buf_, x_.shape());
    ops::linear_backward(B{}, dx, weight.grad, bias.grad, dy, x_, weight.value);
    return dx;
  }
  /// Parameter gradients only (dx not needed, e.g. the first layer after an embedding that is frozen).
  void backward_params_only(CView<B> dy) {
    ops::linear_backward(B{}, View<B>{}, weight.grad, bias.grad, dy, x_, weight.value);
  }

  void collect(std::string const& prefix, ParameterList<B>& out) {
    out.push_back({detail::join_name(prefix, "weight"), &weight});
    if (bias.value.numel() != 0) out.push_back({detail::join_name(prefix, "bias"), &bias});
  }

 private:
  static Shape last_dim_replaced(Shape const& s, std::int64_t d) {
    std::vector<std::int64_t> v(s.begin(), s.end());
    v.back() = d;
    return Shape::from(v.begin(), v.end());
  }
  std::int64_t in_ = 0, out_ = 0;
  CView<B> x_;
  View<B> y_;
  Tensor<B> y_buf_, dx_buf_;
};

}  // namespace lnformer
