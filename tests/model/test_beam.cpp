// Incremental decoding (decode/incremental.hpp) and beam search (decode/beam.hpp).
#include <lnformer/lnformer.hpp>

#include "support.hpp"

#include <doctest/doctest.h>
#include <fmt/format.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <limits>
#include <vector>

using namespace lnformer;

namespace {

using Seqs = std::vector<std::vector<std::int32_t>>;

ModelConfig beam_config(std::int64_t vocab = 13) {
  return ModelConfig{.enc_layers = 2, .dec_layers = 2, .d_model = 16, .ffn = 24, .heads = 4, .vocab = vocab,
                     .max_positions = 64, .dropout = 0.2f, .attention_dropout = 0.1f, .activation_dropout = 0.1f};
}

/// Non-trivial policy parameters: AdminLN's w random per channel, ReZero's r away from 0, and the
/// LayerNorm gains and biases away from 1 and 0.
template <class Norm>
void perturb(Seq2Seq<Norm, Cpu>& m, std::uint64_t seed) {
  Rng rng(seed, 99);
  std::int64_t const d = m.config().d_model;
  m.for_each_residual([&](auto& res, auto& /*sub*/, StackKind, int) {
    if constexpr (requires { res.w; }) res.w.value = test::random_tensor<Cpu>(Shape{d}, rng, 0.5f, 2.f);
    if constexpr (requires { res.r; }) res.r.value = test::random_tensor<Cpu>(Shape{1}, rng, 0.3f, 0.9f);
  });
  for (auto& p : m.parameters())
    if (p.name.find("layer_norm") != std::string::npos) {
      bool const gain = p.name.ends_with("weight");
      p.param->value = test::random_tensor<Cpu>(p.param->value.shape(), rng, gain ? 0.7f : -0.2f, gain ? 1.3f : 0.2f);
    }
}

/// Host log-softmax of teacher-forced logits.
double normalized(double log_prob, std::size_t tokens, double alpha) {
  return log_prob / std::pow(static_cast<double>(tokens + 1), alpha);
}

template <class Norm>
double sum_log_prob(Seq2Seq<Norm, Cpu>& m, std::vector<std::int32_t> const& src, std::vector<std::int32_t> const& tgt) {
  auto const lp = sequence_log_probs(m, {src}, {tgt})[0];
  double s = 0;
  for (float x : lp) s += x;
  return s;
}

/// Greedy search with fairseq's rules by re-running the full forward over the prefix (the old way):
/// padding never, EOS not before min_len, EOS forced at max_len.
template <class Norm>
std::vector<std::int32_t> reference_greedy(Seq2Seq<Norm, Cpu>& m, std::vector<std::int32_t> const& src,
                                           std::int64_t max_len, std::int64_t min_len) {
  std::vector<std::int32_t> out;
  for (std::int64_t t = 0; t <= max_len; ++t) {
    auto const b = make_batch<Cpu>({src}, {out});
    (void)m.forward(b, ForwardContext{.training = false});
    auto const logits = detail::view_to_host(m.logits());
    std::int64_t const v = m.config().vocab;
    float best = -std::numeric_limits<float>::infinity();
    std::int32_t arg = -1;
    for (std::int32_t w = 0; w < v; ++w) {
      if (w == 1 || (w == 2 && t < min_len && t < max_len) || (t == max_len && w != 2)) continue;
      float const x = logits[static_cast<std::size_t>(t * v + w)];
      if (x > best) best = x, arg = w;
    }
    if (arg == 2) break;
    out.push_back(arg);
  }
  return out;
}

/// Every output over `tokens` of at most max_len tokens.
Seqs all_outputs(std::vector<std::int32_t> const& tokens, std::size_t max_len) {
  Seqs out{{}};
  std::size_t begin = 0;
  for (std::size_t len = 1; len <= max_len; ++len) {
    std::size_t const end = out.size();
    for (std::size_t i = begin; i < end; ++i)
      for (auto w : tokens) {
        auto s = out[i];
        s.push_back(w);
        out.push_back(std::move(s));
      }
    begin = end;
  }
  return out;
}

}  // namespace

