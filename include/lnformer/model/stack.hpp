#pragma once
// Encoder and Decoder stacks: embedding, dropout, layers, and what the policy puts after the stack.
// They reference a TokenEmbedding owned by the model, so that one embedding can be shared.

#include <lnformer/model/init.hpp>
#include <lnformer/model/layers.hpp>
#include <lnformer/nn/embedding.hpp>
#include <lnformer/ops/cross_entropy.hpp>

#include <functional>
#include <limits>
#include <vector>

namespace lnformer {

namespace detail {
inline void check_length(std::int64_t t, std::int64_t max_positions, char const* what) {
  LNF_EXPECTS_AS(ValueError, t <= max_positions, "{} length {} exceeds max_positions {} of the model", what, t,
                 max_positions);
}
}  // namespace detail

/// A stack of EncoderLayers: the encoder of a Seq2Seq, or (with a causal mask) a decoder-only LM.
template <class Norm, class B>
class Encoder {
 public:
  Encoder(ModelConfig const& c, TokenEmbedding<B>& embed, int layers, std::string prefix)
      : embed_(&embed), drop_(c.dropout, prefix + ".dropout_input"), final(c.d_model), prefix_(std::move(prefix)) {
    this->layers.reserve(static_cast<std::size_t>(layers));
    for (int l = 0; l < layers; ++l) this->layers.emplace_back(c, prefix_ + ".layers." + std::to_string(l));
  }

  std::vector<EncoderLayer<Norm, B>> layers;
  typename Norm::template Final<B> final;

  void reset_parameters(Rng& rng, ModelConfig const& c) {
    for (auto& l : layers) {
      init::attention(l.self_attn, rng, c);
      init::feed_forward(l.ffn, rng, c);
    }
  }

  /// The token embedding this stack reads (shared with the model).
  [[nodiscard]] TokenEmbedding<B>& embedding() { return *embed_; }

  /// Called during forward with (layer index, the layer's output [N, T, d]) after each layer, where
  /// set (analysis/training_stats.hpp records hidden-state statistics this way). The view is valid
  /// only during the call.
  std::function<void(int, CView<B>)> layer_observer;

  /// ids, positions [N, T]; mask broadcastable to [N, heads, T, T] -> [N, T, d].
  CView<B> forward(TensorView<B, std::int32_t const> ids, TensorView<B, std::int32_t const> positions,
                   CView<B> mask, ForwardContext const& ctx) {
    detail::check_length(ids.size(1), embed_->max_positions(), "input");
    ids_ = ids;
    auto x0 = detail::ensure(emb_, Shape{ids.size(0), ids.size(1), embed_->dim()});
    embed_->forward(x0, ids, positions);
    CView<B> x = drop_.forward(x0, ctx);
    for (std::size_t l = 0; l < layers.size(); ++l) {
      x = layers[l].forward(x, mask, ctx);
      if (layer_observer) layer_observer(static_cast<int>(l), x);
    }
    return final.forward(x);
  }
  /// Accumulates every parameter gradient, the embedding's included; tells `hook` (if any) about
  /// the final layer norm and each layer as soon as their gradients are complete.
  void backward(CView<B> dy, GradientReadyHook<B>* hook = nullptr) {
    dy = final.backward(dy);
    detail::report_ready(hook, [&](ParameterList<B>& g) { final.collect(prefix_ + ".layer_norm", g); });
    for (std::size_t l = layers.size(); l-- > 0;) {
      dy = layers[l].backward(dy);
      detail::report_ready(hook, [&](ParameterList<B>& g) { layers[l].collect(layer_name(l), g); });
    }
    embed_->backward(drop_.backward(dy), ids_);
  }
  void collect(ParameterList<B>& out) {
    for (std::size_t l = 0; l < layers.size(); ++l) layers[l].collect(layer_name(l), out);
    final.collect(prefix_ + ".layer_norm", out);
  }
  template <class F>
  void for_each_residual(F&& f, StackKind kind) {
    int i = 0;
    for (auto& l : layers) l.for_each_residual([&](auto& res, auto& sub, int) { f(res, sub, kind, i++); });
  }

