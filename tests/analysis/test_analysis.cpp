// The analysis tools (PAPERS.md sections 3 and 4) on small models: line fits and seed summaries, the
// papers' measurement setup, which parameters a perturbation moves, what the gradient norms measure,
// and the layer dependency beta. The papers' claims themselves are checked at sizes where they are
// sharp in test_paper_claims.cpp. fairseq's initialisation (the default InitScheme).
#include <lnformer/analysis/dependency.hpp>
#include <lnformer/analysis/fit.hpp>
#include <lnformer/analysis/gradients.hpp>
#include <lnformer/analysis/paper_setup.hpp>
#include <lnformer/analysis/perturbation.hpp>
#include <lnformer/analysis/seed_summary.hpp>
#include <lnformer/core/type_list.hpp>
#include <lnformer/data/synthetic.hpp>
#include <lnformer/norm/policies.hpp>
#include <lnformer/optim/optimizers.hpp>
#include <lnformer/schedule/schedules.hpp>
#include <lnformer/train/trainer.hpp>

#include <doctest/doctest.h>
#include <fmt/format.h>
#include <fmt/ranges.h>

#include <cmath>
#include <map>
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

TEST_CASE("seed summaries: median, quartiles (linear between order statistics) and extremes") {
  auto const s = summarize({4, 1, 3, 2});
  CHECK(s.n == 4);
  CHECK(s.min == 1);
  CHECK(s.q1 == doctest::Approx(1.75));
  CHECK(s.median == doctest::Approx(2.5));
  CHECK(s.q3 == doctest::Approx(3.25));
  CHECK(s.max == 4);
  CHECK(s.mean == doctest::Approx(2.5));
  auto const one = summarize({7});
  CHECK((one.min == 7 && one.q1 == 7 && one.median == 7 && one.q3 == 7 && one.max == 7));
  CHECK(summarize({5, 100, 1}).median == 5);  // one far-off seed does not move the median
  CHECK_THROWS_AS(summarize({}), ValueError);
}

TEST_CASE("PaperSetup: the papers' model and random-token batches with the decoder fed the target") {
  PaperSetup const setup{.vocab = 50, .sentences = 3, .length = 7};
  auto const c = setup.config(ModelConfig{.d_model = 16, .ffn = 32, .heads = 2, .max_positions = 4});
  CHECK(c.vocab == 50);
  CHECK(c.max_positions == 7);
  CHECK_FALSE(c.tie_output);
  CHECK(c.output_bias);
  CHECK(c.label_smoothing == 0.f);
  CHECK((c.dropout == 0.f && c.attention_dropout == 0.f && c.activation_dropout == 0.f));
  CHECK(c.d_model == 16);
  auto const b = setup.batch<Cpu>(3);
  CHECK(b.src.shape() == Shape{3, 7});
  CHECK(b.prev.shape() == Shape{3, 7});
  auto const src = b.src.to_host(), prev = b.prev.to_host(), tgt = b.target.to_host();
  CHECK(prev == tgt);  // the decoder is fed the target itself
  CHECK(src != tgt);
  for (auto const* ids : {&src, &tgt})
    for (auto t : *ids) CHECK((t >= 4 && t < 50));  // ordinary ids: no bos, pad, eos or unk
  CHECK(b.src_tokens == 21);
  CHECK(b.target_tokens == 21);
  auto const pos = b.src_pos.to_host();
  for (std::size_t i = 0; i < pos.size(); ++i) CHECK(pos[i] == static_cast<std::int32_t>(2 + i % 7));  // no padding
  for (float m : b.src_mask.to_host()) CHECK(m == 0.f);
  CHECK(setup.batch<Cpu>(3).src.to_host() == src);  // reproducible
  CHECK(setup.batch<Cpu>(4).src.to_host() != src);
  // A model in this setup runs on it: loss = nll (no smoothing), over every token.
  Seq2Seq<PreLN, Cpu> m(setup.config(ModelConfig{.enc_layers = 1, .dec_layers = 1, .d_model = 16, .ffn = 32,
                                                 .heads = 2}),
                        1);
  auto const l = m.forward(b, ForwardContext{.training = true});
  CHECK(l.tokens == 21);
  CHECK(l.loss == doctest::Approx(l.nll));
  // Uniform over [4, V): over many draws every ordinary id appears, and about equally often.
  auto const big = PaperSetup{.vocab = 20, .sentences = 64, .length = 64}.batch<Cpu>(1).src.to_host();
  std::map<std::int32_t, int> count;
  for (auto t : big) ++count[t];
  CHECK(count.size() == 16);
  for (auto const& [t, n] : count) CHECK((n > 160 && n < 352));  // 256 expected; > 6 sd away is a bug
}

