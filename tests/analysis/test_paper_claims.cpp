// The papers' claims at initialisation, at sizes where they are sharp (issue 26): Xiong et al.'s
// Theorem 1 and Figure 3, Liu et al.'s Figure 4 (PAPERS.md sections 3 and 4), measured as the papers
// measure them (analysis/paper_setup.hpp: untied output projection with a bias, plain cross-entropy,
// no dropout, random tokens from a vocabulary of 1,000 with the decoder fed the target), d 64, one model
// per seed and the median over the seeds.
//
// The thresholds come from the spread of each statistic over disjoint seed sets (model seeds 1..S,
// 1001.., 2001.., 3001..: the printed ranges below), so that another seed set cannot cross them, while
// each fails under a defect it exists to catch (tested by hand; see the notes at each check):
//   Theorem 1   Pre-LN slope -0.437 .. -0.454, Post-LN +0.050 .. +0.066 (15 seeds); tying the output
//               projection to the embedding moves them to -0.755 and -0.502.
//   Figure 3    last/first layer, median of the seeds: Post-LN decoder 2.26 .. 2.81, encoder 1.21 .. 1.34;
//               Pre-LN decoder 0.62 .. 0.69, encoder 0.66 .. 0.72 (15 seeds); with a tied output
//               projection Post-LN's decoder reads 0.88.
//   Figure 4    see the test: the growth laws need 42 seeds and N up to 64 at this size.
#include <lnformer/analysis/fit.hpp>
#include <lnformer/analysis/gradients.hpp>
#include <lnformer/analysis/paper_setup.hpp>
#include <lnformer/analysis/perturbation.hpp>
#include <lnformer/analysis/seed_summary.hpp>
#include <lnformer/core/type_list.hpp>
#include <lnformer/norm/policies.hpp>

#include <doctest/doctest.h>
#include <fmt/format.h>
#include <fmt/ranges.h>

#include <cmath>
#include <vector>

using namespace lnformer;

namespace {

PaperSetup const kSetup{.vocab = 1000, .sentences = 16, .length = 32};

ModelConfig paper_config(int layers) {
  return kSetup.config(ModelConfig{.enc_layers = layers, .dec_layers = layers, .d_model = 64, .ffn = 128, .heads = 4});
}

// No dropout in this setup; training mode only matters for Admin's profiling pass.
ForwardContext const kCtx{.training = true, .seed = 17, .pass = 0};

constexpr std::uint64_t kFirstSeed = 1;

/// The measurement batch: 16 x 32 random tokens (one batch; the seeds vary the models).
std::vector<Batch<Cpu>> one_batch() {
  std::vector<Batch<Cpu>> v;
  v.push_back(kSetup.batch<Cpu>(5));
  return v;
}

}  // namespace

TEST_CASE_TEMPLATE("Theorem 1: ||dL/dW2|| of the last layer against depth, slope of the medians of 15 seeds", Norm,
                   PostLN, PreLN) {
  int const seeds = 15;
  auto const bs = one_batch();
  std::vector<int> const depths{3, 6, 12, 24};
  auto const pts = last_fc2_grad_norm_vs_depth<Seq2Seq, Norm>(paper_config(1), depths, std::span(bs), kCtx,
                                                               StackKind::decoder, seeds, kFirstSeed);
  std::vector<double> x, med;
  for (auto const& p : pts) {
    REQUIRE(p.per_seed.size() == static_cast<std::size_t>(seeds));
    x.push_back(p.layers);
    med.push_back(p.summary().median);
  }
  auto const fit = fit_log_log(x, med);
  MESSAGE(fmt::format("{}: median ||dL/dW2_L|| at L = {}: {::.4g}; log-log slope {:+.3f} (R^2 {:.3f})", Norm::name,
                      depths, med, fit.slope, fit.r2));
  if constexpr (std::same_as<Norm, PreLN>) {
    // Theorem 1: L^-1/2. A tied output projection gives -0.755; so does any change that makes the
    // gradient of the last layer depend on the depth through the output layer.
    CHECK(fit.slope >= -0.65);
    CHECK(fit.slope <= -0.35);
    CHECK(fit.r2 >= 0.9);  // a power law, not a slope through scattered points (0.979 .. 0.998)
  } else {
    // Theorem 1: independent of depth. Tied: -0.502.
    CHECK(fit.slope >= -0.15);
    CHECK(fit.slope <= 0.15);
  }
}

