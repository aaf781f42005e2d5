#pragma once
// Decoder: the decoder stack of a Seq2Seq; returns hidden states [N, Tt, d] (the output projection
// and the loss live in OutputHead). What it shares with Encoder lives in detail::StackBase
// (model/stack_base.hpp); it adds the encoder output each layer attends to, the gradient it returns
// for it, and the causal mask.

#include <lnformer/model/decoder_layer.hpp>
#include <lnformer/model/init.hpp>
#include <lnformer/model/stack_base.hpp>

#include <cstdint>
#include <limits>
#include <span>
#include <string>
#include <utility>
#include <vector>

namespace lnformer {

template <class Norm, class B>
class Decoder : public detail::StackBase<Norm, DecoderLayer<Norm, B>, B> {
  using Base = detail::StackBase<Norm, DecoderLayer<Norm, B>, B>;

 public:
  Decoder(ModelConfig const& c, TokenEmbedding<B>& embed, std::string prefix = "decoder")
      : Base(c, embed, c.dec_layers, std::move(prefix)) {}

  void reset_parameters(Rng& rng, ModelConfig const& c) {
    for (auto& l : this->layers) {
      init::attention(l.self_attn, rng, c);
      init::attention(l.encoder_attn, rng, c);
      init::feed_forward(l.ffn, rng, c);
    }
  }

  /// ids, positions [N, Tt]; memory [N, Ts, d] (encoder output); memory_mask [N, 1, 1, Ts] -> [N, Tt, d].
  CView<B> forward(TensorView<B, std::int32_t const> ids, TensorView<B, std::int32_t const> positions,
                   CView<B> memory, CView<B> memory_mask, ForwardContext const& ctx) {
    CView<B> const x = this->embed_forward(ids, positions, ctx, "target");
    memory_shape_ = memory.shape();
    CView<B> const causal = causal_mask(ids.size(1));
    return this->layers_forward(x, [&](DecoderLayer<Norm, B>& l, CView<B> h) {
      return l.forward(h, memory, causal, memory_mask, ctx);
    });
  }
  /// Accumulates parameter gradients; returns the gradient with respect to the encoder output. Tells
  /// `hook` (if any) about the final layer norm and each layer as soon as their gradients are complete.
  CView<B> backward(CView<B> dy, GradientReadyHook<B>* hook = nullptr) {
    auto dmem = detail::ensure(dmem_, memory_shape_);
    ops::fill(B{}, dmem, 0.f);
    this->layers_backward(dy, hook, [&](DecoderLayer<Norm, B>& l, CView<B> d) { return l.backward(d, dmem); });
    return dmem;
  }
  /// f(residual, sublayer module, StackKind::decoder, index within the stack) for every residual in order.
  template <class F>
  void for_each_residual(F&& f) {
    this->visit_residuals(f, StackKind::decoder);
  }

  /// [T, T] additive causal mask: 0 on and below the diagonal, -inf above.
  CView<B> causal_mask(std::int64_t t) {
    if (causal_.numel() != t * t) {
      std::vector<float> h(static_cast<std::size_t>(t * t), 0.f);
      for (std::int64_t i = 0; i < t; ++i)
        for (std::int64_t j = i + 1; j < t; ++j)
          h[static_cast<std::size_t>(i * t + j)] = -std::numeric_limits<float>::infinity();
      causal_ = Tensor<B>(Shape{t, t}, std::span<float const>(h));
    }
    return causal_.cview();
  }

 private:
  Shape memory_shape_;
  Tensor<B> dmem_, causal_;
};

}  // namespace lnformer