TEST_CASE_TEMPLATE_DEFINE("IncrementalDecoder: step logits equal the full teacher-forced forward", Norm,
                          incremental_equals_full) {
  // The output projection's bias must reach the step logits too: tied with a bias for Post-LN and
  // Admin, untied with a bias for Pre-LN, fairseq's tied head without one for the others.
  auto cfg = beam_config();
  cfg.output_bias = std::same_as<Norm, PostLN> || std::same_as<Norm, PreLN> || std::same_as<Norm, AdminLN>;
  cfg.tie_output = !std::same_as<Norm, PreLN>;
  Seq2Seq<Norm, Cpu> model(cfg, 21);
  perturb(model, 5);
  Seqs const src{{4, 5, 6, 7, 8}, {9, 10}, {11, 4, 12}};
  Seqs const tgt{{5, 6, 7, 8, 9, 10}, {3, 0}, {12, 11, 10, 9}};
  std::int64_t const v = model.config().vocab;

  auto const b = make_batch<Cpu>(src, tgt);
  (void)model.forward(b, ForwardContext{.training = false});
  auto const full = detail::view_to_host(model.logits());
  std::int64_t const tt = b.prev.size(1);

  IncrementalDecoder<Norm, Cpu> dec(model);
  dec.start(src);
  double worst = 0, scale = 0;
  for (std::int64_t t = 0; t < tt; ++t) {
    std::vector<std::int32_t> in;
    for (auto const& y : tgt) in.push_back(t == 0 ? 2 : (t - 1 < static_cast<std::int64_t>(y.size()) ? y[t - 1] : 4));
    auto const step = detail::view_to_host(dec.advance(in));
    for (std::size_t i = 0; i < src.size(); ++i) {
      if (t > static_cast<std::int64_t>(tgt[i].size())) continue;
      for (std::int64_t w = 0; w < v; ++w) {
        float const a = step[static_cast<std::size_t>(static_cast<std::int64_t>(i) * v + w)];
        float const e = full[static_cast<std::size_t>((static_cast<std::int64_t>(i) * tt + t) * v + w)];
        worst = std::max(worst, static_cast<double>(std::abs(a - e)));
        scale = std::max(scale, static_cast<double>(std::abs(e)));
      }
    }
  }
  MESSAGE(fmt::format("{}: max |incremental - full| = {:.2e} (max |logit| {:.2f})", Norm::name, worst, scale));
  CHECK(worst <= 1e-5 * std::max(1.0, scale));

  SUBCASE("after reorder (rows repeated, permuted and dropped) the rows continue their parents") {
    IncrementalDecoder<Norm, Cpu> d2(model);
    d2.start(src);
    std::int64_t const s0 = 2;  // tokens fed before the reorder: EOS and tgt[i][0]
    for (std::int64_t t = 0; t < s0; ++t) {
      std::vector<std::int32_t> in;
      for (auto const& y : tgt) in.push_back(t == 0 ? 2 : y[0]);
      (void)d2.advance(in);
    }
    std::vector<std::int32_t> const parents{2, 0, 0, 2};
    d2.reorder(parents);
    CHECK(d2.sentence_of_rows() == std::vector<std::int32_t>{2, 0, 0, 2});
    Seqs const cont{{4, 5, 6}, {7, 8, 9}, {10, 11, 12}, {3, 3, 0}};
    Seqs fsrc, ftgt;
    for (std::size_t r = 0; r < parents.size(); ++r) {
      auto const p = static_cast<std::size_t>(parents[r]);
      fsrc.push_back(src[p]);
      std::vector<std::int32_t> y{tgt[p][0]};
      y.insert(y.end(), cont[r].begin(), cont[r].end());
      ftgt.push_back(y);
    }
    auto const fb = make_batch<Cpu>(fsrc, ftgt);
    (void)model.forward(fb, ForwardContext{.training = false});
    auto const ffull = detail::view_to_host(model.logits());
    std::int64_t const ftt = fb.prev.size(1);
    double w2 = 0;
    for (std::int64_t t = s0; t < ftt; ++t) {
      std::vector<std::int32_t> in;
      for (auto const& y : ftgt) in.push_back(y[static_cast<std::size_t>(t - 1)]);
      auto const step = detail::view_to_host(d2.advance(in));
      for (std::size_t r = 0; r < parents.size(); ++r)
        for (std::int64_t w = 0; w < v; ++w)
          w2 = std::max(w2, static_cast<double>(std::abs(
                                step[static_cast<std::size_t>(static_cast<std::int64_t>(r) * v + w)] -
                                ffull[static_cast<std::size_t>((static_cast<std::int64_t>(r) * ftt + t) * v + w)])));
      if (t == s0 + 1) {  // drop to one row, then continue it
        d2.reorder(std::vector<std::int32_t>{1});
        auto const last = detail::view_to_host(d2.advance(std::vector<std::int32_t>{ftgt[1][static_cast<std::size_t>(t)]}));
        for (std::int64_t w = 0; w < v; ++w)
          w2 = std::max(w2, static_cast<double>(std::abs(
                                last[static_cast<std::size_t>(w)] -
                                ffull[static_cast<std::size_t>((1 * ftt + t + 1) * v + w)])));
        break;
      }
    }
    CHECK(w2 <= 1e-5 * std::max(1.0, scale));
  }
}
TEST_CASE_TEMPLATE_APPLY(incremental_equals_full, test::TupleOf<NormPolicies>);

