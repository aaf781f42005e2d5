// Whole-model checks for every normalization policy: finite-difference gradients of a small Seq2Seq
// and LanguageModel for every parameter tensor, AdminLN(w = 1) == PostLN exactly, Admin profiling
// against an independent computation, folding, and parameter names.
#include <lnformer/lnformer.hpp>

#include "support.hpp"

#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <deque>
#include <filesystem>
#include <map>
#include <set>

using namespace lnformer;

namespace {

ModelConfig tiny_config() {
  return ModelConfig{.enc_layers = 2, .dec_layers = 2, .d_model = 8, .ffn = 12, .heads = 2, .vocab = 13,
                     .max_positions = 32, .dropout = 0.f,
                     // GELU: smooth, so finite differences are not spoilt by ReLU kinks (ReLU is checked per op).
                     .activation = ops::Activation::gelu, .label_smoothing = 0.1f};
}

Batch<Cpu> tiny_batch() {
  // Different lengths so that padding, key-padding masks and padded targets are all exercised.
  return make_batch<Cpu>({{4, 5, 6, 7}, {8, 9}, {10, 4, 11}}, {{5, 6}, {7, 8, 9, 10}, {11}});
}

LmBatch<Cpu> tiny_lm_batch() { return make_lm_batch<Cpu>({{4, 5, 6, 7, 8}, {9, 10}, {11, 12, 4}}); }

/// Random non-trivial values for parameters that start at a constant (LayerNorm gains/biases, Admin w,
/// ReZero r), so that the gradient check exercises every path.
template <class Model>
void perturb_constant_parameters(Model& m, Rng& rng) {
  for (auto& p : m.parameters()) {
    if (p.param->decay) continue;  // weights keep their init; biases, gains and scales get noise
    auto h = p.param->value.to_host();
    for (auto& v : h) v += rng.uniform(-0.3f, 0.3f);
    p.param->value = Tensor<Cpu>(p.param->value.shape(), std::span<float const>(h));
  }
}

template <class Model, class BatchT>
void gradient_check_model(Model& m, BatchT const& batch, std::string const& what) {
  ForwardContext const ctx{.training = true, .seed = 7};
  m.zero_grad();
  (void)m.forward(batch, ctx);
  m.backward(1.f);
  auto loss = [&] { return m.forward(batch, ctx).loss; };
  for (auto& p : m.parameters()) {
    Tensor<Cpu> analytic = p.param->grad.clone();
    test::check_gradient(what + " " + p.name, p.param->value, analytic, loss, 1e-2, 3e-2, 2e-3, 24);
  }
}

}  // namespace

TEST_CASE_TEMPLATE_DEFINE("Seq2Seq finite-difference gradients of every parameter", Norm, seq2seq_gradients) {
  Seq2Seq<Norm, Cpu> m(tiny_config(), 3);
  Rng rng(11);
  perturb_constant_parameters(m, rng);
  gradient_check_model(m, tiny_batch(), std::string(Norm::name));
}
TEST_CASE_TEMPLATE_APPLY(seq2seq_gradients, test::TupleOf<NormPolicies>);

TEST_CASE_TEMPLATE_DEFINE("LanguageModel finite-difference gradients of every parameter", Norm, lm_gradients) {
  LanguageModel<Norm, Cpu> m(tiny_config(), 5);
  Rng rng(12);
  perturb_constant_parameters(m, rng);
  gradient_check_model(m, tiny_lm_batch(), std::string(Norm::name) + " lm");
}
TEST_CASE_TEMPLATE_APPLY(lm_gradients, test::TupleOf<NormPolicies>);

