#pragma once
// Seq2Seq<Norm, B>: the encoder-decoder Transformer of the papers, with the residual wiring chosen by
// Norm. forward() computes the summed label-smoothed loss; backward() accumulates every parameter's
// gradient; train_step() does both with the gradient of the mean loss over target tokens.

#include <lnformer/model/batch.hpp>
#include <lnformer/model/stack.hpp>

#include <optional>

namespace lnformer {

template <class Norm, class B>
class Seq2Seq {
  static_assert(check_norm_policy<Norm, B>());
  // Declared first: the stacks below keep pointers to these, so they must be constructed before them.
  ModelConfig config_;
  TokenEmbedding<B> src_embed_;
  std::optional<TokenEmbedding<B>> tgt_embed_;

 public:
  using norm_policy = Norm;
  using backend = B;

  Seq2Seq(ModelConfig const& c, std::uint64_t seed)
      : config_((c.validate(), c)),
        src_embed_(c.vocab, c.d_model, c.max_positions, c.padding_idx),
        tgt_embed_(c.share_embeddings ? std::nullopt
                                      : std::optional<TokenEmbedding<B>>(std::in_place, c.vocab, c.d_model,
                                                                         c.max_positions, c.padding_idx)),
        encoder(c, src_embed_, c.enc_layers, "encoder"),
        decoder(c, target_embedding(), "decoder"),
        head(c, c.tie_output ? &target_embedding() : nullptr) {
    reset_parameters(seed);
  }
  Seq2Seq(Seq2Seq const&) = delete;  // layers hold pointers to the embeddings
  Seq2Seq& operator=(Seq2Seq const&) = delete;

  Encoder<Norm, B> encoder;
  Decoder<Norm, B> decoder;
  OutputHead<B> head;

  /// Re-draws every parameter from `seed` (fairseq's scheme or the configured one), then lets the
  /// policy adjust (AdminLN freezes its first w, DeepNorm scales by beta).
  void reset_parameters(std::uint64_t seed) {
    Rng rng(seed);
    src_embed_.reset_parameters(rng);
    if (tgt_embed_) tgt_embed_->reset_parameters(rng);
    encoder.reset_parameters(rng, config_);
    decoder.reset_parameters(rng, config_);
    head.reset_parameters(rng, config_);
    if constexpr (requires { Norm::initialize(*this, rng); }) Norm::initialize(*this, rng);
  }

  /// Forward pass with the loss against batch.target; caches what backward needs.
  LossStats forward(Batch<B> const& batch, ForwardContext const& ctx) {
    CView<B> mem = encoder.forward(batch.src, batch.src_pos, batch.src_mask, ctx);
    CView<B> h = decoder.forward(batch.prev, batch.prev_pos, mem, batch.src_mask, ctx);
    return head.forward(h, batch.target);
  }
  /// Gradient of grad_scale * (summed loss of the last forward); parameter gradients accumulate.
  /// `hook` (if any) hears of each layer's parameters as soon as their gradients are complete.
  void backward(float grad_scale, GradientReadyHook<B>* hook = nullptr) {
    CView<B> dmem = decoder.backward(head.backward(grad_scale), hook);
    encoder.backward(dmem, hook);
  }
  /// forward + backward of the mean loss over target tokens.
  LossStats train_step(Batch<B> const& batch, ForwardContext const& ctx) {
    auto s = forward(batch, ctx);
    backward(s.tokens > 0 ? 1.f / static_cast<float>(s.tokens) : 0.f);
    return s;
  }

  /// Every trainable parameter once, under fairseq's names.
  ParameterList<B> parameters() {
    ParameterList<B> out;
    src_embed_.collect("encoder.embed_tokens", out);
    if (tgt_embed_) tgt_embed_->collect("decoder.embed_tokens", out);
    encoder.collect(out);
    decoder.collect(out);
    head.collect("decoder.output_projection", out);
    return out;
  }
  void zero_grad() {
    for (auto& p : parameters()) p.param->grad.zero();
  }
  /// f(residual, sublayer module, StackKind, index within the stack) over every residual in order.
  template <class F>
  void for_each_residual(F&& f) {
    encoder.for_each_residual(f, StackKind::encoder);
    decoder.for_each_residual(f);
  }
  [[nodiscard]] ModelConfig const& config() const { return config_; }
  [[nodiscard]] CView<B> logits() const { return head.logits(); }
  TokenEmbedding<B>& source_embedding() { return src_embed_; }
  TokenEmbedding<B>& target_embedding() { return tgt_embed_ ? *tgt_embed_ : src_embed_; }
};

}  // namespace lnformer