TEST_CASE("IncrementalDecoder: bad arguments") {
  Seq2Seq<PreLN, Cpu> model(beam_config(), 3);
  IncrementalDecoder<PreLN, Cpu> dec(model);
  CHECK_THROWS_AS(dec.start({}), ValueError);
  CHECK_THROWS_AS(dec.start({{4, 1}}), Error);  // padding inside a source
  dec.start({{4, 5}, {6}});
  CHECK_THROWS_AS(dec.advance(std::vector<std::int32_t>{2}), ValueError);     // one token for two rows
  CHECK_THROWS_AS(dec.advance(std::vector<std::int32_t>{2, 1}), ValueError);  // padding fed
  CHECK_THROWS_AS(dec.advance(std::vector<std::int32_t>{2, 13}), ValueError);  // outside the vocabulary
  CHECK_THROWS_AS(dec.reorder(std::vector<std::int32_t>{0, 2}), ValueError);
}

TEST_CASE_TEMPLATE("beam size 1 is greedy search", Norm, PreLN, PostLN, AdminLN) {
  for (std::uint64_t seed : {1u, 2u, 3u}) {
    Seq2Seq<Norm, Cpu> model(beam_config(), seed);
    perturb(model, seed);
    Seqs const src{{4, 5, 6, 7}, {8, 9}, {10, 4, 4}, {12}};
    BeamOptions const o{.beam = 1, .length_penalty = 1.0, .max_len_b = 7, .min_len = 1};
    auto const nb = beam_search(model, src, o);
    auto const greedy = greedy_decode(model, src, 7);
    for (std::size_t i = 0; i < src.size(); ++i) {
      CAPTURE(seed);
      CAPTURE(i);
      REQUIRE(nb[i].size() == 1);
      auto const& h = nb[i][0];
      CHECK(h.tokens == reference_greedy(model, src[i], 7, 1));
      // The score is the normalised teacher-forced log-probability, positional scores included.
      auto const lp = sequence_log_probs(model, {src[i]}, {h.tokens})[0];
      REQUIRE(lp.size() == h.positional_scores.size());
      for (std::size_t t = 0; t < lp.size(); ++t) CHECK(h.positional_scores[t] == doctest::Approx(lp[t]).epsilon(1e-4));
      CHECK(h.score == doctest::Approx(normalized(h.log_prob, h.tokens.size(), 1.0)));
      // greedy_decode differs only by its padding rule and min_len 0: compare where neither applies.
      if (!h.tokens.empty() && std::find(greedy[i].begin(), greedy[i].end(), 3) == greedy[i].end() &&
          !greedy[i].empty())
        CHECK(greedy[i] == h.tokens);
    }
  }
}