TEST_CASE("Seq2Seq with separate embeddings and an untied output projection, with and without a bias") {
  for (bool bias : {false, true}) {
    CAPTURE(bias);
    auto c = tiny_config();
    c.share_embeddings = false;
    c.tie_output = false;
    c.output_bias = bias;
    Seq2Seq<PreLN, Cpu> m(c, 4);
    std::map<std::string, Parameter<Cpu>*> names;
    for (auto& p : m.parameters()) names.emplace(p.name, p.param);
    CHECK(names.count("encoder.embed_tokens.weight") == 1);
    CHECK(names.count("decoder.embed_tokens.weight") == 1);
    CHECK(names.count("decoder.output_projection.weight") == 1);
    CHECK(names.count("decoder.output_projection.bias") == (bias ? 1 : 0));
    if (bias) {
      auto* b = names.at("decoder.output_projection.bias");
      CHECK(b->shape() == Shape{c.vocab});
      CHECK_FALSE(b->decay);  // a bias: no weight decay, not perturbed by the amplification analysis
      // PyTorch's nn.Linear default under the fairseq scheme: U(+-1/sqrt(d)), not all zero.
      auto const h = b->value.to_host();
      double const bound = 1.0 / std::sqrt(static_cast<double>(c.d_model));
      CHECK(std::any_of(h.begin(), h.end(), [](float v) { return v != 0.f; }));
      CHECK(std::all_of(h.begin(), h.end(), [&](float v) { return std::abs(v) <= bound; }));
    }
    Rng rng(6);
    perturb_constant_parameters(m, rng);
    gradient_check_model(m, tiny_batch(), bias ? "pre untied, bias" : "pre untied");
  }
}

TEST_CASE("a tied output projection with a bias: the bias is the head's own parameter") {
  auto c = tiny_config();
  c.output_bias = true;
  Seq2Seq<PostLN, Cpu> m(c, 4);
  std::set<std::string> names;
  for (auto& p : m.parameters()) names.insert(p.name);
  CHECK(names.count("decoder.output_projection.weight") == 0);
  CHECK(names.count("decoder.output_projection.bias") == 1);
  Rng rng(8);
  perturb_constant_parameters(m, rng);
  gradient_check_model(m, tiny_batch(), "post tied, bias");
  c.init = InitScheme::xavier_normal;  // every bias of that scheme starts at 0
  LanguageModel<PreLN, Cpu> lm(c, 5);
  int found = 0;
  for (auto& p : lm.parameters())
    if (p.name == "decoder.output_projection.bias") {
      ++found;
      auto const h = p.param->value.to_host();
      CHECK(std::all_of(h.begin(), h.end(), [](float v) { return v == 0.f; }));
    }
  CHECK(found == 1);
  perturb_constant_parameters(lm, rng);
  gradient_check_model(lm, tiny_lm_batch(), "pre lm tied, bias");
}

namespace {

/// Records what a backward pass reports, with each gradient as it was when reported.
struct RecordingHook final : GradientReadyHook<Cpu> {
  std::vector<std::string> groups;  // the first name of each group, in order
  std::map<std::string, std::vector<float>> seen;
  std::map<std::string, int> times;
  void ready(ParameterList<Cpu> const& group) override {
    groups.push_back(group.front().name);
    for (auto const& p : group) {
      seen[p.name] = p.param->grad.to_host();
      ++times[p.name];
    }
  }
};

/// Every parameter except the embeddings and the output projection is reported exactly once, and
/// when it is its gradient is already the final one (bit for bit): a report made too early would
/// let data-parallel training sum a gradient that later layers still add to.
template <class Model, class BatchT>
void check_gradient_reports(Model& m, BatchT const& batch, std::vector<std::string> const& expected_order) {
  RecordingHook hook;
  m.zero_grad();
  auto const s = m.forward(batch, ForwardContext{.training = true, .seed = 3});
  m.backward(1.f / static_cast<float>(s.tokens), &hook);
  for (auto const& p : m.parameters()) {
    bool const late = p.name.find("embed_tokens") != std::string::npos ||
                      p.name.find("output_projection") != std::string::npos;
    CAPTURE(p.name);
    CHECK(hook.times[p.name] == (late ? 0 : 1));
    if (!late) CHECK(hook.seen[p.name] == p.param->grad.to_host());
  }
  REQUIRE(hook.groups.size() == expected_order.size());
  for (std::size_t i = 0; i < expected_order.size(); ++i) CHECK(hook.groups[i].starts_with(expected_order[i]));
  // Without a hook the same gradients result.
  std::map<std::string, std::vector<float>> with_hook;
  for (auto const& p : m.parameters()) with_hook[p.name] = p.param->grad.to_host();
  m.zero_grad();
  (void)m.forward(batch, ForwardContext{.training = true, .seed = 3});
  m.backward(1.f / static_cast<float>(s.tokens));
  for (auto const& p : m.parameters()) CHECK(with_hook[p.name] == p.param->grad.to_host());
}

}  // namespace

