// The papers' claims on small models, through the analysis tools (PAPERS.md sections 3 and 4):
// Xiong et al.'s Theorem 1 and Figure 3 (gradient norms at initialisation), Liu et al.'s Figure 4
// (output change under a parameter perturbation) and the layer dependency beta. The fitted
// quantities are printed. fairseq's initialisation (the default InitScheme).
#include <lnformer/analysis/dependency.hpp>
#include <lnformer/analysis/fit.hpp>
#include <lnformer/analysis/gradients.hpp>
#include <lnformer/analysis/perturbation.hpp>
#include <lnformer/core/type_list.hpp>
#include <lnformer/data/synthetic.hpp>
#include <lnformer/optim/optimizers.hpp>
#include <lnformer/schedule/schedules.hpp>
#include <lnformer/train/trainer.hpp>

#include <doctest/doctest.h>
#include <fmt/format.h>
#include <fmt/ranges.h>

#include <cmath>
#include <set>
#include <vector>

using namespace lnformer;

namespace {

SyntheticTask task() { return SyntheticTask{.kind = SyntheticKind::reverse, .symbols = 16, .min_len = 6, .max_len = 12}; }

ModelConfig small_config(int layers = 6) {
  return ModelConfig{.enc_layers = layers, .dec_layers = layers, .d_model = 32, .ffn = 64, .heads = 4,
                     .vocab = task().vocab(), .max_positions = 64, .dropout = 0.3f};
}

std::vector<Batch<Cpu>> batches(int n, std::size_t size = 16, std::uint64_t seed = 5) {
  Rng rng(seed);
  std::vector<Batch<Cpu>> out;
  for (int i = 0; i < n; ++i) out.push_back(make_batch<Cpu>(task().sample(rng, size)));
  return out;
}

ForwardContext const kCtx{.training = true, .seed = 17, .pass = 0};

std::vector<double> as_doubles(std::vector<int> const& v) { return {v.begin(), v.end()}; }

}  // namespace

TEST_CASE("line fits") {
  auto f = fit_line({1, 2, 3, 4}, {3, 5, 7, 9});
  CHECK(f.slope == doctest::Approx(2));
  CHECK(f.intercept == doctest::Approx(1));
  CHECK(f.r2 == doctest::Approx(1));
  auto g = fit_log_log({1, 2, 4, 8}, {1, 1.0 / std::sqrt(2.0), 0.5, 1.0 / std::sqrt(8.0)});
  CHECK(g.slope == doctest::Approx(-0.5));
  CHECK(layer_of("decoder.layers.11.fc2.weight") == LayerSite{StackKind::decoder, 11});
  CHECK(!layer_of("encoder.layer_norm.weight").has_value());
  CHECK(!layer_of("encoder.embed_tokens.weight").has_value());
}

TEST_CASE("perturbation excludes exactly the biases, LayerNorm parameters and Admin's w") {
  Seq2Seq<AdminLN, Cpu> m(small_config(2), 1);
  std::set<std::string> perturbed, kept;
  for (auto const& p : m.parameters()) (is_perturbed(p) ? perturbed : kept).insert(p.name);
  for (auto const& n : kept) {
    INFO(n);
    CHECK((n.ends_with(".bias") || n.find("layer_norm") != std::string::npos || n.ends_with("_admin_w")));
  }
  for (auto const& n : perturbed) {
    INFO(n);
    CHECK((n.ends_with(".weight") && n.find("layer_norm") == std::string::npos));
  }
  CHECK(kept.contains("encoder.layers.1.self_attn_admin_w"));
  CHECK(kept.contains("decoder.layers.0.final_layer_norm.bias"));
  CHECK(perturbed.contains("encoder.embed_tokens.weight"));
  CHECK(perturbed.contains("decoder.layers.1.fc2.weight"));
}

TEST_CASE("output_change restores the parameters and is zero without a perturbation") {
  Seq2Seq<PostLN, Cpu> m(small_config(2), 1);
  auto const b = batches(1);
  auto const before = m.parameters()[3].param->value.to_host();
  auto const c = output_change(m, b[0], kCtx, {PerturbationKind::random_sign, 1e-4, 3});
  CHECK(c.squared > 0);
  CHECK(c.tokens == b[0].src_tokens);
  CHECK(m.parameters()[3].param->value.to_host() == before);
  auto const z = output_change(m, b[0], kCtx, {PerturbationKind::random_sign, 1e-30, 3});
  CHECK(z.squared == 0);  // the same dropout mask in both passes
}