TEST_CASE("beam search scores at least greedy's, and a large beam finds the exhaustive best") {
  SUBCASE("beam 5 >= beam 1 on random models") {
    // Not a theorem for beam search: the greedy prefix can be pruned, and fairseq's rule ends a
    // sentence once `beam` hypotheses have finished, so with alpha = 1 short finishers can end it
    // before greedy's longer, better-normalised output completes (it happens here: seed 4). Checked
    // where it holds on these models (alpha 0 and 0.6); for alpha = 1 a beam of 50 must do it.
    // Scores are sums of f32 log-probabilities computed in batches of 1, 5 and 50 rows, whose GEMMs
    // round differently (by ISA: AVX2 kernels on AMD EPYC differ from AVX-512 ones), so "at least"
    // allows 1e-5 relative: the same hypothesis found by both may score a few ulps apart.
    auto tol = [](double a) { return 1e-5 * std::max(1.0, std::abs(a)); };
    int compared = 0, better = 0, worse_at_1 = 0;
    for (std::uint64_t seed = 1; seed <= 6; ++seed) {
      Seq2Seq<PostLN, Cpu> model(beam_config(), seed);
      perturb(model, seed);
      Seqs const src{{4, 5, 6, 7}, {8, 9}, {10, 4, 4, 11, 12}};
      for (double alpha : {0.0, 0.6, 1.0}) {
        auto const g = beam_search(model, src, {.beam = 1, .length_penalty = alpha, .max_len_b = 8});
        auto const bs = beam_search(model, src, {.beam = 5, .length_penalty = alpha, .max_len_b = 8});
        auto const wide = beam_search(model, src, {.beam = 50, .length_penalty = alpha, .max_len_b = 8});
        for (std::size_t i = 0; i < src.size(); ++i) {
          CAPTURE(seed);
          CAPTURE(alpha);
          CAPTURE(i);
          if (alpha < 1.0) CHECK(bs[i][0].score >= g[i][0].score - tol(g[i][0].score));
          else worse_at_1 += bs[i][0].score < g[i][0].score - tol(g[i][0].score) ? 1 : 0;
          CHECK(wide[i][0].score >= g[i][0].score - tol(g[i][0].score));
          CHECK(wide[i][0].score >= bs[i][0].score - tol(bs[i][0].score));
          ++compared;
          better += bs[i][0].score > g[i][0].score + tol(g[i][0].score) ? 1 : 0;
        }
      }
    }
    MESSAGE(fmt::format("beam 5 strictly better than greedy in {} of {} cases; worse in {} (alpha = 1, early stop)",
                        better, compared, worse_at_1));
    CHECK(better > 0);
  }
  SUBCASE("exhaustive search over a tiny vocabulary") {
    // vocab: bos 0, pad 1, eos 2, unk 3, and 4, 5: outputs over {0, 3, 4, 5} of at most 3 tokens.
    std::vector<std::int32_t> const toks{0, 3, 4, 5};
    std::size_t const max_len = 3;
    auto const outs = all_outputs(toks, max_len);  // 85
    int strictly_longer = 0;
    for (std::uint64_t seed = 1; seed <= 5; ++seed) {
      Seq2Seq<PreLN, Cpu> model(beam_config(6), seed);
      perturb(model, seed);
      std::vector<std::int32_t> const src{4, 5, 4};
      auto const lps = sequence_log_probs(model, Seqs(outs.size(), src), outs);
      std::size_t len_at[2] = {0, 0};
      for (int ai = 0; ai < 2; ++ai) {
        double const alpha = ai == 0 ? 0.0 : 1.0;
        std::vector<std::pair<double, std::size_t>> ranked;
        for (std::size_t j = 0; j < outs.size(); ++j) {
          double s = 0;
          for (float x : lps[j]) s += x;
          ranked.push_back({normalized(s, outs[j].size(), alpha), j});
        }
        std::stable_sort(ranked.begin(), ranked.end(), [](auto const& a, auto const& b) { return a.first > b.first; });
        auto const nb = beam_search(model, {src},
                                    {.beam = 128, .length_penalty = alpha, .max_len_b = 3, .min_len = 0, .nbest = 10});
        CAPTURE(seed);
        CAPTURE(alpha);
        REQUIRE(nb[0].size() == 10);
        for (std::size_t r = 0; r < 10; ++r) {
          CHECK(nb[0][r].score == doctest::Approx(ranked[r].first).epsilon(1e-5));
          if (r == 0 || ranked[r].first - ranked[r + 1].first > 1e-5) CHECK(nb[0][r].tokens == outs[ranked[r].second]);
        }
        len_at[ai] = nb[0][0].tokens.size();
      }
      // Length normalisation with alpha = 1 never prefers a shorter best output (log p < 0).
      CHECK(len_at[1] >= len_at[0]);
      strictly_longer += len_at[1] > len_at[0] ? 1 : 0;
    }
    CHECK(strictly_longer > 0);
  }
}

