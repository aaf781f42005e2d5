#pragma once
// Encoder: a stack of EncoderLayers, the encoder of a Seq2Seq or (with a causal mask) a decoder-only
// LM. What it shares with Decoder lives in detail::StackBase (model/stack_base.hpp).

#include <lnformer/model/encoder_layer.hpp>
#include <lnformer/model/init.hpp>
#include <lnformer/model/stack_base.hpp>

#include <cstdint>
#include <string>
#include <utility>

namespace lnformer {

template <class Norm, class B>
class Encoder : public detail::StackBase<Norm, EncoderLayer<Norm, B>, B> {
  using Base = detail::StackBase<Norm, EncoderLayer<Norm, B>, B>;

 public:
  Encoder(ModelConfig const& c, TokenEmbedding<B>& embed, int layers, std::string prefix)
      : Base(c, embed, layers, std::move(prefix)) {}

  void reset_parameters(Rng& rng, ModelConfig const& c) {
    for (auto& l : this->layers) {
      init::attention(l.self_attn, rng, c);
      init::feed_forward(l.ffn, rng, c);
    }
  }

  /// ids, positions [N, T]; mask broadcastable to [N, heads, T, T] -> [N, T, d].
  CView<B> forward(TensorView<B, std::int32_t const> ids, TensorView<B, std::int32_t const> positions,
                   CView<B> mask, ForwardContext const& ctx) {
    CView<B> const x = this->embed_forward(ids, positions, ctx, "input");
    return this->layers_forward(x, [&](EncoderLayer<Norm, B>& l, CView<B> h) { return l.forward(h, mask, ctx); });
  }
  /// Accumulates every parameter gradient, the embedding's included; tells `hook` (if any) about
  /// the final layer norm and each layer as soon as their gradients are complete.
  void backward(CView<B> dy, GradientReadyHook<B>* hook = nullptr) {
    this->layers_backward(dy, hook, [](EncoderLayer<Norm, B>& l, CView<B> d) { return l.backward(d); });
  }
  /// f(residual, sublayer module, kind, index within the stack) for every residual in order.
  template <class F>
  void for_each_residual(F&& f, StackKind kind) {
    this->visit_residuals(f, kind);
  }
};

}  // namespace lnformer
