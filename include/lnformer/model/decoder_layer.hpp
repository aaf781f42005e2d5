#pragma once
// DecoderLayer: causal self-attention, cross-attention over the encoder output and feed-forward, each
// a residual sublayer whose wiring the normalization policy owns. The same three lines for every policy.

#include <lnformer/model/config.hpp>
#include <lnformer/model/sublayers.hpp>
#include <lnformer/nn/attention.hpp>
#include <lnformer/nn/feed_forward.hpp>
#include <lnformer/norm/concept.hpp>

#include <string>

namespace lnformer {

template <class Norm, class B>
class DecoderLayer {
  static_assert(check_norm_policy<Norm, B>());
  using Residual = typename Norm::template Residual<B>;

 public:
  DecoderLayer(ModelConfig const& c, std::string const& site)
      : self_attn(c.d_model, c.heads, c.attention_dropout, AttentionKind::self, site + ".self_attn"),
        encoder_attn(c.d_model, c.heads, c.attention_dropout, AttentionKind::cross, site + ".encoder_attn"),
        ffn(c.d_model, c.ffn, c.activation, c.activation_dropout, site),
        self_res(c.d_model, c.dropout, site + ".self_attn"),
        cross_res(c.d_model, c.dropout, site + ".encoder_attn"),
        ffn_res(c.d_model, c.dropout, site + ".ffn") {}

  MultiHeadAttention<B> self_attn, encoder_attn;
  FeedForward<B> ffn;
  Residual self_res, cross_res, ffn_res;

  /// x [N, Tt, d]; memory [N, Ts, d] (encoder output); causal [Tt, Tt]; memory_mask [N, 1, 1, Ts].
  CView<B> forward(CView<B> x, CView<B> memory, CView<B> causal, CView<B> memory_mask, ForwardContext const& ctx) {
    self_sub_ = {&self_attn, causal};
    cross_sub_ = {&encoder_attn, memory, memory_mask};
    ffn_sub_ = {&ffn};
    x = self_res.forward(x, self_sub_, ctx);
    x = cross_res.forward(x, cross_sub_, ctx);
    return ffn_res.forward(x, ffn_sub_, ctx);
  }
  /// Returns d x; the gradient with respect to `memory` is ADDED into d_memory.
  CView<B> backward(CView<B> dy, View<B> d_memory) {
    dy = ffn_res.backward(dy, ffn_sub_);
    dy = cross_res.backward(dy, cross_sub_);
    ops::axpy(B{}, d_memory, 1.f, encoder_attn.memory_grad());
    return self_res.backward(dy, self_sub_);
  }
  void collect(std::string const& prefix, ParameterList<B>& out) {
    self_attn.collect(prefix + ".self_attn", out);
    self_res.collect(prefix, {"self_attn_layer_norm", "self_attn"}, out);
    encoder_attn.collect(prefix + ".encoder_attn", out);
    cross_res.collect(prefix, {"encoder_attn_layer_norm", "encoder_attn"}, out);
    ffn.collect(prefix, out);
    ffn_res.collect(prefix, {"final_layer_norm", "ffn"}, out);
  }
  /// The buffers only backward uses become those of `other` (the stack shares layer l % 2's with layer
  /// l; nn/layer.hpp BackwardBuffer says why that is safe); the residuals' too where the policy
  /// provides share_backward_buffers.
  void share_backward_buffers(DecoderLayer& other) {
    self_attn.share_backward_buffers(other.self_attn);
    encoder_attn.share_backward_buffers(other.encoder_attn);
    ffn.share_backward_buffers(other.ffn);
    if constexpr (requires(Residual& r) { r.share_backward_buffers(r); }) {
      self_res.share_backward_buffers(other.self_res);
      cross_res.share_backward_buffers(other.cross_res);
      ffn_res.share_backward_buffers(other.ffn_res);
    }
  }
  template <class F>
  void for_each_residual(F&& f) {
    f(self_res, self_attn, 0);
    f(cross_res, encoder_attn, 1);
    f(ffn_res, ffn, 2);
  }

 private:
  detail::SelfAttentionSublayer<B> self_sub_{};
  detail::CrossAttentionSublayer<B> cross_sub_{};
  detail::FeedForwardSublayer<B> ffn_sub_{};
};

}  // namespace lnformer