TEST_CASE("length penalty: alpha = 1 favours longer outputs than alpha = 0") {
  std::size_t total[2] = {0, 0};
  for (std::uint64_t seed = 1; seed <= 4; ++seed) {
    Seq2Seq<PreLN, Cpu> model(beam_config(), seed);
    perturb(model, seed);
    Seqs const src{{4, 5, 6, 7}, {8, 9}, {10, 4, 4, 11, 12}, {6}};
    for (int ai = 0; ai < 2; ++ai) {
      double const alpha = ai;
      auto const nb = beam_search(model, src, {.beam = 4, .length_penalty = alpha, .max_len_b = 10, .nbest = 4});
      for (auto const& hs : nb) {
        total[ai] += hs[0].tokens.size();
        for (std::size_t r = 0; r < hs.size(); ++r) {
          CHECK(hs[r].score == doctest::Approx(normalized(hs[r].log_prob, hs[r].tokens.size(), alpha)));
          if (r > 0) CHECK(hs[r].score <= hs[r - 1].score);
        }
      }
    }
  }
  MESSAGE(fmt::format("total best-output length: alpha 0: {}, alpha 1: {}", total[0], total[1]));
  CHECK(total[1] > total[0]);
}

TEST_CASE("beam search: max length, batching and bad arguments") {
  // EOS's embedding row (tied with the output projection) zero: its logit is 0, below the best of the
  // other 60 tokens, so outputs run to the maximum length.
  auto c = beam_config(64);
  c.max_positions = 12;
  Seq2Seq<PreLN, Cpu> model(c, 4);
  {
    auto h = model.target_embedding().weight.value.to_host();
    std::fill_n(h.begin() + 2 * c.d_model, c.d_model, 0.f);
    model.target_embedding().weight.value = Tensor<Cpu>(Shape{c.vocab, c.d_model}, std::span<float const>(h));
  }
  Seqs const src{{4, 5, 6, 7, 8, 9}, {8, 9}, {10, 4, 4}, {12, 13, 14, 15, 16, 17, 18, 19}};
  SUBCASE("max length = a * src_len + b, capped by max_positions - 1") {
    BeamOptions const o{.beam = 3, .max_len_a = 0.5, .max_len_b = 2};
    auto const nb = beam_search(model, src, o);
    for (std::size_t i = 0; i < src.size(); ++i) {
      auto const m = static_cast<std::size_t>(std::floor(0.5 * static_cast<double>(src[i].size()))) + 2;
      CHECK(nb[i][0].tokens.size() <= m);
      CHECK(nb[i][0].tokens.size() == m);  // EOS is never likely here
    }
    auto const capped = beam_search(model, src, {.beam = 2, .max_len_b = 100});
    for (auto const& hs : capped) CHECK(hs[0].tokens.size() == 11);
    auto const zero = beam_search(model, src, {.beam = 2, .max_len_b = 0});
    for (auto const& hs : zero) CHECK(hs[0].tokens.empty());
  }
  SUBCASE("batched sentences decode as they do alone") {
    Seq2Seq<PostLN, Cpu> m2(beam_config(), 8);
    Seqs const s2{{4, 5, 6, 7, 8}, {9}, {6, 6}, {10, 11, 12, 4}};
    BeamOptions const o{.beam = 4, .length_penalty = 0.8, .max_len_a = 1.0, .max_len_b = 3, .nbest = 3};
    auto const together = beam_search(m2, s2, o);
    for (std::size_t i = 0; i < s2.size(); ++i) {
      auto const alone = beam_search(m2, {s2[i]}, o)[0];
      REQUIRE(alone.size() == together[i].size());
      for (std::size_t r = 0; r < alone.size(); ++r) {
        CHECK(alone[r].tokens == together[i][r].tokens);
        CHECK(alone[r].score == doctest::Approx(together[i][r].score).epsilon(1e-5));
      }
    }
    auto const best = beam_decode(m2, s2, o);
    for (std::size_t i = 0; i < s2.size(); ++i) CHECK(best[i] == together[i][0].tokens);
  }
  SUBCASE("bad arguments") {
    CHECK(beam_search(model, {}, {}).empty());
    CHECK_THROWS_WITH_AS(beam_search(model, src, {.beam = 0}), doctest::Contains("beam size 0"), ValueError);
    CHECK_THROWS_AS(beam_search(model, src, {.beam = -2}), ValueError);
    CHECK_THROWS_AS(beam_search(model, src, {.beam = 2, .nbest = 3}), ValueError);
    CHECK_THROWS_AS(beam_search(model, src, {.beam = 2, .nbest = 0}), ValueError);
    CHECK_THROWS_WITH_AS(beam_search(model, src, {.max_len_b = -1}), doctest::Contains("b = -1"), ValueError);
    CHECK_THROWS_AS(beam_search(model, src, {.max_len_a = -0.5}), ValueError);
    CHECK_THROWS_AS(beam_search(model, src, {.min_len = -1}), ValueError);
    CHECK_THROWS_AS(beam_search(model, {{4, 1}}, {}), Error);  // padding inside a source
  }
}

