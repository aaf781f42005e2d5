#pragma once
// Statistics of a model during training, the quantities the papers and later work use to explain
// (in)stability (PAPERS.md sections 3-4; Kim et al. 2025, Peri-LN):
//   layer_gradient_norms(params)   per layer, the L2 norm of the gradient of all its parameters
//                                  (Post-LN's imbalance: large near the output at initialisation);
//   HiddenStateRecorder(model)     per layer, the variance of its output during forward passes
//                                  (Pre-LN's hidden state grows with depth; Post-LN's is normalised).
// Both read device memory to the host; they are meant for every N-th update, not every one.

#include <lnformer/analysis/common.hpp>

#include <cmath>
#include <map>
#include <utility>
#include <vector>

namespace lnformer {

/// One number per layer.
struct LayerValue {
  LayerSite site;
  double value = 0;
  friend bool operator==(LayerValue const&, LayerValue const&) = default;
};

/// The L2 norm of the current gradients of each layer's parameters (every tensor whose name places
/// it in a layer: "encoder.layers.3.*"), encoder layers then decoder layers, by index. Parameters
/// outside the layers (embeddings, final LayerNorms, an untied output projection) are left out.
template <class B>
std::vector<LayerValue> layer_gradient_norms(ParameterList<B> const& params) {
  std::map<std::pair<int, int>, LayerValue> sq;  // (stack, layer) -> sum of squares
  for (auto const& p : params) {
    auto const site = layer_of(p.name);
    if (!site) continue;
    auto& l = sq[{static_cast<int>(site->stack), site->layer}];
    l.site = *site;
    for (float v : p.param->grad.to_host()) l.value += static_cast<double>(v) * v;
  }
  std::vector<LayerValue> out;
  out.reserve(sq.size());
  for (auto& [key, l] : sq) out.push_back({l.site, std::sqrt(l.value)});
  return out;
}

/// Population variance of every element of a contiguous view (computed in double).
template <class B>
double variance_of(CView<B> v) {
  auto const h = detail::host_copy(v);
  if (h.empty()) return 0.0;
  double sum = 0, sum_sq = 0;
  for (float x : h) {
    sum += x;
    sum_sq += static_cast<double>(x) * x;
  }
  double const n = static_cast<double>(h.size()), mean = sum / n;
  return std::max(0.0, sum_sq / n - mean * mean);
}

/// While it lives, records the variance of each layer's output (all elements of [N, T, d], padding
/// positions included) in every forward pass of `model` (a Seq2Seq: encoder and decoder; a model with
/// one stack: that one), through the stacks' layer_observer. Not copyable; the model must outlive it.
template <class Model>
class HiddenStateRecorder {
 public:
  explicit HiddenStateRecorder(Model& model) : model_(model) {
    if constexpr (requires { model.encoder; }) {
      model.encoder.layer_observer = [this](int l, auto x) { record(StackKind::encoder, l, x); };
    }
    model.decoder.layer_observer = [this](int l, auto x) { record(StackKind::decoder, l, x); };
  }
  ~HiddenStateRecorder() {
    if constexpr (requires { model_.encoder; }) model_.encoder.layer_observer = nullptr;
    model_.decoder.layer_observer = nullptr;
  }
  HiddenStateRecorder(HiddenStateRecorder const&) = delete;
  HiddenStateRecorder& operator=(HiddenStateRecorder const&) = delete;

  /// The variances of the last forward pass, encoder layers then decoder layers, by index.
  [[nodiscard]] std::vector<LayerValue> variances() const {
    std::vector<LayerValue> out;
    out.reserve(values_.size());
    for (auto const& [key, v] : values_) out.push_back(v);
    return out;
  }
  /// Forward passes seen.
  [[nodiscard]] int passes() const { return passes_; }

 private:
  template <class V>
  void record(StackKind stack, int layer, V x) {
    if (layer == 0 && (stack == StackKind::encoder || !has_encoder())) ++passes_;
    values_[{static_cast<int>(stack), layer}] = LayerValue{{stack, layer}, variance_of(x)};
  }
  static constexpr bool has_encoder() { return requires(Model& m) { m.encoder; }; }

  Model& model_;
  std::map<std::pair<int, int>, LayerValue> values_;
  int passes_ = 0;
};

}  // namespace lnformer
