#pragma once
// The amplification effect (Liu et al. 2020, Figure 4; PAPERS.md section 4):
//   output_change(model, batch, ctx, opt)   |F(x, W) - F(x, W + delta)|^2, where
//       F      = the final output of the (first) stack: Seq2Seq: the encoder output (after the final
//                LayerNorm of policies that have one); LanguageModel: the decoder stack's final hidden
//                states (what the output projection reads);
//       |.|^2  = the squared L2 distance summed over every non-padding token and every channel
//                (`squared`); `per_token` divides it by the number of those tokens;
//       delta  = -scale * sign(N(0, 1)) (random_sign, default scale 1e-4) or -scale * sign(dL/dW)
//                (gradient_sign, default 1e-6; the gradient of the mean loss on the same batch and
//                context) on the parameters PerturbedParameters selects: by default every weight
//                matrix of the layers (attention projections, FFN, an untied output projection) and
//                not the token embeddings, as Figure 4 measures the layers' amplification;
//                weights_and_embeddings adds the embeddings (every Parameter::decay == true, the set
//                PAPERS.md section 4 describes for the reference code). Never perturbed: biases,
//                LayerNorm gains and biases, Admin's w and ReZero's r (decay == false);
//       both passes run with the same ForwardContext, so dropout masks are identical (pass
//       ctx.training = false to disable dropout instead). Parameters are restored afterwards.
//   output_change_vs_depth<M, Norm>(...)   both kinds for models of several depths and seeds (Figure 4),
//       per seed, with the mean and SeedSummary (median, spread).

#include <lnformer/analysis/common.hpp>
#include <lnformer/analysis/seed_summary.hpp>

#include <cmath>
#include <span>
#include <string_view>
#include <vector>

