#pragma once
// Helpers shared by the analysis tools (analysis/gradients.hpp, perturbation.hpp, dependency.hpp):
// host copies of views, the (stack, layer) a parameter name belongs to, models of a given depth, and
// the initialisation step a policy needs before it is measured (Admin's profiling).

#include <lnformer/analysis/admin.hpp>
#include <lnformer/model/language_model.hpp>
#include <lnformer/model/seq2seq.hpp>
#include <lnformer/norm/policies.hpp>

#include <charconv>
#include <limits>
#include <span>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace lnformer {

/// Where a parameter lives: its stack and layer index ("decoder.layers.3.fc2.weight" -> decoder, 3).
struct LayerSite {
  StackKind stack = StackKind::encoder;
  int layer = 0;
  friend bool operator==(LayerSite const&, LayerSite const&) = default;
};

inline std::string_view stack_name(StackKind k) { return k == StackKind::encoder ? "encoder" : "decoder"; }

/// The layer of a fairseq-style parameter name; nullopt for parameters outside the layers
/// (embeddings, final LayerNorms, an untied output projection).
inline std::optional<LayerSite> layer_of(std::string_view name) {
  for (StackKind k : {StackKind::encoder, StackKind::decoder}) {
    std::string const prefix = std::string(stack_name(k)) + ".layers.";
    if (name.substr(0, prefix.size()) != prefix) continue;
    auto const rest = name.substr(prefix.size());
    int layer = 0;
    auto const [p, ec] = std::from_chars(rest.data(), rest.data() + rest.size(), layer);
    if (ec != std::errc{} || p == rest.data() + rest.size() || *p != '.') return std::nullopt;
    return LayerSite{k, layer};
  }
  return std::nullopt;
}

namespace detail {

/// Contents of a contiguous view, on the host.
template <class B>
std::vector<float> host_copy(CView<B> v) {
  LNF_EXPECTS(v.is_contiguous(), "analysis: expected a contiguous view, got shape {}", v.shape());
  std::vector<float> h(static_cast<std::size_t>(v.numel()));
  if (!h.empty()) BackendTraits<B>::to_host(h.data(), v.data(), h.size() * sizeof(float));
  return h;
}
template <class B>
std::vector<std::int32_t> host_ids(TensorView<B, std::int32_t const> v) {
  std::vector<std::int32_t> h(static_cast<std::size_t>(v.numel()));
  if (!h.empty()) BackendTraits<B>::to_host(h.data(), v.data(), h.size() * sizeof(std::int32_t));
  return h;
}

/// [T, T] additive causal mask (0 on and below the diagonal, -inf above), rebuilt when T changes.
template <class B>
CView<B> causal_mask(Tensor<B>& buf, std::int64_t t) {
  if (buf.numel() != t * t) {
    std::vector<float> h(static_cast<std::size_t>(t * t), 0.f);
    for (std::int64_t i = 0; i < t; ++i)
      for (std::int64_t j = i + 1; j < t; ++j)
        h[static_cast<std::size_t>(i * t + j)] = -std::numeric_limits<float>::infinity();
    buf = Tensor<B>(Shape{t, t}, std::span<float const>(h));
  }
  return buf.cview();
}

template <class T>
struct ModelTraits;
template <class Norm, class B>
struct ModelTraits<Seq2Seq<Norm, B>> {
  using batch = Batch<B>;
};
template <class Norm, class B>
struct ModelTraits<LanguageModel<Norm, B>> {
  using batch = LmBatch<B>;
};

}  // namespace detail

/// What a policy needs before it is measured at initialisation: its calibrate hook on `batch`, for
/// the policies that have one (AdminLN profiles w: PAPERS.md section 2, one training-mode forward
/// pass); other policies need nothing.
template <class Model, class BatchT>
void prepare_for_analysis(Model& model, BatchT const& batch, ForwardContext const& ctx) {
  (void)calibrate_norm(model, batch, ctx);
}

/// A model of `layers` layers per stack (Seq2Seq: enc_layers = dec_layers = layers unless
/// `encoder_only_depth`, which varies the encoder and keeps base.dec_layers; LanguageModel: dec_layers).
template <template <class, class> class M, class Norm, class B = Cpu>
std::unique_ptr<M<Norm, B>> make_model_with_depth(ModelConfig base, int layers, std::uint64_t seed,
                                                  bool encoder_only_depth = false) {
  base.enc_layers = layers;
  if (!encoder_only_depth || std::same_as<M<Norm, B>, LanguageModel<Norm, B>>) base.dec_layers = layers;
  return std::make_unique<M<Norm, B>>(base, seed);
}

}  // namespace lnformer