 private:
  TokenEmbedding<B>* embed_;
  Dropout<B> drop_;
  std::string prefix_;
  [[nodiscard]] std::string layer_name(std::size_t l) const { return prefix_ + ".layers." + std::to_string(l); }
  TensorView<B, std::int32_t const> ids_;
  Tensor<B> emb_;
};

/// The decoder stack of a Seq2Seq; returns hidden states [N, Tt, d] (the output projection and the
/// loss live in OutputHead).
template <class Norm, class B>
class Decoder {
 public:
  Decoder(ModelConfig const& c, TokenEmbedding<B>& embed, std::string prefix = "decoder")
      : embed_(&embed), drop_(c.dropout, prefix + ".dropout_input"), final(c.d_model), prefix_(std::move(prefix)) {
    layers.reserve(static_cast<std::size_t>(c.dec_layers));
    for (int l = 0; l < c.dec_layers; ++l) layers.emplace_back(c, prefix_ + ".layers." + std::to_string(l));
  }

  std::vector<DecoderLayer<Norm, B>> layers;
  typename Norm::template Final<B> final;

  void reset_parameters(Rng& rng, ModelConfig const& c) {
    for (auto& l : layers) {
      init::attention(l.self_attn, rng, c);
      init::attention(l.encoder_attn, rng, c);
      init::feed_forward(l.ffn, rng, c);
    }
  }

  /// As Encoder::layer_observer.
  std::function<void(int, CView<B>)> layer_observer;

  CView<B> forward(TensorView<B, std::int32_t const> ids, TensorView<B, std::int32_t const> positions,
                   CView<B> memory, CView<B> memory_mask, ForwardContext const& ctx) {
    std::int64_t const t = ids.size(1);
    detail::check_length(t, embed_->max_positions(), "target");
    ids_ = ids;
    memory_shape_ = memory.shape();
    auto x0 = detail::ensure(emb_, Shape{ids.size(0), t, embed_->dim()});
    embed_->forward(x0, ids, positions);
    CView<B> x = drop_.forward(x0, ctx);
    CView<B> causal = causal_mask(t);
    for (std::size_t l = 0; l < layers.size(); ++l) {
      x = layers[l].forward(x, memory, causal, memory_mask, ctx);
      if (layer_observer) layer_observer(static_cast<int>(l), x);
    }
    return final.forward(x);
  }
  /// Accumulates parameter gradients; returns the gradient with respect to the encoder output. Tells
  /// `hook` (if any) about the final layer norm and each layer as soon as their gradients are complete.
  CView<B> backward(CView<B> dy, GradientReadyHook<B>* hook = nullptr) {
    auto dmem = detail::ensure(dmem_, memory_shape_);
    ops::fill(B{}, dmem, 0.f);
    dy = final.backward(dy);
    detail::report_ready(hook, [&](ParameterList<B>& g) { final.collect(prefix_ + ".layer_norm", g); });
    for (std::size_t l = layers.size(); l-- > 0;) {
      dy = layers[l].backward(dy, dmem);
      detail::report_ready(hook, [&](ParameterList<B>& g) { layers[l].collect(layer_name(l), g); });
    }
    embed_->backward(drop_.backward(dy), ids_);
    return dmem;
  }
  void collect(ParameterList<B>& out) {
    for (std::size_t l = 0; l < layers.size(); ++l) layers[l].collect(layer_name(l), out);
    final.collect(prefix_ + ".layer_norm", out);
  }
  template <class F>
  void for_each_residual(F&& f) {
    int i = 0;
    for (auto& l : layers)
      l.for_each_residual([&](auto& res, auto& sub, int) { f(res, sub, StackKind::decoder, i++); });
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
  TokenEmbedding<B>* embed_;
  Dropout<B> drop_;
  std::string prefix_;
  [[nodiscard]] std::string layer_name(std::size_t l) const { return prefix_ + ".layers." + std::to_string(l); }
  TensorView<B, std::int32_t const> ids_;
  Shape memory_shape_;
  Tensor<B> emb_, dmem_, causal_;
};

/// Loss statistics of one forward pass (sums over non-padding target tokens).
struct LossStats {
  double loss = 0;    ///< label-smoothed loss, summed
  double nll = 0;     ///< negative log-likelihood, summed
  std::int64_t tokens = 0;
  [[nodiscard]] double mean_loss() const { return tokens ? loss / static_cast<double>(tokens) : 0.0; }
  [[nodiscard]] double mean_nll() const { return tokens ? nll / static_cast<double>(tokens) : 0.0; }
};

/// Output projection (tied to a token embedding, or a weight of its own; with ModelConfig::output_bias
/// a bias [V] of its own) followed by fairseq's label-smoothed cross-entropy (plain cross-entropy when
/// label_smoothing is 0).
template <class B>
class OutputHead {
 public:
  OutputHead(ModelConfig const& c, TokenEmbedding<B>* tied)
      : tied_(tied), eps_(c.label_smoothing), pad_(c.padding_idx) {
    if (tied_ == nullptr) own_ = Parameter<B>(Shape{c.vocab, c.d_model});
    if (c.output_bias) bias_ = Parameter<B>(Shape{c.vocab}, /*weight_decay=*/false);
  }
  /// An untied weight: N(0, d^-1/2) (fairseq's output projection). The bias: U(+-1/sqrt(d)) under the
  /// fairseq scheme (PyTorch's nn.Linear default, what nn.Transformer users put there), 0 under
  /// xavier_normal (as every other bias of that scheme).
  void reset_parameters(Rng& rng, ModelConfig const& c) {
    double const d = static_cast<double>(c.d_model);
    if (tied_ == nullptr) init::normal(own_.value, rng, 1.0 / std::sqrt(d));
    if (has_bias()) {
      if (c.init == InitScheme::fairseq)
        init::uniform(bias_.value, rng, 1.0 / std::sqrt(d));
      else
        init::constant(bias_.value, 0.f);
    }
  }
  Parameter<B>& weight() { return tied_ != nullptr ? tied_->weight : own_; }
  /// The bias [V]; its value is empty without ModelConfig::output_bias.
  Parameter<B>& bias() { return bias_; }
  [[nodiscard]] bool has_bias() const { return bias_.value.numel() != 0; }

