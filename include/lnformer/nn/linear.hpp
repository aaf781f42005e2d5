#pragma once
// Linear: y = x W^T + b, W [out, in] (PyTorch layout), b [out]. Initialised as fairseq does:
// Xavier uniform weight, zero bias.

#include <lnformer/nn/init.hpp>
#include <lnformer/nn/parameter.hpp>
#include <lnformer/ops/elementwise.hpp>
#include <lnformer/ops/matmul.hpp>

#include <array>
#include <cstdint>
#include <initializer_list>
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

  /// x [..., in] contiguous -> y [..., out]; with Epilogue::relu, y = relu(x W^T + b) in the same pass
  /// (backward() then wants the gradient for x W^T + b, which activation_backward gives from y).
  CView<B> forward(CView<B> x, ops::Epilogue ep = ops::Epilogue::none) {
    x_ = x;
    y_ = detail::ensure(y_buf_, x.shape().with_last(out_));
    ops::linear_forward(B{}, y_, x, weight.value, bias.value, ep);
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
  void share_backward_buffers(Linear& other) { dx_buf_.share(other.dx_buf_); }

 private:
  std::int64_t in_ = 0, out_ = 0;
  CView<B> x_;
  View<B> y_;
  Tensor<B> y_buf_;
  detail::BackwardBuffer<B> dx_buf_;
};

/// Linear layers that read the same input, run as one: y = x [W_1; ...; W_k]^T + [b_1; ...; b_k], the
/// layers' outputs side by side in each row of y. The layers keep their own parameters (and so their
/// names); forward stacks the current weights into one matrix, backward sums each layer's share of
/// the stacked gradients into that layer's. Attention's Q/K/V projections use it: at fairseq's IWSLT
/// shape (4,096 rows, d 512, 2 threads) one [1536, 512] weight-gradient GEMM ran at ~125 GFLOP/s
/// where three [512, 512] ones ran at ~75-85 (oneDNN 2.6, AVX2; benchmarks/bench_matmul "dW" rows).
template <class B>
class StackedLinear {
 public:
  static constexpr int kMaxLayers = 4;

  /// x [..., in] -> y [..., out_1 + ... + out_k]; the layers must share `in` and all have a bias or
  /// none. x must stay alive and unchanged until backward.
  CView<B> forward(std::initializer_list<Linear<B>*> layers, CView<B> x) {
    LNF_EXPECTS_AS(ValueError, layers.size() >= 1 && layers.size() <= kMaxLayers, "StackedLinear: {} layers (1 to {})",
                layers.size(), kMaxLayers);
    count_ = 0;
    std::int64_t out = 0;
    Linear<B>* const first = *layers.begin();
    bool const biased = first->bias.value.numel() != 0;
    biased_ = biased;
    for (Linear<B>* l : layers) {
      LNF_EXPECTS(l->in_features() == first->in_features() && (l->bias.value.numel() != 0) == biased,
                  "StackedLinear: layers must share the input size ({} vs {}) and all have a bias or none",
                  l->in_features(), first->in_features());
      layers_[count_++] = l;
      out += l->out_features();
    }
    std::int64_t const in = first->in_features();
    auto w = detail::ensure(w_, Shape{out, in});
    View<B> b = biased ? detail::ensure(b_, Shape{out}) : View<B>{};
    std::int64_t row = 0;
    for (int i = 0; i < count_; ++i) {
      std::int64_t const o = layers_[i]->out_features();
      ops::copy(B{}, View<B>(w.data() + row * in, Shape{o, in}), layers_[i]->weight.value);
      if (biased) ops::copy(B{}, View<B>(b.data() + row, Shape{o}), layers_[i]->bias.value);
      row += o;
    }
    x_ = x;
    auto y = detail::ensure(y_, x.shape().with_last(out));
    ops::linear_forward(B{}, y, x, w, b);
    return y;
  }

  /// dy [..., out_1 + ... + out_k] -> dx [..., in]; each layer's dW and db accumulate.
  CView<B> backward(CView<B> dy) {
    LNF_EXPECTS_AS(Error, count_ > 0, "StackedLinear::backward before forward");
    CView<B> const w = w_.view();
    bool const biased = biased_;
    auto dx = detail::ensure(dx_, x_.shape());
    auto dw = detail::ensure(dw_, w.shape());
    View<B> db = biased ? detail::ensure(db_, Shape{w.size(0)}) : View<B>{};
    ops::fill(B{}, dw, 0.f);
    if (biased) ops::fill(B{}, db, 0.f);
    ops::linear_backward(B{}, dx, dw, db, dy, x_, w);
    std::int64_t const in = w.size(1);
    std::int64_t row = 0;
    for (int i = 0; i < count_; ++i) {
      Linear<B>& l = *layers_[i];
      std::int64_t const o = l.out_features();
      ops::add(B{}, l.weight.grad, l.weight.grad, CView<B>(dw.data() + row * in, Shape{o, in}));
      if (biased) ops::add(B{}, l.bias.grad, l.bias.grad, CView<B>(db.data() + row, Shape{o}));
      row += o;
    }
    return dx;
  }
  void share_backward_buffers(StackedLinear& other) {
    dx_.share(other.dx_);
    dw_.share(other.dw_);
    db_.share(other.db_);
  }

 private:
  std::array<Linear<B>*, kMaxLayers> layers_{};
  int count_ = 0;
  bool biased_ = false;
  CView<B> x_;
  Tensor<B> w_, b_, y_;
  detail::BackwardBuffer<B> dx_, dw_, db_;
};

}  // namespace lnformer