TEST_CASE_TEMPLATE("Theorem 1: ||dL/dW2|| of the last layer against depth", Norm, PostLN, PreLN) {
  auto const bs = batches(3);
  std::vector<int> const depths{3, 6, 12, 24};
  auto const pts = last_fc2_grad_norm_vs_depth<Seq2Seq, Norm>(small_config(), depths, std::span(bs), kCtx,
                                                               StackKind::decoder, 2);
  std::vector<double> v;
  for (auto const& p : pts) v.push_back(p.value);
  auto const fit = fit_log_log(as_doubles(depths), v);
  MESSAGE(fmt::format("{}: ||dL/dW2_L|| at L = {}: {::.4g}; log-log slope {:.3f} (R^2 {:.3f})", Norm::name, depths, v,
                      fit.slope, fit.r2));
  if constexpr (std::same_as<Norm, PreLN>) {
    CHECK(fit.slope >= -0.7);
    CHECK(fit.slope <= -0.3);
  } else {
    CHECK(fit.slope >= -0.15);
    CHECK(fit.slope <= 0.15);
  }
}

TEST_CASE_TEMPLATE("Figure 3: per-layer FFN gradient norms of a 6-6 model", Norm, PostLN, PreLN) {
  auto const bs = batches(3);
  Seq2Seq<Norm, Cpu> m(small_config(6), 1);
  auto const prof = gradient_norms(m, std::span(bs), kCtx);
  for (StackKind k : {StackKind::encoder, StackKind::decoder}) {
    auto const s = prof.stack(k);
    REQUIRE(s.size() == 6);
    std::vector<double> v;
    for (auto const& l : s) v.push_back(l.ffn);
    double const ratio = s.back().ffn / s.front().ffn;
    MESSAGE(fmt::format("{} {}: FFN gradient norm per layer {::.4g}; last/first {:.3f}", Norm::name, stack_name(k), v,
                        ratio));
    if constexpr (std::same_as<Norm, PostLN>) {
      if (k == StackKind::decoder) CHECK(ratio >= 2.0);
    } else {
      CHECK(ratio <= 1.2);
    }
  }
}

namespace {
struct Fig4 {
  std::vector<double> n, change;
  LinearFit lin, log;
};
template <class Norm>
Fig4 figure4(std::vector<int> const& layers, bool gradient) {
  auto const b = batches(1, 16, 9);
  // The reference protocol disables dropout, so that the difference is the perturbation's only (with
  // dropout on, the same mask in both passes, the averages are noisier: Pre-LN's log fit then only
  // just beats the linear one at this size). Admin is profiled on the same dropout-free model.
  auto cfg = small_config();
  cfg.dropout = 0.f;
  auto pts = output_change_vs_depth<Seq2Seq, Norm>(cfg, layers, b[0], kCtx, {.seeds = 3});
  Fig4 f;
  for (auto const& p : pts) {
    f.n.push_back(p.sublayers);
    f.change.push_back(gradient ? p.gradient : p.random);
  }
  f.lin = fit_line(f.n, f.change);
  f.log = fit_log_x(f.n, f.change);
  MESSAGE(fmt::format("{} ({}): N = {}: |F(W) - F(W + delta)|^2 = {::.4g}; linear fit R^2 {:.3f}, log fit R^2 {:.3f}",
                      Norm::name, gradient ? "gradient-sign" : "random-sign", f.n, f.change, f.lin.r2, f.log.r2));
  return f;
}
}  // namespace

TEST_CASE("Figure 4: output change against the number of sublayers") {
  std::vector<int> const layers{1, 2, 4, 8, 16};  // N = 2 .. 32 encoder sublayers
  for (bool gradient : {false, true}) {
    auto const post = figure4<PostLN>(layers, gradient);
    auto const pre = figure4<PreLN>(layers, gradient);
    auto const admin = figure4<AdminLN>(layers, gradient);
    double const growth = post.change.back() / post.change.front(), nratio = post.n.back() / post.n.front();
    MESSAGE(fmt::format("{}: PostLN growth {:.3f} vs N ratio {:.1f}; at N = {}: post/pre {:.2f}, post/admin {:.2f}",
                        gradient ? "gradient-sign" : "random-sign", growth, nratio, post.n.back(),
                        post.change.back() / pre.change.back(), post.change.back() / admin.change.back()));
    CHECK(growth >= 0.5 * nratio);
    for (auto const* f : {&pre, &admin}) CHECK(post.change.back() >= 3 * f->change.back());
    if (!gradient) {
      // The growth-law claims are Liu et al.'s for independent (random) perturbations. A gradient-sign
      // perturbation moves every weight coherently, so its output change adds up across sublayers:
      // super-linear in N for every policy at this size (printed above), Post-LN's still by far the
      // largest.
      CHECK(post.lin.r2 >= 0.9);
      for (auto const* f : {&pre, &admin}) {
        CHECK(f->log.r2 >= 0.95);
        CHECK(f->log.r2 > f->lin.r2);
      }
    }
  }
}