  /// h [N, T, d] -> logits [N, T, V]; the loss against target [N, T].
  LossStats forward(CView<B> h, TensorView<B, std::int32_t const> target) {
    h_ = h;
    target_ = target;
    std::int64_t const rows = h.numel() / h.size(-1), v = weight().value.size(0);
    logits_ = detail::ensure(logits_buf_, Shape{h.size(0), h.size(1), v});
    ops::linear_forward(B{}, logits_.reshape(Shape{rows, v}), h.reshape(Shape{rows, h.size(-1)}), weight().value,
                        bias_.value);
    auto loss = detail::ensure(loss_, Shape{rows});
    auto nll = detail::ensure(nll_, Shape{rows});
    auto lse = detail::ensure(lse_, Shape{rows});
    auto tgt = target.reshape(Shape{rows});
    ops::cross_entropy_forward(B{}, loss, nll, lse, CView<B>(logits_).reshape(Shape{rows, v}), tgt, eps_, pad_);
    LossStats s;
    auto const hl = loss_.to_host(), hn = nll_.to_host();
    auto const ht = gather_ids(tgt);
    for (std::size_t i = 0; i < hl.size(); ++i) {
      s.loss += hl[i];
      s.nll += hn[i];
      s.tokens += ht[i] != pad_ ? 1 : 0;
    }
    return s;
  }
  /// d(sum of losses * grad_scale) -> d h; the projection weight's (and bias's) gradient accumulates.
  CView<B> backward(float grad_scale) {
    std::int64_t const rows = h_.numel() / h_.size(-1), v = logits_.size(-1);
    auto dloss = detail::ensure(dloss_, Shape{rows});
    ops::fill(B{}, dloss, grad_scale);
    auto dlogits = detail::ensure(dlogits_, Shape{rows, v});
    ops::cross_entropy_backward(B{}, dlogits, dloss, CView<B>(logits_).reshape(Shape{rows, v}), lse_,
                                target_.reshape(Shape{rows}), eps_, pad_);
    auto dh = detail::ensure(dh_, h_.shape());
    ops::linear_backward(B{}, dh.reshape(Shape{rows, h_.size(-1)}), weight().grad, bias_.grad, dlogits,
                         h_.reshape(Shape{rows, h_.size(-1)}), weight().value);
    return dh;
  }
  [[nodiscard]] CView<B> logits() const { return logits_; }
  /// `prefix`.weight when untied, `prefix`.bias when there is one ("decoder.output_projection").
  void collect(std::string const& prefix, ParameterList<B>& out) {
    if (tied_ == nullptr) out.push_back({prefix + ".weight", &own_});
    if (has_bias()) out.push_back({prefix + ".bias", &bias_});
  }

 private:
  static std::vector<std::int32_t> gather_ids(TensorView<B, std::int32_t const> t) {
    std::vector<std::int32_t> h(static_cast<std::size_t>(t.numel()));
    if (!h.empty()) BackendTraits<B>::to_host(h.data(), t.data(), h.size() * sizeof(std::int32_t));
    return h;
  }
  TokenEmbedding<B>* tied_;
  Parameter<B> own_, bias_;
  float eps_;
  std::int32_t pad_;
  CView<B> h_;
  TensorView<B, std::int32_t const> target_;
  View<B> logits_;
  Tensor<B> logits_buf_, loss_, nll_, lse_, dloss_, dlogits_, dh_;
};

}  // namespace lnformer