namespace {
/// The old greedy_decode: the full decoder over the whole prefix at every step.
std::vector<std::vector<std::int32_t>> recompute_greedy(Seq2Seq<PreLN, Cpu>& model, Seqs const& src,
                                                        std::int64_t max_len) {
  std::size_t const n = src.size();
  Seqs out(n), prefix(n);
  std::vector<bool> done(n, false);
  std::int64_t const v = model.config().vocab;
  for (std::int64_t t = 0; t < max_len; ++t) {
    auto const batch = make_batch<Cpu>(src, prefix);
    (void)model.forward(batch, ForwardContext{.training = false});
    auto const logits = detail::view_to_host(model.logits());
    bool all_done = true;
    for (std::size_t i = 0; i < n; ++i) {
      std::int32_t tok = detail::argmax_row(logits, static_cast<std::int64_t>(i) * (t + 1) + t, v);
      if (!done[i]) {
        if (tok == 2) done[i] = true;
        else out[i].push_back(tok == 1 ? 3 : tok);
      }
      prefix[i].push_back(done[i] ? 2 : out[i].back());
      all_done = all_done && done[i];
    }
    if (all_done) break;
  }
  return out;
}
}  // namespace

TEST_CASE("speed: incremental greedy vs recomputing the prefix (printed, not asserted)") {
  ModelConfig const c{.enc_layers = 6, .dec_layers = 6, .d_model = 64, .ffn = 256, .heads = 4, .vocab = 200,
                      .max_positions = 128, .dropout = 0.1f};
  Seq2Seq<PreLN, Cpu> model(c, 17);
  {  // EOS and padding rows zero: outputs run to the 30-token limit
    auto h = model.target_embedding().weight.value.to_host();
    std::fill_n(h.begin() + 2 * c.d_model, c.d_model, 0.f);
    model.target_embedding().weight.value = Tensor<Cpu>(Shape{c.vocab, c.d_model}, std::span<float const>(h));
  }
  Seqs src;
  Rng rng(3);
  for (int i = 0; i < 8; ++i) {
    std::vector<std::int32_t> s;
    for (int j = 0; j < 20; ++j) s.push_back(4 + static_cast<std::int32_t>(rng.below(196)));
    src.push_back(s);
  }
  auto time = [](auto&& f) {  // best of 3 (the machine may be shared)
    double best = std::numeric_limits<double>::infinity();
    decltype(f()) r;
    for (int rep = 0; rep < 3; ++rep) {
      auto const t0 = std::chrono::steady_clock::now();
      r = f();
      best = std::min(best, std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count());
    }
    return std::pair{r, best};
  };
  (void)greedy_decode(model, src, 30);  // warm-up (primitive caches)
  (void)recompute_greedy(model, src, 30);
  auto const [inc, t_inc] = time([&] { return greedy_decode(model, src, 30); });
  auto const [old, t_old] = time([&] { return recompute_greedy(model, src, 30); });
  auto const [bm, t_beam] = time([&] { return beam_decode(model, src, {.beam = 5, .max_len_b = 30}); });
  std::size_t tokens = 0;
  for (auto const& s : inc) tokens += s.size();
  CHECK(inc == old);
  MESSAGE(fmt::format("6-layer d=64, 8 sentences x {} tokens, best of 3: incremental greedy {:.1f} ms, recompute greedy "
                      "{:.1f} ms ({:.1f}x); beam 5 (incremental) {:.1f} ms",
                      tokens / 8, t_inc, t_old, t_old / t_inc, t_beam));
  (void)bm;
}
