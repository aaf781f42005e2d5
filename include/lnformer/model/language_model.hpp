#pragma once
// LanguageModel<Norm, B>: a decoder-only Transformer (fairseq's transformer_lm): a stack of
// self-attention + FFN layers under a causal mask, the final LayerNorm when the policy has one, and the
// output projection (tied to the embedding unless ModelConfig::tie_output is false; a bias with
// ModelConfig::output_bias). Parameter names follow fairseq's decoder ("decoder.layers.0.self_attn...").

#include <lnformer/model/batch.hpp>
#include <lnformer/model/stack.hpp>

namespace lnformer {

template <class Norm, class B>
class LanguageModel {
  static_assert(check_norm_policy<Norm, B>());
  ModelConfig config_;      // declared before the stack, which keeps a pointer to the embedding
  TokenEmbedding<B> embed_;
  Tensor<B> causal_;

 public:
  using norm_policy = Norm;
  using backend = B;

  /// Uses c.dec_layers layers; c.enc_layers is ignored.
  LanguageModel(ModelConfig const& c, std::uint64_t seed)
      : config_((c.validate(), c)), embed_(c.vocab, c.d_model, c.max_positions, c.padding_idx),
        decoder(c, embed_, c.dec_layers, "decoder"), head(c, c.tie_output ? &embed_ : nullptr) {
    reset_parameters(seed);
  }
  LanguageModel(LanguageModel const&) = delete;
  LanguageModel& operator=(LanguageModel const&) = delete;

  Encoder<Norm, B> decoder;  // an encoder-layer stack used causally
  OutputHead<B> head;

  void reset_parameters(std::uint64_t seed) {
    Rng rng(seed);
    embed_.reset_parameters(rng);
    decoder.reset_parameters(rng, config_);
    head.reset_parameters(rng, config_);
    if constexpr (requires { Norm::initialize(*this, rng); }) Norm::initialize(*this, rng);
  }

  LossStats forward(LmBatch<B> const& batch, ForwardContext const& ctx) {
    std::int64_t const t = batch.input.size(1);
    if (causal_.numel() != t * t) {
      std::vector<float> h(static_cast<std::size_t>(t * t), 0.f);
      for (std::int64_t i = 0; i < t; ++i)
        for (std::int64_t j = i + 1; j < t; ++j)
          h[static_cast<std::size_t>(i * t + j)] = -std::numeric_limits<float>::infinity();
      causal_ = Tensor<B>(Shape{t, t}, std::span<float const>(h));
    }
    CView<B> h = decoder.forward(batch.input, batch.input_pos, causal_, ctx);
    return head.forward(h, batch.target);
  }
  /// Gradient of grad_scale * (summed loss of the last forward); parameter gradients accumulate.
  /// `hook` (if any) hears of each layer's parameters as soon as their gradients are complete.
  void backward(float grad_scale, GradientReadyHook<B>* hook = nullptr) {
    decoder.backward(head.backward(grad_scale), hook);
  }
  LossStats train_step(LmBatch<B> const& batch, ForwardContext const& ctx) {
    auto s = forward(batch, ctx);
    backward(s.tokens > 0 ? 1.f / static_cast<float>(s.tokens) : 0.f);
    return s;
  }
  ParameterList<B> parameters() {
    ParameterList<B> out;
    embed_.collect("decoder.embed_tokens", out);
    decoder.collect(out);
    head.collect("decoder.output_projection", out);
    return out;
  }
  void zero_grad() {
    for (auto& p : parameters()) p.param->grad.zero();
  }
  template <class F>
  void for_each_residual(F&& f) {
    decoder.for_each_residual(f, StackKind::decoder);
  }
  [[nodiscard]] ModelConfig const& config() const { return config_; }
  [[nodiscard]] CView<B> logits() const { return head.logits(); }
  TokenEmbedding<B>& embedding() { return embed_; }
};

}  // namespace lnformer