TEST_CASE_TEMPLATE_DEFINE("backward reports each layer's parameters once their gradients are final", Norm,
                          gradient_ready_order) {
  bool const final_norm = std::is_same_v<typename Norm::template Final<Cpu>, LayerNorm<Cpu>>;  // PreLN
  std::vector<std::string> order;
  if (final_norm) order.push_back("decoder.layer_norm");
  order.insert(order.end(), {"decoder.layers.1.", "decoder.layers.0."});
  if (final_norm) order.push_back("encoder.layer_norm");
  order.insert(order.end(), {"encoder.layers.1.", "encoder.layers.0."});
  auto c = tiny_config();
  c.dropout = 0.1f;
  Seq2Seq<Norm, Cpu> m(c, 3);
  check_gradient_reports(m, tiny_batch(), order);
  c.share_embeddings = false;
  c.tie_output = false;
  c.output_bias = true;  // the bias, like the untied weight, collects gradient until the very end
  Seq2Seq<Norm, Cpu> untied(c, 4);
  check_gradient_reports(untied, tiny_batch(), order);

  std::vector<std::string> lm_order;
  if (final_norm) lm_order.push_back("decoder.layer_norm");
  lm_order.insert(lm_order.end(), {"decoder.layers.1.", "decoder.layers.0."});
  LanguageModel<Norm, Cpu> lm(c, 5);
  check_gradient_reports(lm, tiny_lm_batch(), lm_order);
}
TEST_CASE_TEMPLATE_APPLY(gradient_ready_order, test::TupleOf<NormPolicies>);

TEST_CASE("parameter names follow fairseq") {
  Seq2Seq<PreLN, Cpu> pre(tiny_config(), 1);
  Seq2Seq<AdminLN, Cpu> admin(tiny_config(), 1);
  std::map<std::string, Shape> names;
  for (auto& p : pre.parameters()) names.emplace(p.name, p.param->shape());
  for (char const* n : {"encoder.embed_tokens.weight", "encoder.layers.0.self_attn.q_proj.weight",
                        "encoder.layers.0.self_attn.out_proj.bias", "encoder.layers.1.self_attn_layer_norm.weight",
                        "encoder.layers.1.fc1.weight", "encoder.layers.1.fc2.bias",
                        "encoder.layers.0.final_layer_norm.bias", "encoder.layer_norm.weight",
                        "decoder.layers.1.encoder_attn.k_proj.weight", "decoder.layers.0.encoder_attn_layer_norm.bias",
                        "decoder.layer_norm.bias"})
    CHECK_MESSAGE(names.count(n) == 1, n);
  CHECK(names.at("encoder.layers.1.fc1.weight") == Shape{12, 8});
  CHECK(names.count("decoder.output_projection.weight") == 0);  // tied
  std::set<std::string> admin_names;
  for (auto& p : admin.parameters()) admin_names.insert(p.name);
  CHECK(admin_names.count("encoder.layer_norm.weight") == 0);  // no final LN for Admin
  CHECK(admin_names.count("encoder.layers.0.self_attn_admin_w") == 0);  // first w is frozen at 1
  CHECK(admin_names.count("encoder.layers.0.ffn_admin_w") == 1);
  CHECK(admin_names.count("decoder.layers.1.encoder_attn_admin_w") == 1);
  // Every name is unique.
  auto const list = admin.parameters();
  CHECK(admin_names.size() == list.size());
}

TEST_CASE("AdminLN with every w = 1 equals PostLN exactly") {
  auto c = tiny_config();
  c.dropout = 0.2f;
  Seq2Seq<PostLN, Cpu> post(c, 9);
  Seq2Seq<AdminLN, Cpu> admin(c, 9);
  auto const batch = tiny_batch();
  ForwardContext const ctx{.training = true, .seed = 3, .pass = 1};
  auto const a = post.forward(batch, ctx);
  auto const b = admin.forward(batch, ctx);
  CHECK(a.loss == b.loss);
  auto const la = test::gather(post.logits()), lb = test::gather(admin.logits());
  CHECK(la == lb);
}

