#pragma once
// Sublayer adapters: bind the extra inputs of a sublayer (mask, memory) so that a normalization
// policy sees f(x) only. EncoderLayer and DecoderLayer hand these to their residuals.

#include <lnformer/nn/attention.hpp>
#include <lnformer/nn/feed_forward.hpp>

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

}  // namespace lnformer
