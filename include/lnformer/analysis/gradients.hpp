#pragma once
// Gradient norms at initialisation (Xiong et al. 2020, PAPERS.md section 3):
//   gradient_norms(model, batches, ctx)   Frobenius norm of every parameter's gradient of the mean
//                                         loss, and per layer the norms of its FFN weights (fc1, fc2 =
//                                         W^{2,l} of Figure 3, both) and of all its parameters; each
//                                         averaged over the batches (one forward/backward per batch);
//   last_fc2_grad_norm(profile, stack)    ||dL/dW^{2,L}||_F: fc2.weight of the stack's last layer
//                                         (Theorem 1);
//   last_fc2_grad_norm_vs_depth<M, Norm>  that norm for models of several depths (Theorem 1's panel),
//                                         per seed, with the mean and SeedSummary (median, spread).
// Gradients are left zeroed; parameters are not changed.

#include <lnformer/analysis/common.hpp>
#include <lnformer/analysis/seed_summary.hpp>

#include <algorithm>
#include <cmath>
#include <map>
#include <span>
#include <string>
#include <vector>

namespace lnformer {

struct ParameterGradNorm {
  std::string name;
  double norm = 0;  ///< ||dL/dW||_F, averaged over the batches
};

struct LayerGradNorm {
  LayerSite site;
  double fc1 = 0;  ///< ||dL/d fc1.weight||_F
  double fc2 = 0;  ///< ||dL/d fc2.weight||_F: W^{2,l}, the quantity of Xiong et al.'s Figure 3 and Theorem 1
  double ffn = 0;  ///< sqrt(fc1^2 + fc2^2): both FFN weights together
  double all = 0;  ///< every parameter of the layer (biases, LayerNorms, Admin w included)
};

struct GradientProfile {
  std::vector<ParameterGradNorm> parameters;  ///< in parameters() order
  std::vector<LayerGradNorm> layers;          ///< encoder layers, then decoder layers, by index
  double total = 0;                           ///< the norm of the whole gradient, averaged
  int batches = 0;

  /// The layers of one stack, by index.
  [[nodiscard]] std::vector<LayerGradNorm> stack(StackKind k) const {
    std::vector<LayerGradNorm> out;
    for (auto const& l : layers)
      if (l.site.stack == k) out.push_back(l);
    return out;
  }
};

namespace detail {
template <class B>
double frobenius(Tensor<B> const& t) {
  double s = 0;
  for (float v : t.to_host()) s += static_cast<double>(v) * v;
  return std::sqrt(s);
}
}  // namespace detail

/// Gradient norms of the mean loss (train_step) on each batch, averaged over the batches. Batch b
/// runs with ctx.pass + b (reproducible dropout masks). Gradients are zeroed before and after.
template <class Model, class BatchT>
GradientProfile gradient_norms(Model& model, std::span<BatchT const> batches, ForwardContext ctx) {
  LNF_EXPECTS_AS(ValueError, !batches.empty(), "gradient_norms: no batches");
  auto params = model.parameters();
  GradientProfile prof;
  prof.batches = static_cast<int>(batches.size());
  prof.parameters.resize(params.size());
  for (std::size_t i = 0; i < params.size(); ++i) prof.parameters[i].name = params[i].name;
  std::map<std::pair<int, int>, LayerGradNorm> layers;  // (stack, layer) -> sums
  std::uint64_t const pass0 = ctx.pass;
  for (std::size_t b = 0; b < batches.size(); ++b) {
    model.zero_grad();
    ctx.pass = pass0 + b;
    (void)model.train_step(batches[b], ctx);
    std::map<std::pair<int, int>, LayerGradNorm> sq;  // squared norms of this batch
    double total_sq = 0;
    for (std::size_t i = 0; i < params.size(); ++i) {
      double const n = detail::frobenius(params[i].param->grad);
      prof.parameters[i].norm += n;
      total_sq += n * n;
      if (auto site = layer_of(params[i].name)) {
        auto& l = sq[{static_cast<int>(site->stack), site->layer}];
        l.site = *site;
        l.all += n * n;
        std::string_view const nm = params[i].name;
        if (nm.ends_with(".fc1.weight")) l.fc1 += n * n;
        if (nm.ends_with(".fc2.weight")) l.fc2 += n * n;
      }
    }
    prof.total += std::sqrt(total_sq);
    for (auto const& [key, l] : sq) {
      auto& acc = layers[key];
      acc.site = l.site;
      acc.fc1 += std::sqrt(l.fc1);
      acc.fc2 += std::sqrt(l.fc2);
      acc.ffn += std::sqrt(l.fc1 + l.fc2);
      acc.all += std::sqrt(l.all);
    }
  }
  model.zero_grad();
  double const nb = static_cast<double>(batches.size());
  for (auto& p : prof.parameters) p.norm /= nb;
  prof.total /= nb;
  for (auto& [key, l] : layers) {
    l.fc1 /= nb;
    l.fc2 /= nb;
    l.ffn /= nb;
    l.all /= nb;
    prof.layers.push_back(l);
  }
  return prof;
}

/// ||dL/dW^{2,L}||_F of a profile: fc2.weight of the last layer of `stack` (Theorem 1).
inline double last_fc2_grad_norm(GradientProfile const& prof, StackKind stack = StackKind::decoder) {
  auto const s = prof.stack(stack);
  LNF_EXPECTS_AS(ValueError, !s.empty(), "last_fc2_grad_norm: the profile has no {} layers", stack_name(stack));
  return s.back().fc2;
}

struct DepthValue {
  int layers = 0;                ///< layers per stack
  double value = 0;              ///< the measured quantity, averaged over the seeds
  std::vector<double> per_seed;  ///< the quantity of each seed's model, in seed order
  [[nodiscard]] SeedSummary summary() const { return summarize(per_seed); }
};

/// Theorem 1's panel: for each depth L (layers per stack), ||dL/dW^{2,L}||_F of the last layer of
/// `stack` at initialisation, for the models of seeds model_seed, model_seed + 1, ... (each averaged
/// over the batches). Models whose policy calibrates (AdminLN) are calibrated on batches[0] first.
template <template <class, class> class M, class Norm, class B = Cpu, class BatchT>
std::vector<DepthValue> last_fc2_grad_norm_vs_depth(ModelConfig const& base, std::vector<int> const& depths,
                                                    std::span<BatchT const> batches, ForwardContext const& ctx,
                                                    StackKind stack = StackKind::decoder, int seeds = 1,
                                                    std::uint64_t model_seed = 1) {
  std::vector<DepthValue> out;
  LNF_EXPECTS_AS(ValueError, seeds >= 1, "last_fc2_grad_norm_vs_depth: {} seeds", seeds);
  for (int L : depths) {
    DepthValue pt{L, 0, {}};
    for (int s = 0; s < seeds; ++s) {
      auto model = make_model_with_depth<M, Norm, B>(base, L, model_seed + static_cast<std::uint64_t>(s));
      prepare_for_analysis(*model, batches[0], ctx);
      pt.per_seed.push_back(last_fc2_grad_norm(gradient_norms(*model, batches, ctx), stack));
    }
    pt.value = pt.summary().mean;
    out.push_back(std::move(pt));
  }
  return out;
}

}  // namespace lnformer