TEST_CASE("Admin profile equals an independent computation on the same batch") {
  auto c = tiny_config();
  c.dropout = 0.1f;
  Seq2Seq<AdminLN, Cpu> m(c, 21);
  auto const batch = tiny_batch();
  ForwardContext const ctx{.training = true, .seed = 5, .pass = 2};
  auto const prof = admin_profile(m, batch, ctx);
  REQUIRE(prof.encoder.size() == 4);
  REQUIRE(prof.decoder.size() == 6);
  CHECK(prof.encoder[0] == 1.0);
  CHECK(prof.decoder[0] == 1.0);

  // Independently: walk the sublayers with every w = the running value, computing the variances in
  // double here, from the same pieces (same dropout sites, so the same masks).
  Seq2Seq<AdminLN, Cpu> fresh(c, 21);
  auto var = [](CView<Cpu> v) {
    auto const h = test::gather(v);
    double s = 0, s2 = 0;
    for (float x : h) s += x;
    double const mu = s / static_cast<double>(h.size());
    for (float x : h) s2 += (x - mu) * (x - mu);
    return s2 / static_cast<double>(h.size());
  };
  std::deque<Tensor<Cpu>> keep;  // residual sums, alive until the end of the walk
  auto step = [&](auto& res, auto& sub, CView<Cpu> x, double& r, std::vector<double>& out) -> CView<Cpu> {
    auto h = res.branch_output(x, sub, ctx);
    double const w = r;
    out.push_back(w);
    r = std::sqrt(w * w * var(x) + var(h));
    Tensor<Cpu> s(x.shape());
    auto const hx = test::gather(x), hh = test::gather(h);
    for (std::int64_t i = 0; i < x.numel(); ++i) s.data()[i] = static_cast<float>(w) * hx[i] + hh[i];
    keep.push_back(std::move(s));
    return res.ln.forward(keep.back());
  };
  std::vector<double> enc, dec;
  double r = 1.0;
  auto& E = fresh.encoder;
  Tensor<Cpu> x0(Shape{batch.src.size(0), batch.src.size(1), c.d_model});
  fresh.source_embedding().forward(x0, batch.src, batch.src_pos);
  CView<Cpu> x = x0;
  {
    Dropout<Cpu> d(c.dropout, "encoder.dropout_input");
    x = d.forward(x, ctx);
    for (auto& l : E.layers) {
      detail::SelfAttentionSublayer<Cpu> sa{&l.self_attn, batch.src_mask};
      detail::FeedForwardSublayer<Cpu> ff{&l.ffn};
      x = step(l.attn_res, sa, x, r, enc);
      x = step(l.ffn_res, ff, x, r, enc);
    }
  }
  CView<Cpu> mem = x;
  r = 1.0;
  Tensor<Cpu> y0(Shape{batch.prev.size(0), batch.prev.size(1), c.d_model});
  fresh.target_embedding().forward(y0, batch.prev, batch.prev_pos);
  Dropout<Cpu> d(c.dropout, "decoder.dropout_input");
  CView<Cpu> y = d.forward(y0, ctx);
  auto causal = fresh.decoder.causal_mask(batch.prev.size(1));
  for (auto& l : fresh.decoder.layers) {
    detail::SelfAttentionSublayer<Cpu> sa{&l.self_attn, causal};
    detail::CrossAttentionSublayer<Cpu> ca{&l.encoder_attn, mem, batch.src_mask};
    detail::FeedForwardSublayer<Cpu> ff{&l.ffn};
    y = step(l.self_res, sa, y, r, dec);
    y = step(l.cross_res, ca, y, r, dec);
    y = step(l.ffn_res, ff, y, r, dec);
  }
  REQUIRE(enc.size() == prof.encoder.size());
  REQUIRE(dec.size() == prof.decoder.size());
  for (std::size_t i = 0; i < enc.size(); ++i) CHECK(prof.encoder[i] == doctest::Approx(enc[i]).epsilon(1e-6));
  for (std::size_t i = 0; i < dec.size(); ++i) CHECK(prof.decoder[i] == doctest::Approx(dec[i]).epsilon(1e-6));
  // The running value grows: later sublayers get larger w.
  CHECK(prof.encoder.back() > 1.5);
  CHECK(prof.decoder.back() > prof.decoder[1]);
  // The model now holds the profiled values.
  int i = 0;
  m.for_each_residual([&](auto& res, auto&, StackKind k, int j) {
    double const want = (k == StackKind::encoder ? prof.encoder : prof.decoder)[static_cast<std::size_t>(j)];
    CHECK(res.w.value.to_host()[0] == doctest::Approx(want).epsilon(1e-6));
    ++i;
  });
  CHECK(i == 10);
}