TEST_CASE("layer dependency beta at initialisation") {
  auto const b = batches(1);
  auto self_dep = [&]<class Norm>(TypeTag<Norm>, StackKind k) {
    Seq2Seq<Norm, Cpu> m(small_config(6), 1);
    prepare_for_analysis(m, b[0], kCtx);
    auto const d = layer_dependency(m, b[0], kCtx, k);
    CHECK(d.reproduction_error < 1e-4);
    REQUIRE(d.sublayers() == (k == StackKind::encoder ? 12 : 18));
    auto const s = d.self_dependency();
    double mean = 0;
    for (std::size_t i = s.size() / 2; i < s.size(); ++i) mean += s[i];
    mean /= static_cast<double>(s.size() - s.size() / 2);
    MESSAGE(fmt::format("{} {}: beta_ii = {::.3f}; mean over the upper half {:.3f}", Norm::name, stack_name(k), s,
                        mean));
    return mean;
  };
  for (StackKind k : {StackKind::encoder, StackKind::decoder}) {
    double const post = self_dep(TypeTag<PostLN>{}, k), pre = self_dep(TypeTag<PreLN>{}, k),
                 admin = self_dep(TypeTag<AdminLN>{}, k);
    CHECK(post > 2 * pre);
    CHECK(post > 1.5 * admin);
  }
}

TEST_CASE("layer dependency of a trained model (Liu et al. Figure 8)") {
  // The same models trained briefly on the task: the decomposition still reproduces the stack, PreLN's
  // stays exact (x_i = x_(i-1) + a_i whatever the weights), and training has moved beta.
  auto const b = batches(1);
  auto run = [&]<class Norm>(TypeTag<Norm>) {
    Seq2Seq<Norm, Cpu> m(small_config(4), 1);
    prepare_for_analysis(m, b[0], kCtx);
    auto const init = layer_dependency(m, b[0], kCtx, StackKind::encoder);
    Trainer trainer(m, Adam{.beta1 = 0.9f, .beta2 = 0.98f}, LinearWarmup{.peak = 1e-3f, .warmup = 20},
                    TrainerOptions{.clip_norm = 1.f, .seed = 3});
    Rng rng(9);
    double first = 0, last = 0;
    for (int step = 1; step <= 120; ++step) {
      double const loss = trainer.step(make_batch<Cpu>(task().sample(rng, 16))).loss.loss;
      if (step <= 10) first += loss / 10;
      if (step > 110) last += loss / 10;
    }
    auto const d = layer_dependency(m, b[0], kCtx, StackKind::encoder);
    auto const s0 = init.self_dependency(), s1 = d.self_dependency();
    double moved = 0;
    for (std::size_t i = 0; i < s0.size(); ++i) moved = std::max(moved, std::abs(s1[i] - s0[i]));
    MESSAGE(fmt::format("{}: loss {:.3f} -> {:.3f}; beta_ii {::.3f} -> {::.3f} (largest change {:.3f}); "
                        "reproduction error {:.2e}",
                        Norm::name, first, last, s0, s1, moved, d.reproduction_error));
    CHECK(last < 0.9 * first);  // it did train (the summed loss of 16 sequences, 10-step means)
    CHECK(d.reproduction_error < 1e-4);
    CHECK(moved > 0.02);
    for (auto const& row : d.beta)
      for (double v : row) CHECK(std::isfinite(v));
    if constexpr (std::is_same_v<Norm, PreLN>)
      for (double c : d.coef_x) CHECK(c == doctest::Approx(1).epsilon(1e-3));
  };
  run(TypeTag<PostLN>{});
  run(TypeTag<PreLN>{});
  run(TypeTag<AdminLN>{});
}

TEST_CASE("layer dependency of a LanguageModel reproduces its stack") {
  Rng rng(4);
  auto lm_batch = make_lm_batch<Cpu>({{4, 5, 6, 7, 8}, {9, 10}, {11, 12, 4}});
  LanguageModel<PreLN, Cpu> m(small_config(3), 2);
  auto const d = layer_dependency(m, lm_batch, kCtx);
  CHECK(d.reproduction_error < 1e-4);
  CHECK(d.sublayers() == 6);
  for (std::size_t i = 1; i < d.beta.size(); ++i) CHECK(d.coef_x[i - 1] == doctest::Approx(1).epsilon(1e-3));
}
