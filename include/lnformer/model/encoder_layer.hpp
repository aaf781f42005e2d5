#pragma once
// EncoderLayer: self-attention and feed-forward, each a residual sublayer whose wiring the
// normalization policy owns. The same two lines for every policy.

#include <lnformer/model/config.hpp>
#include <lnformer/model/sublayers.hpp>
#include <lnformer/nn/attention.hpp>
#include <lnformer/nn/feed_forward.hpp>
#include <lnformer/norm/concept.hpp>

#include <string>

namespace lnformer {

template <class Norm, class B>
class EncoderLayer {
  static_assert(check_norm_policy<Norm, B>());
  using Residual = typename Norm::template Residual<B>;

 public:
  /// `site` is the layer's parameter prefix, e.g. "encoder.layers.0".
  EncoderLayer(ModelConfig const& c, std::string const& site)
      : self_attn(c.d_model, c.heads, c.attention_dropout, AttentionKind::self, site + ".self_attn"),
        ffn(c.d_model, c.ffn, c.activation, c.activation_dropout, site),
        attn_res(c.d_model, c.dropout, site + ".self_attn"),
        ffn_res(c.d_model, c.dropout, site + ".ffn") {}

  MultiHeadAttention<B> self_attn;
  FeedForward<B> ffn;
  Residual attn_res, ffn_res;

  /// x [N, T, d]; mask additive, broadcastable to [N, heads, T, T] (key padding, or causal).
  CView<B> forward(CView<B> x, CView<B> mask, ForwardContext const& ctx) {
    attn_sub_ = {&self_attn, mask};
    ffn_sub_ = {&ffn};
    x = attn_res.forward(x, attn_sub_, ctx);
    return ffn_res.forward(x, ffn_sub_, ctx);
  }
  CView<B> backward(CView<B> dy) {
    dy = ffn_res.backward(dy, ffn_sub_);
    return attn_res.backward(dy, attn_sub_);
  }
  void collect(std::string const& prefix, ParameterList<B>& out) {
    self_attn.collect(prefix + ".self_attn", out);
    attn_res.collect(prefix, {"self_attn_layer_norm", "self_attn"}, out);
    ffn.collect(prefix, out);
    ffn_res.collect(prefix, {"final_layer_norm", "ffn"}, out);
  }
  /// The buffers only backward uses become those of `other` (the stack shares layer l % 2's with layer
  /// l; nn/layer.hpp BackwardBuffer says why that is safe); the residuals' too where the policy
  /// provides share_backward_buffers.
  void share_backward_buffers(EncoderLayer& other) {
    self_attn.share_backward_buffers(other.self_attn);
    ffn.share_backward_buffers(other.ffn);
    if constexpr (requires(Residual& r) { r.share_backward_buffers(r); }) {
      attn_res.share_backward_buffers(other.attn_res);
      ffn_res.share_backward_buffers(other.ffn_res);
    }
  }
  /// f(residual, sublayer module, index within the layer) for each sublayer in order.
  template <class F>
  void for_each_residual(F&& f) {
    f(attn_res, self_attn, 0);
    f(ffn_res, ffn, 1);
  }

 private:
  detail::SelfAttentionSublayer<B> attn_sub_{};
  detail::FeedForwardSublayer<B> ffn_sub_{};
};

}  // namespace lnformer