TEST_CASE("Admin profile saves, loads and applies; closed forms") {
  Seq2Seq<AdminLN, Cpu> m(tiny_config(), 2);
  auto const prof = admin_profile(m, tiny_batch(), ForwardContext{.seed = 1});
  auto const path = (std::filesystem::temp_directory_path() / "lnf_admin_profile.json").string();
  save_admin_profile(path, prof);
  auto const back = load_admin_profile(path);
  REQUIRE(back.encoder.size() == prof.encoder.size());
  for (std::size_t i = 0; i < back.encoder.size(); ++i) CHECK(back.encoder[i] == doctest::Approx(prof.encoder[i]));
  Seq2Seq<AdminLN, Cpu> other(tiny_config(), 2);
  apply_admin_profile(other, back);
  auto const b = tiny_batch();
  CHECK(other.forward(b, {.training = false}).loss == doctest::Approx(m.forward(b, {.training = false}).loss).epsilon(1e-6));
  CHECK_THROWS_AS(apply_admin_profile(other, AdminProfile{{1.0}, {1.0}}), ValueError);
  CHECK_THROWS_AS(load_admin_profile(path + ".missing"), IoError);

  auto const cf = admin_closed_form_init(other, AdminOrder::log_n);
  CHECK(cf.encoder[0] == 1.0);
  CHECK(cf.encoder[1] == doctest::Approx(std::sqrt(5.0 / std::log(5.0) - 1)));
  CHECK(admin_closed_form(4, AdminOrder::constant) == doctest::Approx(2.0));
  CHECK(admin_closed_form(4, AdminOrder::linear) == 1.0);
  std::filesystem::remove(path);
}

TEST_CASE("folding Admin's w gives a PostLN model with the same outputs") {
  auto c = tiny_config();
  Seq2Seq<AdminLN, Cpu> m(c, 8);
  (void)admin_profile(m, tiny_batch(), ForwardContext{.seed = 1});
  // Make w per-channel and far from the profile, as after training.
  Rng rng(4);
  m.for_each_residual([&](auto& res, auto&, StackKind, int) {
    if (!res.w_trainable) return;
    auto h = res.w.value.to_host();
    for (auto& v : h) v *= rng.uniform(0.5f, 2.f);
    res.w.value = Tensor<Cpu>(res.w.value.shape(), std::span<float const>(h));
  });
  auto folded = fold_admin(m);
  auto const b = tiny_batch();
  ForwardContext const eval{.training = false};
  auto const la = m.forward(b, eval).loss;
  auto const lb = folded->forward(b, eval).loss;
  CHECK(lb == doctest::Approx(la).epsilon(1e-5));
  test::check_close(folded->logits(), m.logits(), 1e-4, 1e-4, "folded logits");

  LanguageModel<AdminLN, Cpu> lm(c, 3);
  (void)admin_profile(lm, tiny_lm_batch(), ForwardContext{.seed = 2});
  auto lm_folded = fold_admin(lm);
  auto const lb2 = tiny_lm_batch();
  CHECK(lm_folded->forward(lb2, eval).loss == doctest::Approx(lm.forward(lb2, eval).loss).epsilon(1e-5));
}

TEST_CASE("DeepNorm constants and ReZero start") {
  auto const k = DeepNorm::constants(6, 6, StackKind::encoder);
  CHECK(k.alpha == doctest::Approx(0.81 * std::pow(6.0 * 6 * 6 * 6 * 6, 1.0 / 16)));
  CHECK(DeepNorm::constants(0, 12, StackKind::decoder).alpha == doctest::Approx(std::pow(24.0, 0.25)));
  CHECK(DeepNorm::constants(6, 6, StackKind::decoder).beta == doctest::Approx(std::pow(72.0, -0.25)));
  Seq2Seq<DeepNorm, Cpu> dn(tiny_config(), 1);
  int seen = 0;
  dn.for_each_residual([&](auto& res, auto&, StackKind kind, int) {
    CHECK(res.alpha == doctest::Approx(DeepNorm::constants(2, 2, kind).alpha));
    ++seen;
  });
  CHECK(seen == 10);
  // ReZero starts as the identity on the residual stream: r = 0 everywhere.
  Seq2Seq<ReZero, Cpu> rz(tiny_config(), 1);
  for (auto& p : rz.parameters())
    if (p.name.ends_with("_resweight")) CHECK(p.param->value.to_host()[0] == 0.f);
}

