#pragma once
// EncoderLayer and DecoderLayer: a straight list of residual sublayers whose wiring the normalization
// policy owns. The same two (three) lines for every policy.

#include <lnformer/model/config.hpp>
#include <lnformer/nn/attention.hpp>
#include <lnformer/nn/feed_forward.hpp>
#include <lnformer/norm/concept.hpp>
#include <lnformer/norm/stack_kind.hpp>

#include <string>

namespace lnformer {

namespace detail {
// Sublayer adapters: bind the extra inputs of a sublayer so that a policy sees f(x) only.
template <class B>
struct SelfAttentionSublayer {
  MultiHeadAttention<B>* attn;
  CView<B> mask;
  CView<B> forward(CView<B> x, ForwardContext const& ctx) { return attn->forward(x, x, mask, ctx); }
  CView<B> backward(CView<B> dy) { return attn->backward(dy); }
};
template <class B>
struct CrossAttentionSublayer {
  MultiHeadAttention<B>* attn;
  CView<B> memory;
  CView<B> mask;
  CView<B> forward(CView<B> x, ForwardContext const& ctx) { return attn->forward(x, memory, mask, ctx); }
  CView<B> backward(CView<B> dy) { return attn->backward(dy); }
};
template <class B>
struct FeedForwardSublayer {
  FeedForward<B>* ffn;
  CView<B> forward(CView<B> x, ForwardContext const& ctx) { return ffn->forward(x, ctx); }
  CView<B> backward(CView<B> dy) { return ffn->backward(dy); }
};
}  // namespace detail

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