TEST_CASE("perturbation: the layers' weight matrices by default, the embeddings only when asked") {
  auto c = small_config(2);
  c.tie_output = false;
  c.output_bias = true;
  Seq2Seq<AdminLN, Cpu> m(c, 1);
  std::set<std::string> perturbed, kept, with_embeddings;
  for (auto const& p : m.parameters()) {
    (is_perturbed(p) ? perturbed : kept).insert(p.name);
    if (is_perturbed(p, PerturbedParameters::weights_and_embeddings)) with_embeddings.insert(p.name);
  }
  for (auto const& n : kept) {
    INFO(n);
    CHECK((n.ends_with(".bias") || n.find("layer_norm") != std::string::npos || n.ends_with("_admin_w") ||
           n.ends_with("embed_tokens.weight")));
  }
  for (auto const& n : perturbed) {
    INFO(n);
    CHECK((n.ends_with(".weight") && n.find("layer_norm") == std::string::npos &&
           n.find("embed_tokens") == std::string::npos));
  }
  CHECK(kept.contains("encoder.layers.1.self_attn_admin_w"));
  CHECK(kept.contains("decoder.layers.0.final_layer_norm.bias"));
  CHECK(kept.contains("encoder.embed_tokens.weight"));
  CHECK(kept.contains("decoder.output_projection.bias"));
  CHECK(perturbed.contains("decoder.layers.1.fc2.weight"));
  CHECK(perturbed.contains("encoder.layers.0.self_attn.q_proj.weight"));
  CHECK(perturbed.contains("decoder.output_projection.weight"));
  // weights_and_embeddings: the same plus the embedding (every parameter with weight decay).
  auto expected = perturbed;
  expected.insert("encoder.embed_tokens.weight");
  CHECK(with_embeddings == expected);
  // The change of the encoder output counts the embedding's perturbation only when asked.
  auto const b = batches(1);
  auto const w = output_change(m, b[0], kCtx, {PerturbationKind::random_sign, 1e-4, 3});
  auto const we = output_change(m, b[0], kCtx,
                                {PerturbationKind::random_sign, 1e-4, 3, PerturbedParameters::weights_and_embeddings});
  CHECK(we.perturbed == w.perturbed + c.vocab * c.d_model);
  CHECK(we.squared > w.squared);
}

TEST_CASE("gradient_norms: fc2 is ||dL/dW2|| alone, ffn is W1 and W2 together") {
  Seq2Seq<PostLN, Cpu> m(small_config(2), 1);
  auto const b = batches(1);
  auto const prof = gradient_norms(m, std::span(b), kCtx);
  m.zero_grad();
  (void)m.train_step(b[0], kCtx);
  std::map<std::string, double> norm;
  for (auto const& p : m.parameters()) {
    double s = 0;
    for (float g : p.param->grad.to_host()) s += static_cast<double>(g) * g;
    norm[p.name] = std::sqrt(s);
  }
  REQUIRE(prof.layers.size() == 4);
  for (auto const& l : prof.layers) {
    auto const pre = fmt::format("{}.layers.{}.", stack_name(l.site.stack), l.site.layer);
    CAPTURE(pre);
    double const w1 = norm.at(pre + "fc1.weight"), w2 = norm.at(pre + "fc2.weight");
    CHECK(l.fc2 == doctest::Approx(w2).epsilon(1e-6));
    CHECK(l.fc1 == doctest::Approx(w1).epsilon(1e-6));
    CHECK(l.ffn == doctest::Approx(std::sqrt(w1 * w1 + w2 * w2)).epsilon(1e-6));
    CHECK(l.fc2 < l.ffn);
  }
  CHECK(last_fc2_grad_norm(prof) == doctest::Approx(norm.at("decoder.layers.1.fc2.weight")).epsilon(1e-6));
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
    if constexpr (Norm::additive_residual)
      for (double c : d.coef_x) CHECK(c == 1.0);
  };
  run(TypeTag<PostLN>{});
  run(TypeTag<PreLN>{});
  run(TypeTag<AdminLN>{});
}

TEST_CASE("layer dependency of every additive policy: c_x is exactly 1 and c_a is std(a)") {
  // x_i = x_(i-1) + a_i for every policy whose trait says so (norm/concept.hpp), whatever it does on its
  // branch: the decomposition is exact by definition, not fitted. Each stack of a Seq2Seq and the stack
  // of a LanguageModel, for every additive policy of the list.
  auto const b = batches(1);
  auto lm_batch = make_lm_batch<Cpu>({{4, 5, 6, 7, 8}, {9, 10}, {11, 12, 4}});
  int additive = 0;
  auto check_exact = [](DependencyMatrix const& d) {
    CHECK(d.reproduction_error < 1e-4);
    REQUIRE(d.coef_x.size() == d.coef_a.size());
    for (std::size_t i = 0; i < d.coef_x.size(); ++i) {
      CHECK(d.coef_x[i] == 1.0);
      CHECK(d.coef_a[i] == d.branch_std[i]);
    }
  };
  for_each_type(NormPolicies{}, [&]<class Norm>(TypeTag<Norm>) {
    if constexpr (Norm::additive_residual) {
      ++additive;
      CAPTURE(Norm::name);
      Seq2Seq<Norm, Cpu> m(small_config(3), 1);
      prepare_for_analysis(m, b[0], kCtx);
      for (StackKind k : {StackKind::encoder, StackKind::decoder}) check_exact(layer_dependency(m, b[0], kCtx, k));
      LanguageModel<Norm, Cpu> lm(small_config(3), 2);
      prepare_for_analysis(lm, lm_batch, kCtx);
      check_exact(layer_dependency(lm, lm_batch, kCtx));
    }
  });
  CHECK(additive > 0);
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
