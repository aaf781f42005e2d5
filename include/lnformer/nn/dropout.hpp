#pragma once
// A dropout site. Its mask is a pure function of (context seed, site id, forward pass), regenerated in
// backward: nothing is stored, and the same context replays the same mask.

#include <lnformer/core/rng.hpp>
#include <lnformer/nn/parameter.hpp>
#include <lnformer/ops/dropout.hpp>
#include <lnformer/ops/elementwise.hpp>

namespace lnformer {

template <class B>
class Dropout {
 public:
  Dropout() = default;
  /// `site` names the site (any stable string, e.g. "encoder.layers.0.dropout_attn").
  Dropout(float p, std::string_view site) : p_(p), stream_(detail::stable_hash(site)) {}

  CView<B> forward(CView<B> x, ForwardContext const& ctx) {
    shape_ = x.shape();
    active_ = ctx.training && p_ > 0.f;
    if (!active_) return x;
    key_ = RngKey{ctx.seed, stream_, ctx.pass << 40};  // 2^40 values per site and pass
    auto y = detail::ensure(y_buf_, x.shape());
    ops::dropout_forward(B{}, y, x, p_, key_);
    return y;
  }
  /// The residual connection skip + drop(x) in one pass (ops::dropout_add); backward() is the gradient
  /// for x as after forward(x), and the skip path's gradient is dy itself.
  CView<B> forward_add(CView<B> skip, CView<B> x, ForwardContext const& ctx) {
    shape_ = x.shape();
    active_ = ctx.training && p_ > 0.f;
    auto y = detail::ensure(y_buf_, x.shape());
    if (!active_) {
      ops::add(B{}, y, skip, x);
      return y;
    }
    key_ = RngKey{ctx.seed, stream_, ctx.pass << 40};
    ops::dropout_add(B{}, y, skip, x, p_, key_);
    return y;
  }
  CView<B> backward(CView<B> dy) {
    LNF_EXPECTS(dy.shape() == shape_, "Dropout: dy has shape {} but the input of the last forward had shape {}",
                dy.shape(), shape_);
    if (!active_) return dy;
    auto dx = detail::ensure(dx_buf_, dy.shape());
    ops::dropout_backward(B{}, dx, dy, p_, key_);
    return dx;
  }
  [[nodiscard]] float p() const { return p_; }
  void share_backward_buffers(Dropout& other) { dx_buf_.share(other.dx_buf_); }

 private:
  float p_ = 0.f;
  std::uint64_t stream_ = 0;
  bool active_ = false;
  Shape shape_{};  // of the last forward's input: backward's dy must match it
  RngKey key_{};
  Tensor<B> y_buf_;
  detail::BackwardBuffer<B> dx_buf_;
};

}  // namespace lnformer
