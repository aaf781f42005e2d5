#pragma once
// FeedForward: fc2(drop(act(fc1(x)))), fairseq's position-wise FFN (ReLU in the papers, GELU as an
// option), with activation dropout between fc1 and fc2. Parameters `fc1`, `fc2` sit directly under
// the layer, as in fairseq.

#include <lnformer/nn/dropout.hpp>
#include <lnformer/nn/linear.hpp>
#include <lnformer/ops/activation.hpp>

namespace lnformer {

template <class B>
class FeedForward {
 public:
  FeedForward() = default;
  FeedForward(std::int64_t d, std::int64_t hidden, ops::Activation act, float activation_dropout,
              std::string_view site)
      : fc1(d, hidden), fc2(hidden, d), act_(act),
        drop_(activation_dropout, std::string(site) + ".activation_dropout") {}

  Linear<B> fc1, fc2;

  CView<B> forward(CView<B> x, ForwardContext const& ctx) {
    if (act_ == ops::Activation::relu) {
      // fc1's GEMM applies the bias and the ReLU as it writes: no pass over the hidden activations
      // and no second buffer for them. ReLU's gradient needs only its output's sign (h > 0 iff a > 0).
      auto a = fc1.forward(x, ops::Epilogue::relu);
      saved_ = a;
      return fc2.forward(drop_.forward(a, ctx));
    }
    auto h = fc1.forward(x);
    saved_ = h;
    auto a = detail::ensure(a_buf_, h.shape());
    ops::activation_forward(B{}, a, h, act_);
    return fc2.forward(drop_.forward(a, ctx));
  }
  CView<B> backward(CView<B> dy) {
    auto da = drop_.backward(fc2.backward(dy));
    auto dh = detail::ensure(dh_buf_, da.shape());
    ops::activation_backward(B{}, dh, da, saved_, act_);  // saved_: relu's output, or gelu's input
    return fc1.backward(dh);
  }
  void collect(std::string const& prefix, ParameterList<B>& out) {
    fc1.collect(detail::join_name(prefix, "fc1"), out);
    fc2.collect(detail::join_name(prefix, "fc2"), out);
  }
  void share_backward_buffers(FeedForward& other) {
    fc1.share_backward_buffers(other.fc1);
    fc2.share_backward_buffers(other.fc2);
    drop_.share_backward_buffers(other.drop_);
    dh_buf_.share(other.dh_buf_);
  }

 private:
  ops::Activation act_ = ops::Activation::relu;
  Dropout<B> drop_;
  CView<B> saved_;
  Tensor<B> a_buf_;
  detail::BackwardBuffer<B> dh_buf_;
};

}  // namespace lnformer
