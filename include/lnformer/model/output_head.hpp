#pragma once
// OutputHead: the output projection and the label-smoothed loss, with LossStats, what one forward
// pass of it reports.

#include <lnformer/model/config.hpp>
#include <lnformer/model/init.hpp>
#include <lnformer/nn/embedding.hpp>
#include <lnformer/nn/parameter.hpp>
#include <lnformer/ops/cross_entropy.hpp>

#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

namespace lnformer {

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