TEST_CASE("bad configurations and inputs are clear errors") {
  auto c = tiny_config();
  c.heads = 3;
  CHECK_THROWS_WITH_AS((Seq2Seq<PreLN, Cpu>(c, 1)), doctest::Contains("divisible by heads 3"), ValueError);
  c = tiny_config();
  c.dropout = 1.f;
  CHECK_THROWS_AS((Seq2Seq<PreLN, Cpu>(c, 1)), ValueError);
  Seq2Seq<PreLN, Cpu> m(tiny_config(), 1);
  auto bad = make_batch<Cpu>({{4, 40}}, {{5}});  // 40 is outside the vocabulary of 13
  CHECK_THROWS_AS((void)m.forward(bad, {}), ValueError);
  CHECK_THROWS_WITH_AS((make_batch<Cpu>({{4, 1}}, {{5}})), doctest::Contains("padding id 1"), ValueError);
  std::vector<std::int32_t> longer(40, 5);
  auto too_long = make_batch<Cpu>({longer}, {{5}});
  CHECK_THROWS_WITH_AS((void)m.forward(too_long, {}), doctest::Contains("exceeds max_positions 32"), ValueError);
}

TEST_CASE("model parameters save to and load from safetensors, with clear errors") {
  auto const dir = std::filesystem::temp_directory_path() / "lnf_model_io";
  std::filesystem::create_directories(dir);
  auto const path = (dir / "pre.safetensors").string();
  Seq2Seq<PreLN, Cpu> a(tiny_config(), 1);
  io::save_parameters(path, a.parameters(), {{"norm", "pre"}});
  Seq2Seq<PreLN, Cpu> b(tiny_config(), 2);
  auto const batch = tiny_batch();
  ForwardContext const eval{.training = false};
  CHECK(a.forward(batch, eval).loss != b.forward(batch, eval).loss);
  io::load_parameters(path, b.parameters());
  CHECK(a.forward(batch, eval).loss == b.forward(batch, eval).loss);
  CHECK(io::SafetensorsFile::open(path).metadata().at("norm") == "pre");

  // A PostLN model lacks the final LayerNorms: the file has extra tensors.
  Seq2Seq<PostLN, Cpu> post(tiny_config(), 1);
  CHECK_THROWS_WITH_AS(io::load_parameters(path, post.parameters()),
                       doctest::Contains("encoder.layer_norm.weight"), IoError);
  io::load_parameters(path, post.parameters(), {.allow_extra = true});
  // An Admin model needs its w: missing parameters are named.
  Seq2Seq<AdminLN, Cpu> admin(tiny_config(), 1);
  CHECK_THROWS_WITH_AS(io::load_parameters(path, admin.parameters(), {.allow_extra = true}),
                       doctest::Contains("ffn_admin_w"), IoError);
  // Another size: shapes are named.
  auto wide = tiny_config();
  wide.ffn = 16;
  Seq2Seq<PreLN, Cpu> w(wide, 1);
  CHECK_THROWS_WITH_AS(io::load_parameters(path, w.parameters()),
                       doctest::Contains("encoder.layers.0.fc1.weight is F32 [12, 8] in the file but F32 [16, 8]"),
                       IoError);
  std::filesystem::remove_all(dir);
}

TEST_CASE("runtime policy names become types once, with a clear error for unknown names") {
  std::string seen;
  dispatch(NormPolicies{}, "admin", [&](auto tag) { seen = decltype(tag)::type::name; }, "normalization policy");
  CHECK(seen == "admin");
  auto const n = dispatch(NormPolicies{}, "pre", [&](auto tag) {
    Seq2Seq<typename decltype(tag)::type, Cpu> m(tiny_config(), 1);
    return m.parameters().size();
  });
  CHECK(n > 0);
  // The message lists every policy of the list, by name, and nothing else.
  std::string valid;
  std::size_t count = 0;
  for_each_type(NormPolicies{}, [&](auto tag) {
    valid += (valid.empty() ? "" : ", ") + std::string(decltype(tag)::type::name);
    ++count;
  });
  CHECK(count == NormPolicies::size);
  std::string const expected = fmt::format("unknown normalization policy 'mid'; valid: {}", valid);
  CHECK_THROWS_WITH_AS(dispatch(NormPolicies{}, "mid", [](auto) {}, "normalization policy"),
                       doctest::Contains(expected.c_str()), ValueError);
}
