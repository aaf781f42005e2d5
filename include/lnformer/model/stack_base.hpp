#pragma once
// detail::StackBase: what Encoder and Decoder share: the token embedding they read (owned by the
// model, so that one embedding can be shared), input dropout, the layers, what the policy puts after
// the stack (Norm::Final), the layer observer, parameter names, and the order of the forward and
// backward passes. Encoder and Decoder add only what differs: the inputs each layer takes, the
// gradient the decoder returns for the encoder output, and the decoder's causal mask.

#include <lnformer/model/config.hpp>
#include <lnformer/model/layers.hpp>
#include <lnformer/nn/dropout.hpp>
#include <lnformer/nn/embedding.hpp>
#include <lnformer/nn/parameter.hpp>

#include <cstdint>
#include <functional>
#include <string>
#include <utility>
#include <vector>

namespace lnformer::detail {

inline void check_length(std::int64_t t, std::int64_t max_positions, char const* what) {
  LNF_EXPECTS_AS(ValueError, t <= max_positions, "{} length {} exceeds max_positions {} of the model", what, t,
                 max_positions);
}

/// Layer: EncoderLayer<Norm, B> or DecoderLayer<Norm, B>, constructed from (config, parameter prefix).
template <class Norm, class Layer, class B>
class StackBase {
 public:
  std::vector<Layer> layers;
  typename Norm::template Final<B> final;

  /// Called during forward with (layer index, the layer's output [N, T, d]) after each layer, where
  /// set (analysis/training_stats.hpp records hidden-state statistics this way). The view is valid
  /// only during the call.
  std::function<void(int, CView<B>)> layer_observer;

  /// The token embedding this stack reads (shared with the model).
  [[nodiscard]] TokenEmbedding<B>& embedding() { return *embed_; }

  void collect(ParameterList<B>& out) {
    for (std::size_t l = 0; l < layers.size(); ++l) layers[l].collect(layer_name(l), out);
    final.collect(prefix_ + ".layer_norm", out);
  }

 protected:
  StackBase(ModelConfig const& c, TokenEmbedding<B>& embed, int n_layers, std::string prefix)
      : final(c.d_model), embed_(&embed), drop_(c.dropout, prefix + ".dropout_input"), prefix_(std::move(prefix)) {
    layers.reserve(static_cast<std::size_t>(n_layers));
    for (int l = 0; l < n_layers; ++l) layers.emplace_back(c, layer_name(static_cast<std::size_t>(l)));
    // Two sets of backward buffers for the whole stack, used alternately (BackwardBuffer says why).
    if (c.share_backward_buffers)
      for (std::size_t l = 2; l < layers.size(); ++l) layers[l].share_backward_buffers(layers[l % 2]);
  }

  /// ids, positions [N, T] -> the embedded, dropped-out input [N, T, d]; `what` names the sequence in
  /// the length check ("input", "target").
  CView<B> embed_forward(TensorView<B, std::int32_t const> ids, TensorView<B, std::int32_t const> positions,
                         ForwardContext const& ctx, char const* what) {
    check_length(ids.size(1), embed_->max_positions(), what);
    ids_ = ids;
    auto x0 = ensure(emb_, Shape{ids.size(0), ids.size(1), embed_->dim()});
    embed_->forward(x0, ids, positions);
    return drop_.forward(x0, ctx);
  }

  /// x through every layer (`run(layer, x)` -> its output), the observer after each, then Final.
  template <class Run>
  CView<B> layers_forward(CView<B> x, Run&& run) {
    for (std::size_t l = 0; l < layers.size(); ++l) {
      x = run(layers[l], x);
      if (layer_observer) layer_observer(static_cast<int>(l), x);
    }
    return final.forward(x);
  }

  /// The backward pass in reverse order (`back(layer, dy)` -> d input of the layer); accumulates every
  /// parameter gradient, the embedding's included, and tells `hook` (if any) about the final layer norm
  /// and each layer as soon as their gradients are complete.
  template <class Back>
  void layers_backward(CView<B> dy, GradientReadyHook<B>* hook, Back&& back) {
    dy = final.backward(dy);
    report_ready(hook, [&](ParameterList<B>& g) { final.collect(prefix_ + ".layer_norm", g); });
    for (std::size_t l = layers.size(); l-- > 0;) {
      dy = back(layers[l], dy);
      report_ready(hook, [&](ParameterList<B>& g) { layers[l].collect(layer_name(l), g); });
    }
    embed_->backward(drop_.backward(dy), ids_);
  }

  /// f(residual, sublayer module, kind, index within the stack) for every residual in order.
  template <class F>
  void visit_residuals(F&& f, StackKind kind) {
    int i = 0;
    for (auto& l : layers) l.for_each_residual([&](auto& res, auto& sub, int) { f(res, sub, kind, i++); });
  }

  [[nodiscard]] std::string layer_name(std::size_t l) const { return prefix_ + ".layers." + std::to_string(l); }

 private:
  TokenEmbedding<B>* embed_;
  Dropout<B> drop_;  // before prefix_: it is named from the prefix before that is moved in
  std::string prefix_;
  TensorView<B, std::int32_t const> ids_;
  Tensor<B> emb_;
};

}  // namespace lnformer::detail