namespace lnformer {

enum class PerturbationKind { random_sign, gradient_sign };

/// Which parameters a perturbation moves (never biases, LayerNorm parameters or residual scales).
enum class PerturbedParameters {
  weight_matrices,         ///< the layers' weight matrices, not the token embeddings (Figure 4)
  weights_and_embeddings,  ///< every parameter with weight decay: the weight matrices and the embeddings
};

struct PerturbationOptions {
  PerturbationKind kind = PerturbationKind::random_sign;
  double scale = 0;        ///< 0: the reference code's value, 1e-4 (random_sign) or 1e-6 (gradient_sign)
  std::uint64_t seed = 0;  ///< of the random signs
  PerturbedParameters targets = PerturbedParameters::weight_matrices;
  [[nodiscard]] double effective_scale() const {
    if (scale > 0) return scale;
    return kind == PerturbationKind::random_sign ? 1e-4 : 1e-6;
  }
};

struct OutputChange {
  double squared = 0;               ///< sum over non-padding tokens and channels of (F - F')^2
  double per_token = 0;             ///< squared / tokens
  std::int64_t tokens = 0;          ///< non-padding tokens of the output
  std::int64_t perturbed = 0;       ///< number of perturbed parameter elements
};

/// Whether a parameter is a token embedding (fairseq's "<stack>.embed_tokens.weight"; a tied output
/// projection is that same parameter).
inline bool is_token_embedding(std::string_view name) {
  return name.find("embed_tokens.") != std::string_view::npos;
}

/// Whether the perturbation analysis perturbs a parameter. Biases, LayerNorm parameters and residual
/// scales (Admin's w, ReZero's r) never: they are exactly the parameters without weight decay. The
/// embeddings only with weights_and_embeddings.
template <class B>
bool is_perturbed(ParameterRef<B> const& p, PerturbedParameters targets = PerturbedParameters::weight_matrices) {
  if (!p.param->decay) return false;
  return targets == PerturbedParameters::weights_and_embeddings || !is_token_embedding(p.name);
}

namespace detail {

template <class Norm, class B>
CView<B> analysed_output(Seq2Seq<Norm, B>& m, Batch<B> const& b, ForwardContext const& ctx) {
  return m.encoder.forward(b.src, b.src_pos, b.src_mask, ctx);
}
template <class Norm, class B>
CView<B> analysed_output(LanguageModel<Norm, B>& m, LmBatch<B> const& b, ForwardContext const& ctx, Tensor<B>& causal) {
  return m.decoder.forward(b.input, b.input_pos, causal_mask<B>(causal, b.input.size(1)), ctx);
}

/// The analysed output on the host and, per token, whether it is a real (non-padding) token.
template <class Model, class BatchT>
std::pair<std::vector<float>, std::vector<bool>> output_and_tokens(Model& m, BatchT const& b,
                                                                   ForwardContext const& ctx) {
  using B = typename Model::backend;
  std::vector<std::int32_t> ids;
  CView<B> y;
  Tensor<B> causal;
  if constexpr (requires { b.src; }) {
    y = analysed_output(m, b, ctx);
    ids = host_ids<B>(b.src);
  } else {
    y = analysed_output(m, b, ctx, causal);
    ids = host_ids<B>(b.input);
  }
  std::vector<bool> real(ids.size());
  for (std::size_t i = 0; i < ids.size(); ++i) real[i] = ids[i] != m.config().padding_idx;
  return {host_copy<B>(y), real};
}
}  // namespace detail

template <class Model, class BatchT>
OutputChange output_change(Model& model, BatchT const& batch, ForwardContext const& ctx,
                           PerturbationOptions const& opt = {}) {
  using B = typename Model::backend;
  auto params = model.parameters();
  if (opt.kind == PerturbationKind::gradient_sign) {
    model.zero_grad();
    (void)model.train_step(batch, ctx);
  }
  auto const [y0, real] = detail::output_and_tokens(model, batch, ctx);
  std::vector<Tensor<B>> saved;
  saved.reserve(params.size());
  Rng rng(opt.seed, 0x9e27);
  float const scale = static_cast<float>(opt.effective_scale());
  OutputChange out;
  for (auto& p : params) {
    saved.push_back(p.param->value.clone());
    if (!is_perturbed(p, opt.targets)) continue;
    auto h = p.param->value.to_host();
    std::vector<float> g;
    if (opt.kind == PerturbationKind::gradient_sign) g = p.param->grad.to_host();
    for (std::size_t i = 0; i < h.size(); ++i) {
      float const s = opt.kind == PerturbationKind::random_sign ? (rng.normal() < 0.f ? -1.f : 1.f)
                                                               : (g[i] > 0.f ? 1.f : (g[i] < 0.f ? -1.f : 0.f));
      h[i] -= scale * s;
    }
    out.perturbed += static_cast<std::int64_t>(h.size());
    p.param->value = Tensor<B>(p.param->value.shape(), std::span<float const>(h));
  }
  std::vector<float> y1;
  try {
    y1 = detail::output_and_tokens(model, batch, ctx).first;
  } catch (...) {
    for (std::size_t i = 0; i < params.size(); ++i) params[i].param->value = std::move(saved[i]);
    throw;
  }
  for (std::size_t i = 0; i < params.size(); ++i) params[i].param->value = std::move(saved[i]);
  if (opt.kind == PerturbationKind::gradient_sign) model.zero_grad();
  std::size_t const d = real.empty() ? 0 : y0.size() / real.size();
  for (std::size_t t = 0; t < real.size(); ++t) {
    if (!real[t]) continue;
    ++out.tokens;
    for (std::size_t c = 0; c < d; ++c) {
      double const diff = static_cast<double>(y0[t * d + c]) - y1[t * d + c];
      out.squared += diff * diff;
    }
  }
  out.per_token = out.tokens ? out.squared / static_cast<double>(out.tokens) : 0.0;
  return out;
}

struct OutputChangePoint {
  int layers = 0;       ///< layers of the measured stack
  int sublayers = 0;    ///< residual sublayers of the measured stack (N of the paper)
  double random = 0;    ///< OutputChange::squared for random_sign, averaged over the seeds
  double gradient = 0;  ///< OutputChange::squared for gradient_sign, averaged over the seeds
  std::vector<double> random_per_seed, gradient_per_seed;  ///< the same per seed, in seed order
  [[nodiscard]] SeedSummary random_summary() const { return summarize(random_per_seed); }
  [[nodiscard]] SeedSummary gradient_summary() const { return summarize(gradient_per_seed); }
};

struct OutputChangeSweep {
  double random_scale = 1e-4;
  double gradient_scale = 1e-6;
  int seeds = 1;                ///< models (and sign draws) per depth: model_seed, model_seed + 1, ...
  std::uint64_t model_seed = 1;
  PerturbedParameters targets = PerturbedParameters::weight_matrices;
  /// false: random-sign only (gradient stays 0, gradient_per_seed empty). The gradient-sign change
  /// needs a backward pass through the whole model, most of the sweep's time.
  bool gradient_sign = true;
};

/// Figure 4: the output change for models whose measured stack has each of `layers` layers
/// (Seq2Seq: the encoder, the decoder keeps base.dec_layers; LanguageModel: its stack), one model
/// and sign draw per seed. Models whose policy calibrates (AdminLN) are calibrated on `batch` first.
template <template <class, class> class M, class Norm, class B = Cpu, class BatchT>
std::vector<OutputChangePoint> output_change_vs_depth(ModelConfig const& base, std::vector<int> const& layers,
                                                      BatchT const& batch, ForwardContext const& ctx,
                                                      OutputChangeSweep const& sweep = {}) {
  LNF_EXPECTS_AS(ValueError, sweep.seeds >= 1, "output_change_vs_depth: {} seeds", sweep.seeds);
  std::vector<OutputChangePoint> out;
  for (int L : layers) {
    OutputChangePoint pt{.layers = L};
    for (int s = 0; s < sweep.seeds; ++s) {
      auto const seed = sweep.model_seed + static_cast<std::uint64_t>(s);
      auto model = make_model_with_depth<M, Norm, B>(base, L, seed, /*encoder_only_depth=*/true);
      prepare_for_analysis(*model, batch, ctx);
      pt.random_per_seed.push_back(
          output_change(*model, batch, ctx, {PerturbationKind::random_sign, sweep.random_scale, seed, sweep.targets})
              .squared);
      if (sweep.gradient_sign)
        pt.gradient_per_seed.push_back(
            output_change(*model, batch, ctx,
                          {PerturbationKind::gradient_sign, sweep.gradient_scale, seed, sweep.targets})
                .squared);
      if (s == 0) {
        int n = 0;
        model->for_each_residual([&](auto&, auto&, StackKind k, int) {
          n += (k == StackKind::encoder) == std::same_as<M<Norm, B>, Seq2Seq<Norm, B>> ? 1 : 0;
        });
        pt.sublayers = n;
      }
    }
    pt.random = pt.random_summary().mean;
    if (sweep.gradient_sign) pt.gradient = pt.gradient_summary().mean;
    out.push_back(std::move(pt));
  }
  return out;
}

}  // namespace lnformer