TEST_CASE_TEMPLATE("Figure 3: ||dL/dW2|| of the last layer over the first, 6-6 model, median of 15 seeds", Norm,
                   PostLN, PreLN) {
  int const seeds = 15;
  auto const bs = one_batch();
  std::vector<double> enc, dec;  // last/first of each seed's model
  for (int s = 0; s < seeds; ++s) {
    Seq2Seq<Norm, Cpu> m(paper_config(6), kFirstSeed + static_cast<std::uint64_t>(s));
    auto const prof = gradient_norms(m, std::span(bs), kCtx);
    for (StackKind k : {StackKind::encoder, StackKind::decoder}) {
      auto const layers = prof.stack(k);
      REQUIRE(layers.size() == 6);
      (k == StackKind::encoder ? enc : dec).push_back(layers.back().fc2 / layers.front().fc2);
    }
  }
  auto const e = summarize(enc), d = summarize(dec);
  MESSAGE(fmt::format("{}: ||dL/dW2|| last/first layer, median (min .. max) of {} seeds: encoder {:.3f} ({:.3f} .. "
                      "{:.3f}), decoder {:.3f} ({:.3f} .. {:.3f})",
                      Norm::name, seeds, e.median, e.min, e.max, d.median, d.min, d.max));
  if constexpr (std::same_as<Norm, PostLN>) {
    // Grows toward the output, in the decoder by far the most. Tied output projection: decoder 0.88.
    CHECK(d.median >= 1.8);
    CHECK(e.median >= 1.05);
  } else {
    // Pre-LN: no growth toward the output (at this size it falls slightly with the layer index). The
    // encoder's ratio varies more from seed to seed, hence its wider bound.
    CHECK(d.median <= 0.8);
    CHECK(e.median <= 0.85);
  }
}

TEST_CASE("Figure 4: output change against the number of encoder sublayers, medians of 42 seeds") {
  // Random-sign perturbations (1e-4) of the layers' weight matrices, N = 2 .. 64 sublayers spaced by
  // doubling. The growth laws are Liu et al.'s: O(N) for Post-LN, O(log N) for Pre-LN and Admin. At
  // d 64 Pre-LN's and Admin's curves only separate from a line once N reaches 64 (up to N = 32 a line
  // and a logarithm fit their medians equally well), and their separation varies from seed set to
  // seed set, hence 42 seeds; a median of a few seeds is not enough for Post-LN either (its change at
  // N = 64 has a heavy tail: 0.18 .. 13, median 1.05, over 336 seeds).
  int const seeds = 42;
  std::vector<int> const layers{1, 2, 4, 8, 16, 32};
  auto const b = kSetup.batch<Cpu>(9);
  struct Curve {
    std::vector<double> n, median;
    LinearFit lin, log;
  };
  auto measure = [&]<class Norm>(TypeTag<Norm>) {
    // The decoder is not measured (and random signs need no gradient): one decoder layer.
    auto const pts = output_change_vs_depth<Seq2Seq, Norm>(paper_config(1), layers, b, kCtx,
                                                           {.seeds = seeds, .model_seed = kFirstSeed,
                                                            .gradient_sign = false});
    Curve c;
    for (auto const& p : pts) {
      REQUIRE(p.random_per_seed.size() == static_cast<std::size_t>(seeds));
      c.n.push_back(p.sublayers);
      c.median.push_back(p.random_summary().median);
    }
    c.lin = fit_line(c.n, c.median);
    c.log = fit_log_x(c.n, c.median);
    MESSAGE(fmt::format("{}: N = {}: median |F(W) - F(W + delta)|^2 = {::.4g}; linear fit R^2 {:.3f}, log fit R^2 "
                        "{:.3f}",
                        Norm::name, c.n, c.median, c.lin.r2, c.log.r2));
    return c;
  };
  auto const post = measure(TypeTag<PostLN>{});
  auto const pre = measure(TypeTag<PreLN>{});
  auto const admin = measure(TypeTag<AdminLN>{});
  REQUIRE(post.n.back() == 64);
  // Over 8 disjoint sets of 42 seeds: Post-LN linear 0.977 .. 0.999 against log 0.72 .. 0.88; Pre-LN
  // log 0.961 .. 0.990 against linear 0.86 .. 0.93; Admin log 0.959 .. 0.987 against linear
  // 0.84 .. 0.94; Post-LN's median change at N = 64 is 4.7 .. 6.9 times Pre-LN's and Admin's. Over
  // 2,000 random sets of 42 of those 336 seeds, 99.5% keep log minus linear above 0.020 (Pre-LN) and
  // 0.021 (Admin), linear minus log above 0.06 (Post-LN) and the ratios above 4.0. Admin measured
  // without its profiling is Post-LN (w = 1) and fails its checks, as does a policy measured in
  // another's place. Perturbing the embeddings too moves these numbers too little to fail them (the
  // perturbed set is checked in test_analysis).
  CHECK(post.lin.r2 >= 0.9);
  CHECK(post.lin.r2 > post.log.r2);
  for (auto const* c : {&pre, &admin}) {
    CHECK(c->log.r2 >= 0.93);
    CHECK(c->log.r2 > c->lin.r2);
  }
  MESSAGE(fmt::format("at N = 64 Post-LN's median change is {:.2f}x Pre-LN's and {:.2f}x Admin's",
                      post.median.back() / pre.median.back(), post.median.back() / admin.median.back()));
  CHECK(post.median.back() >= 3 * pre.median.back());
  CHECK(post.median.back() >= 3 * admin.median.back());
}
