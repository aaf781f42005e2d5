// Layer-level checks for every layer in nn/ and the residual of every policy in norm/: central
// finite-difference gradients of each input and of every parameter the layer collects, the backward
// contract (input gradients ASSIGNED, parameter gradients ACCUMULATED), fairseq parameter names, and
// shape errors that name the shapes.
//
// The loss is sum(w * y) with a random w, in double. Sizes are small and odd; tolerances are tight
// enough that a gradient off by a factor of two fails (every checked gradient is also required to be
// well above atol, so a check cannot pass vacuously). Functions that are linear in the perturbed
// tensor (Linear, Embedding, Dropout) use a large step: central differences are exact for them.
#include <lnformer/lnformer.hpp>

#include "support.hpp"

#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <functional>
#include <limits>
#include <set>
#include <span>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

using namespace lnformer;
using test::check_close;
using test::check_gradient;
using test::random_tensor;
using test::weighted_sum;

namespace {

constexpr float kInf = std::numeric_limits<float>::infinity();

/// Step and tolerances of one finite-difference check.
struct Tol {
  double h = 1e-2, rtol = 1e-2, atol = 1e-3;
};
/// For functions linear in each perturbed element: exact central differences, float rounding only.
constexpr Tol kLinearTol{0.25, 1e-3, 1e-4};

Tensor<Cpu> copy_of(CView<Cpu> v) {
  auto const h = test::gather(v);
  return Tensor<Cpu>(v.shape(), std::span<float const>(h));
}

Tensor<Cpu> scaled(Tensor<Cpu> const& t, float s) {
  auto h = t.to_host();
  for (auto& v : h) v *= s;
  return Tensor<Cpu>(t.shape(), std::span<float const>(h));
}

double max_abs(Tensor<Cpu> const& t) {
  double m = 0;
  for (float v : t.to_host()) m = std::max(m, static_cast<double>(std::abs(v)));
  return m;
}

void randomize(Parameter<Cpu>& p, Rng& rng, float lo, float hi) {
  p.value = random_tensor<Cpu>(p.value.shape(), rng, lo, hi);
}

std::set<std::string> names_of(ParameterList<Cpu> const& list) {
  std::set<std::string> s;
  for (auto const& p : list) s.insert(p.name);
  CHECK_MESSAGE(s.size() == list.size(), "parameter names are not unique");
  return s;
}

/// `f()` throws ShapeError whose message contains every one of `needles`.
template <class F>
void check_shape_error(std::string const& what, F&& f, std::vector<std::string> const& needles) {
  try {
    f();
    FAIL_CHECK(what, ": no exception");
  } catch (ShapeError const& e) {
    std::string const msg = e.what();
    for (auto const& n : needles)
      CHECK_MESSAGE(msg.find(n) != std::string::npos, what, ": '", msg, "' lacks '", n, "'");
  }
}

struct Input {
  std::string name;
  Tensor<Cpu>* x;
};

/// The whole gradient check of one layer. `forward()` runs the layer on the current contents of the
/// inputs and parameters and returns its output; `backward(dy)` returns the gradients of `inputs`, in
/// order. Checks:
///   - every input gradient and every parameter gradient against central finite differences;
///   - each of them is well above atol (the check can fail on a wrong factor), except those named in
///     `zero`, which must be zero (e.g. k_proj.bias: softmax ignores a shift common to a row of scores);
///   - a second forward + backward gives the same input gradients (assigned) and twice the parameter
///     gradients (accumulated).
template <class Fwd, class Bwd>
void check_layer_gradients(std::string const& what, std::vector<Input> const& inputs, ParameterList<Cpu> const& params,
                           Fwd&& forward, Bwd&& backward, Rng& rng, Tol tol, std::set<std::string> const& zero = {}) {
  for (auto const& p : params) p.param->grad.zero();
  Shape const out_shape = forward().shape();
  auto const w = random_tensor<Cpu>(out_shape, rng);
  std::vector<Tensor<Cpu>> dx;
  for (auto v : backward(w.cview())) dx.push_back(copy_of(v));
  REQUIRE(dx.size() == inputs.size());
  std::vector<Tensor<Cpu>> dp;
  for (auto const& p : params) dp.push_back(p.param->grad.clone());

  auto loss = [&] { return weighted_sum<Cpu>(forward(), w.cview()); };
  for (std::size_t i = 0; i < inputs.size(); ++i) {
    CHECK_MESSAGE(max_abs(dx[i]) > 30 * tol.atol, what, ": gradient of input ", inputs[i].name, " is ~0");
    check_gradient(what + ": input " + inputs[i].name, *inputs[i].x, dx[i], loss, tol.h, tol.rtol, tol.atol);
  }
  for (std::size_t j = 0; j < params.size(); ++j) {
    if (zero.count(params[j].name) != 0)
      CHECK_MESSAGE(max_abs(dp[j]) < 1e-5, what, ": gradient of ", params[j].name, " should be 0");
    else
      CHECK_MESSAGE(max_abs(dp[j]) > 30 * tol.atol, what, ": gradient of ", params[j].name, " is ~0");
    check_gradient(what + ": " + params[j].name, params[j].param->value, dp[j], loss, tol.h, tol.rtol, tol.atol);
  }

  (void)forward();
  auto const again = backward(w.cview());
  for (std::size_t i = 0; i < inputs.size(); ++i)
    check_close(again[i], dx[i].cview(), 1e-6, 1e-7,
                what + ": input gradient " + inputs[i].name + " after a second backward (assigned)");
  for (std::size_t j = 0; j < params.size(); ++j)
    check_close(params[j].param->grad, scaled(dp[j], 2.f), 1e-5, 1e-7,
                what + ": " + params[j].name + " after a second backward (accumulated)");
}

/// LayerNorm over the last dim in double (eps 1e-5), for forward reference values.
std::vector<double> layer_norm_ref(std::vector<double> const& s, std::int64_t d, std::vector<float> const& gamma,
                                   std::vector<float> const& beta) {
  std::vector<double> y(s.size());
  for (std::size_t r = 0; r < s.size() / static_cast<std::size_t>(d); ++r) {
    double mean = 0, var = 0;
    for (std::int64_t j = 0; j < d; ++j) mean += s[r * d + j];
    mean /= static_cast<double>(d);
    for (std::int64_t j = 0; j < d; ++j) var += (s[r * d + j] - mean) * (s[r * d + j] - mean);
    var /= static_cast<double>(d);
    for (std::int64_t j = 0; j < d; ++j)
      y[r * d + j] = (s[r * d + j] - mean) / std::sqrt(var + 1e-5) * gamma[j] + beta[j];
  }
  return y;
}

Tensor<Cpu> to_tensor(Shape s, std::vector<double> const& v) {
  std::vector<float> f(v.begin(), v.end());
  return Tensor<Cpu>(s, std::span<float const>(f));
}

/// Additive key-padding mask [N, 1, 1, T]: -inf at key positions >= lengths[n].
Tensor<Cpu> key_padding_mask(std::vector<std::int64_t> const& lengths, std::int64_t t) {
  std::int64_t const n = static_cast<std::int64_t>(lengths.size());
  std::vector<float> m(static_cast<std::size_t>(n * t), 0.f);
  for (std::int64_t b = 0; b < n; ++b)
    for (std::int64_t j = lengths[b]; j < t; ++j) m[b * t + j] = -kInf;
  return Tensor<Cpu>(Shape{n, 1, 1, t}, std::span<float const>(m));
}

Tensor<Cpu> causal_mask(std::int64_t t) {
  std::vector<float> m(static_cast<std::size_t>(t * t), 0.f);
  for (std::int64_t i = 0; i < t; ++i)
    for (std::int64_t j = i + 1; j < t; ++j) m[i * t + j] = -kInf;
  return Tensor<Cpu>(Shape{t, t}, std::span<float const>(m));
}

}  // namespace

// --- Linear ----------------------------------------------------------------------------------------

TEST_CASE("Linear: gradients of x, weight and bias (rank-3 input), with and without bias") {
  std::int64_t const in = 9, out = 7;
  for (bool with_bias : {true, false}) {
    CAPTURE(with_bias);
    Rng rng(with_bias ? 1 : 2);
    Linear<Cpu> lin(in, out, with_bias);
    CHECK(lin.in_features() == in);
    CHECK(lin.out_features() == out);
    ParameterList<Cpu> params;
    lin.collect("decoder.output_projection", params);
    if (with_bias) {
      CHECK(names_of(params) ==
            std::set<std::string>{"decoder.output_projection.weight", "decoder.output_projection.bias"});
      CHECK(lin.bias.shape() == Shape{out});
      CHECK_FALSE(lin.bias.decay);
    } else {
      CHECK(names_of(params) == std::set<std::string>{"decoder.output_projection.weight"});
      CHECK(lin.bias.value.numel() == 0);
    }
    CHECK(lin.weight.shape() == Shape{out, in});
    CHECK(lin.weight.decay);
    for (auto& p : params) randomize(*p.param, rng, -0.6f, 0.6f);
    auto x = random_tensor<Cpu>(Shape{2, 3, in}, rng);
    check_layer_gradients(
        with_bias ? "Linear" : "Linear (no bias)", {{"x", &x}}, params, [&] { return lin.forward(x); },
        [&](CView<Cpu> dy) { return std::vector<CView<Cpu>>{lin.backward(dy)}; }, rng, kLinearTol);
    // backward_params_only accumulates the same parameter gradients.
    for (auto& p : params) p.param->grad.zero();
    (void)lin.forward(x);
    auto const dy = random_tensor<Cpu>(Shape{2, 3, out}, rng);
    (void)lin.backward(dy);
    auto const dw = lin.weight.grad.clone();
    lin.backward_params_only(dy);
    check_close(lin.weight.grad, scaled(dw, 2.f), 1e-5, 1e-7, "backward_params_only accumulates dW");
  }
}

TEST_CASE("Linear: shape errors name the shapes") {
  Linear<Cpu> lin(9, 7);
  Tensor<Cpu> bad(Shape{2, 3, 8});
  check_shape_error("forward", [&] { (void)lin.forward(bad); }, {"x has shape [2, 3, 8]", "w has shape [7, 9]"});
  Tensor<Cpu> x(Shape{2, 3, 9});
  (void)lin.forward(x);
  Tensor<Cpu> bad_dy(Shape{2, 3, 6});
  check_shape_error("backward", [&] { (void)lin.backward(bad_dy); }, {"dy has shape [2, 3, 6]", "[2, 3, 7]"});
}

TEST_CASE("StackedLinear: gradients of x and every layer's parameters; the same as the layers run apart") {
  std::int64_t const in = 8, outs[3] = {5, 7, 4};
  for (bool with_bias : {true, false}) {
    CAPTURE(with_bias);
    Rng rng(with_bias ? 11 : 12);
    Linear<Cpu> a(in, outs[0], with_bias), b(in, outs[1], with_bias), c(in, outs[2], with_bias);
    ParameterList<Cpu> params;
    a.collect("a", params);
    b.collect("b", params);
    c.collect("c", params);
    for (auto& p : params) randomize(*p.param, rng, -0.6f, 0.6f);
    auto x = random_tensor<Cpu>(Shape{2, 3, in}, rng);
    StackedLinear<Cpu> stacked;
    check_layer_gradients(
        with_bias ? "StackedLinear" : "StackedLinear (no bias)", {{"x", &x}}, params,
        [&] { return stacked.forward({&a, &b, &c}, x); },
        [&](CView<Cpu> dy) { return std::vector<CView<Cpu>>{stacked.backward(dy)}; }, rng, kLinearTol);

    // Against the layers one by one: outputs side by side, d x summed, each layer's gradients its own.
    for (auto& p : params) p.param->grad.zero();
    auto const y = copy_of(stacked.forward({&a, &b, &c}, x));
    auto const dy = random_tensor<Cpu>(y.shape(), rng);
    auto const dx = copy_of(stacked.backward(dy));
    std::vector<Tensor<Cpu>> stacked_grads;
    for (auto& p : params) stacked_grads.push_back(p.param->grad.clone()), p.param->grad.zero();
    Tensor<Cpu> dx_apart(x.shape());
    std::int64_t col = 0;
    for (Linear<Cpu>* l : {&a, &b, &c}) {
      std::int64_t const o = l->out_features();
      auto const y_l = copy_of(l->forward(x));
      Tensor<Cpu> dy_l(y_l.shape());
      for (std::int64_t r = 0; r < 6; ++r)
        for (std::int64_t j = 0; j < o; ++j) {
          CHECK(y.data()[r * 16 + col + j] == doctest::Approx(y_l.data()[r * o + j]).epsilon(1e-5));
          dy_l.data()[r * o + j] = dy.data()[r * 16 + col + j];
        }
      auto const dx_l = l->backward(dy_l);
      for (std::int64_t i = 0; i < dx_apart.numel(); ++i) dx_apart.data()[i] += dx_l.data()[i];
      col += o;
    }
    check_close(dx, dx_apart, 1e-5, 1e-6, "d x is the sum over the layers");
    for (std::size_t j = 0; j < params.size(); ++j)
      check_close(stacked_grads[j], params[j].param->grad, 1e-5, 1e-6, params[j].name);
  }
}

TEST_CASE("StackedLinear: layers that do not fit together, and backward before forward, are errors") {
  Linear<Cpu> a(8, 5), b(9, 5), c(8, 5, /*with_bias=*/false);
  Tensor<Cpu> x(Shape{2, 8});
  StackedLinear<Cpu> stacked;
  CHECK_THROWS_WITH_AS((void)stacked.backward(x), doctest::Contains("backward before forward"), Error);
  CHECK_THROWS_WITH_AS((void)stacked.forward({&a, &b}, x), doctest::Contains("share the input size (9 vs 8)"),
                       Error);
  CHECK_THROWS_WITH_AS((void)stacked.forward({&a, &c}, x), doctest::Contains("all have a bias or none"), Error);
  Tensor<Cpu> bad(Shape{2, 7});
  check_shape_error("forward", [&] { (void)stacked.forward({&a, &a}, bad); }, {"x has shape [2, 7]"});
}

// --- LayerNorm -------------------------------------------------------------------------------------

TEST_CASE("LayerNorm: gradients of x, weight and bias") {
  std::int64_t const d = 11;
  Rng rng(3);
  LayerNorm<Cpu> ln(d);
  CHECK(ln.weight.value.to_host() == std::vector<float>(d, 1.f));  // fairseq init: weight 1, bias 0
  CHECK(ln.bias.value.to_host() == std::vector<float>(d, 0.f));
  CHECK_FALSE(ln.weight.decay);
  CHECK_FALSE(ln.bias.decay);
  ParameterList<Cpu> params;
  ln.collect("encoder.layers.0.self_attn_layer_norm", params);
  CHECK(names_of(params) == std::set<std::string>{"encoder.layers.0.self_attn_layer_norm.weight",
                                                 "encoder.layers.0.self_attn_layer_norm.bias"});
  randomize(ln.weight, rng, 0.5f, 1.5f);
  randomize(ln.bias, rng, -0.5f, 0.5f);
  auto x = random_tensor<Cpu>(Shape{2, 3, d}, rng, -2.f, 2.f);
  check_layer_gradients(
      "LayerNorm", {{"x", &x}}, params, [&] { return ln.forward(x); },
      [&](CView<Cpu> dy) { return std::vector<CView<Cpu>>{ln.backward(dy)}; }, rng, Tol{1e-2, 1e-2, 5e-4});
}

TEST_CASE("LayerNorm: shape errors name the shapes") {
  LayerNorm<Cpu> ln(11);
  Tensor<Cpu> bad(Shape{2, 3, 10});
  check_shape_error("forward", [&] { (void)ln.forward(bad); }, {"x has shape [2, 3, 10]", "gamma has shape [11]"});
  Tensor<Cpu> x(Shape{2, 3, 11});
  (void)ln.forward(x);
  Tensor<Cpu> bad_dy(Shape{3, 2, 11});
  check_shape_error("backward", [&] { (void)ln.backward(bad_dy); }, {"[2, 3, 11]", "dy has shape [3, 2, 11]"});
}

// --- FeedForward -----------------------------------------------------------------------------------

TEST_CASE("FeedForward: gradients of x, fc1 and fc2 (ReLU and GELU, with and without activation dropout)") {
  std::int64_t const d = 8, hidden = 13;
  ForwardContext const ctx{.training = true, .seed = 17, .pass = 2};
  Tol const tol{1e-2, 1e-2, 1e-3};
  for (auto act : {ops::Activation::relu, ops::Activation::gelu}) {
    for (float p : {0.f, 0.3f}) {
      std::string const what = fmt::format("FeedForward {} p={}", ops::name(act), p);
      CAPTURE(what);
      FeedForward<Cpu> ffn(d, hidden, act, p, "encoder.layers.1");
      ParameterList<Cpu> params;
      ffn.collect("encoder.layers.1", params);
      CHECK(names_of(params) == std::set<std::string>{"encoder.layers.1.fc1.weight", "encoder.layers.1.fc1.bias",
                                                     "encoder.layers.1.fc2.weight", "encoder.layers.1.fc2.bias"});
      CHECK(ffn.fc1.weight.shape() == Shape{hidden, d});
      CHECK(ffn.fc2.weight.shape() == Shape{d, hidden});
      // ReLU has a kink at 0: pick values whose pre-activations all stay farther than any step of the
      // check can move them (a step h moves fc1's output by at most h * max(1, |x|, |W1|) <= h).
      Tensor<Cpu> x;
      Rng rng(0);
      bool found = false;
      for (std::uint64_t seed = 1; seed <= 200 && !found; ++seed) {
        rng = Rng(seed);
        for (auto& q : params) randomize(*q.param, rng, -0.5f, 0.5f);
        x = random_tensor<Cpu>(Shape{2, 3, d}, rng);
        double min_abs = kInf;
        for (float z : test::gather(ffn.fc1.forward(x))) min_abs = std::min(min_abs, static_cast<double>(std::abs(z)));
        found = act != ops::Activation::relu || min_abs > 2 * tol.h;
      }
      REQUIRE(found);
      check_layer_gradients(
          what, {{"x", &x}}, params, [&] { return ffn.forward(x, ctx); },
          [&](CView<Cpu> dy) { return std::vector<CView<Cpu>>{ffn.backward(dy)}; }, rng, tol);
    }
  }
}

TEST_CASE("FeedForward: shape errors name the shapes") {
  FeedForward<Cpu> ffn(8, 13, ops::Activation::relu, 0.f, "ffn");
  Tensor<Cpu> bad(Shape{2, 3, 7});
  check_shape_error("forward", [&] { (void)ffn.forward(bad, {}); }, {"x has shape [2, 3, 7]", "w has shape [13, 8]"});
  Tensor<Cpu> x(Shape{2, 3, 8});
  (void)ffn.forward(x, {});
  Tensor<Cpu> bad_dy(Shape{2, 4, 8});
  check_shape_error("backward", [&] { (void)ffn.backward(bad_dy); }, {"dy has shape [2, 4, 8]", "[2, 3, 8]"});
}

// --- MultiHeadAttention ----------------------------------------------------------------------------

namespace {

std::set<std::string> attention_names(std::string const& prefix) {
  std::set<std::string> s;
  for (char const* proj : {"q_proj", "k_proj", "v_proj", "out_proj"})
    for (char const* t : {"weight", "bias"}) s.insert(fmt::format("{}.{}.{}", prefix, proj, t));
  return s;
}

ParameterList<Cpu> attention_params(MultiHeadAttention<Cpu>& attn, std::string const& prefix, Rng& rng) {
  ParameterList<Cpu> params;
  attn.collect(prefix, params);
  CHECK(names_of(params) == attention_names(prefix));
  for (auto& p : params) randomize(*p.param, rng, -0.5f, 0.5f);
  return params;
}

/// Every row of the probabilities sums to 1 and is exactly 0 where the mask is -inf.
void check_probabilities(CView<Cpu> probs, std::function<bool(std::int64_t n, std::int64_t i, std::int64_t j)> masked) {
  for (std::int64_t n = 0; n < probs.size(0); ++n)
    for (std::int64_t h = 0; h < probs.size(1); ++h)
      for (std::int64_t i = 0; i < probs.size(2); ++i) {
        double s = 0;
        for (std::int64_t j = 0; j < probs.size(3); ++j) {
          float const p = probs(n, h, i, j);
          s += p;
          if (masked(n, i, j)) CHECK(p == 0.f);
        }
        CHECK(s == doctest::Approx(1.0).epsilon(1e-5));
      }
}

}  // namespace

TEST_CASE("MultiHeadAttention: self-attention with a key-padding mask and attention dropout") {
  std::int64_t const d = 12, heads = 3, t = 5;
  Rng rng(5);
  MultiHeadAttention<Cpu> attn(d, heads, 0.2f, AttentionKind::self, "encoder.layers.0.self_attn");
  CHECK(attn.kind() == AttentionKind::self);
  auto params = attention_params(attn, "encoder.layers.0.self_attn", rng);
  auto x = random_tensor<Cpu>(Shape{2, t, d}, rng);
  std::vector<std::int64_t> const lengths{5, 3};
  auto const mask = key_padding_mask(lengths, t);
  ForwardContext const ctx{.training = true, .seed = 3, .pass = 1};
  (void)attn.forward(x, x, mask, ctx);
  check_probabilities(attn.probabilities(),
                      [&](std::int64_t n, std::int64_t, std::int64_t j) { return j >= lengths[n]; });
  check_layer_gradients(
      "self-attention", {{"x", &x}}, params, [&] { return attn.forward(x, x, mask, ctx); },
      [&](CView<Cpu> dy) { return std::vector<CView<Cpu>>{attn.backward(dy)}; }, rng, Tol{},
      {"encoder.layers.0.self_attn.k_proj.bias"});
  CHECK_THROWS_WITH_AS((void)attn.memory_grad(), doctest::Contains("only defined for cross-attention"), Error);
}

TEST_CASE("MultiHeadAttention: causal self-attention") {
  std::int64_t const d = 12, heads = 4, t = 4;
  Rng rng(6);
  MultiHeadAttention<Cpu> attn(d, heads, 0.f, AttentionKind::self, "decoder.layers.0.self_attn");
  auto params = attention_params(attn, "decoder.layers.0.self_attn", rng);
  auto x = random_tensor<Cpu>(Shape{2, t, d}, rng);
  auto const mask = causal_mask(t);
  ForwardContext const ctx{.training = true, .seed = 4};
  (void)attn.forward(x, x, mask, ctx);
  check_probabilities(attn.probabilities(), [](std::int64_t, std::int64_t i, std::int64_t j) { return j > i; });
  check_layer_gradients(
      "causal self-attention", {{"x", &x}}, params, [&] { return attn.forward(x, x, mask, ctx); },
      [&](CView<Cpu> dy) { return std::vector<CView<Cpu>>{attn.backward(dy)}; }, rng, Tol{},
      {"decoder.layers.0.self_attn.k_proj.bias"});
  // Causality: the output at position 0 does not depend on later positions.
  auto const y0 = copy_of(attn.forward(x, x, mask, ctx));
  for (std::int64_t j = 0; j < d; ++j) x(0, t - 1, j) += 0.5f;
  auto const y1 = copy_of(attn.forward(x, x, mask, ctx));
  for (std::int64_t j = 0; j < d; ++j) CHECK(y1(0, 0, j) == y0(0, 0, j));
}

TEST_CASE("MultiHeadAttention: encoder-decoder attention, gradients of the query and of the memory") {
  std::int64_t const d = 12, heads = 3, tq = 3, tk = 5;
  Rng rng(7);
  MultiHeadAttention<Cpu> attn(d, heads, 0.25f, AttentionKind::cross, "decoder.layers.1.encoder_attn");
  CHECK(attn.kind() == AttentionKind::cross);
  auto params = attention_params(attn, "decoder.layers.1.encoder_attn", rng);
  auto q = random_tensor<Cpu>(Shape{2, tq, d}, rng);
  auto mem = random_tensor<Cpu>(Shape{2, tk, d}, rng);
  std::vector<std::int64_t> const lengths{4, 2};
  auto const mask = key_padding_mask(lengths, tk);
  ForwardContext const ctx{.training = true, .seed = 9, .pass = 4};
  (void)attn.forward(q, mem, mask, ctx);
  check_probabilities(attn.probabilities(),
                      [&](std::int64_t n, std::int64_t, std::int64_t j) { return j >= lengths[n]; });
  check_layer_gradients(
      "cross-attention", {{"query", &q}, {"memory", &mem}}, params, [&] { return attn.forward(q, mem, mask, ctx); },
      [&](CView<Cpu> dy) {
        auto const dq = attn.backward(dy);
        return std::vector<CView<Cpu>>{dq, attn.memory_grad()};
      },
      rng, Tol{}, {"decoder.layers.1.encoder_attn.k_proj.bias"});
  // Padded memory positions get exactly zero gradient.
  auto const dmem = copy_of(attn.memory_grad());
  for (std::int64_t n = 0; n < 2; ++n)
    for (std::int64_t j = lengths[n]; j < tk; ++j)
      for (std::int64_t c = 0; c < d; ++c) CHECK(dmem(n, j, c) == 0.f);
}

TEST_CASE("MultiHeadAttention: shape errors name the shapes") {
  CHECK_THROWS_WITH_AS(MultiHeadAttention<Cpu>(12, 5, 0.f, AttentionKind::self, "a"),
                       doctest::Contains("d_model 12 is not divisible by the number of heads 5"), ValueError);
  MultiHeadAttention<Cpu> attn(12, 3, 0.f, AttentionKind::cross, "a");
  Tensor<Cpu> q(Shape{2, 3, 12}), mem(Shape{2, 5, 12});
  Tensor<Cpu> mem_n(Shape{3, 5, 12}), mem_d(Shape{2, 5, 11}), q_rank2(Shape{3, 12});
  check_shape_error("batch mismatch", [&] { (void)attn.forward(q, mem_n, {}, {}); },
                    {"query [2, 3, 12]", "memory [3, 5, 12]"});
  check_shape_error("model dim", [&] { (void)attn.forward(q, mem_d, {}, {}); }, {"memory [2, 5, 11]"});
  check_shape_error("rank", [&] { (void)attn.forward(q_rank2, mem, {}, {}); }, {"query [3, 12]"});
  auto const bad_mask = key_padding_mask({5, 5, 5}, 5);  // N = 3 for a batch of 2
  check_shape_error("mask", [&] { (void)attn.forward(q, mem, bad_mask, {}); },
                    {"mask has shape [3, 1, 1, 5]", "[2, 3, 3, 5]"});
  (void)attn.forward(q, mem, {}, {});
  Tensor<Cpu> bad_dy(Shape{2, 4, 12});
  check_shape_error("backward", [&] { (void)attn.backward(bad_dy); }, {"dy has shape [2, 4, 12]"});
  // Self-attention projects q, k and v from one input: another memory would be ignored, so it is refused.
  MultiHeadAttention<Cpu> self(12, 3, 0.f, AttentionKind::self, "s");
  Tensor<Cpu> other(Shape{2, 3, 12});
  CHECK_THROWS_WITH_AS((void)self.forward(q, other, {}, {}),
                       doctest::Contains("self-attention takes the query as its memory"), ValueError);
}

// --- TokenEmbedding --------------------------------------------------------------------------------

TEST_CASE("TokenEmbedding: sqrt(d)-scaled tokens plus sinusoidal positions; gradient of the table; padding") {
  std::int64_t const vocab = 11, d = 8, n = 2, t = 5, max_pos = 16;
  std::int32_t const pad = 1;
  Rng rng(8);
  TokenEmbedding<Cpu> emb(vocab, d, max_pos, pad);
  emb.reset_parameters(rng);
  CHECK(emb.dim() == d);
  CHECK(emb.padding_idx() == pad);
  CHECK(emb.embed_scale() == doctest::Approx(std::sqrt(8.0)));
  ParameterList<Cpu> params;
  emb.collect("encoder.embed_tokens", params);
  CHECK(names_of(params) == std::set<std::string>{"encoder.embed_tokens.weight"});
  CHECK(emb.weight.shape() == Shape{vocab, d});
  for (std::int64_t j = 0; j < d; ++j) CHECK(emb.weight.value(pad, j) == 0.f);  // padding row zero

  // Right-padded, a repeated id (4) whose gradient rows add up.
  std::vector<std::int32_t> const ids_h{4, 5, 6, 7, 4, 8, 9, 2, pad, pad};
  auto const pos_h = make_positions(ids_h, n, t, pad);
  CHECK(pos_h == std::vector<std::int32_t>{2, 3, 4, 5, 6, 2, 3, 4, pad, pad});
  Tensor<Cpu, std::int32_t> const ids(Shape{n, t}, std::span<std::int32_t const>(ids_h));
  Tensor<Cpu, std::int32_t> const pos(Shape{n, t}, std::span<std::int32_t const>(pos_h));
  Tensor<Cpu> y(Shape{n, t, d});

  // Forward: y = sqrt(d) E[id] + P[pos], P fairseq's sinusoids (sines in the first half, cosines in the
  // second), zero at the padding position.
  emb.forward(y, ids, pos);
  std::int64_t const half = d / 2;
  for (std::size_t k = 0; k < ids_h.size(); ++k) {
    for (std::int64_t j = 0; j < d; ++j) {
      double p = 0;
      if (pos_h[k] != pad) {
        double const a = pos_h[k] * std::exp(-std::log(10000.0) / (half - 1) * static_cast<double>(j % half));
        p = j < half ? std::sin(a) : std::cos(a);
      }
      double const want = std::sqrt(8.0) * emb.weight.value(ids_h[k], j) + p;
      CHECK(y.data()[k * d + j] == doctest::Approx(want).epsilon(1e-5));
      if (ids_h[k] == pad) CHECK(y.data()[k * d + j] == 0.f);
    }
  }

  // Randomise the table (the padding row too) so that every row matters.
  randomize(emb.weight, rng, -1.f, 1.f);
  std::vector<float> wh(static_cast<std::size_t>(n * t * d));
  for (std::size_t i = 0; i < wh.size(); ++i) wh[i] = ids_h[i / d] == pad ? 0.f : rng.uniform(-1.f, 1.f);
  Tensor<Cpu> const w(Shape{n, t, d}, std::span<float const>(wh));
  auto loss = [&] {
    emb.forward(y, ids, pos);
    return weighted_sum<Cpu>(y, w);
  };
  emb.weight.grad.zero();
  (void)loss();
  emb.backward(w, ids);
  auto const g1 = emb.weight.grad.clone();
  CHECK(max_abs(g1) > 30 * kLinearTol.atol);
  // With zero weight on the padding positions the loss does not depend on the padding row at all, so
  // the whole table (padding row included) is checked.
  check_gradient("embedding table", emb.weight.value, g1, loss, kLinearTol.h, kLinearTol.rtol, kLinearTol.atol);
  // A second backward accumulates.
  (void)loss();
  emb.backward(w, ids);
  check_close(emb.weight.grad, scaled(g1, 2.f), 1e-5, 1e-7, "embedding gradient after a second backward (accumulated)");

  // With nonzero weight on the padding positions, the padding row still receives no gradient (fairseq's
  // padding_idx) and every other row is unchanged.
  std::vector<float> wh2 = wh;
  for (std::size_t i = 0; i < wh2.size(); ++i)
    if (ids_h[i / d] == pad) wh2[i] = rng.uniform(0.5f, 1.f);
  Tensor<Cpu> const w2(Shape{n, t, d}, std::span<float const>(wh2));
  emb.weight.grad.zero();
  emb.forward(y, ids, pos);
  emb.backward(w2, ids);
  check_close(emb.weight.grad, g1, 0, 0, "embedding gradient with weight on padding positions");
}

TEST_CASE("TokenEmbedding: shape and value errors") {
  TokenEmbedding<Cpu> emb(11, 8, 16, 1);
  Tensor<Cpu, std::int32_t> ids(Shape{2, 5}), pos(Shape{2, 5}), pos_short(Shape{2, 4});
  for (std::int64_t i = 0; i < 10; ++i) {
    ids.data()[i] = 4;
    pos.data()[i] = static_cast<std::int32_t>(2 + i % 5);
  }
  Tensor<Cpu> y(Shape{2, 5, 8}), y_d(Shape{2, 5, 7}), y_t(Shape{5, 2, 8});
  check_shape_error("positions", [&] { emb.forward(y, ids, pos_short); }, {"ids [2, 5]", "positions [2, 4]"});
  check_shape_error("model dim", [&] { emb.forward(y_d, ids, pos); }, {"[2, 5, 7]", "ids has shape [2, 5]"});
  check_shape_error("transposed output", [&] { emb.forward(y_t, ids, pos); }, {"[5, 2, 8]", "[2, 5]"});
  emb.forward(y, ids, pos);
  check_shape_error("backward", [&] { emb.backward(y_t, ids); }, {"[5, 2, 8]", "[2, 5]"});
  ids.data()[3] = 11;
  CHECK_THROWS_WITH_AS(emb.forward(y, ids, pos), doctest::Contains("id 11 at position 3"), ValueError);
  ids.data()[3] = 4;
  pos.data()[7] = 18;  // the table has max_positions + padding_idx + 1 = 18 rows
  CHECK_THROWS_WITH_AS(emb.forward(y, ids, pos), doctest::Contains("id 18 at position 7"), ValueError);
}

// --- Dropout ---------------------------------------------------------------------------------------

TEST_CASE("Dropout layer: gradient with a fixed mask; the mask is a function of (seed, site, pass); eval is identity") {
  float const p = 0.3f;
  Rng rng(10);
  Dropout<Cpu> drop(p, "encoder.dropout_input");
  CHECK(drop.p() == p);
  auto x = random_tensor<Cpu>(Shape{2, 5, 9}, rng, 0.5f, 1.5f);  // nonzero: a zero output means "dropped"
  ForwardContext const ctx{.training = true, .seed = 11, .pass = 3};
  check_layer_gradients(
      "Dropout", {{"x", &x}}, {}, [&] { return drop.forward(x, ctx); },
      [&](CView<Cpu> dy) { return std::vector<CView<Cpu>>{drop.backward(dy)}; }, rng, kLinearTol);

  auto const y = copy_of(drop.forward(x, ctx));
  std::int64_t dropped = 0;
  for (std::int64_t i = 0; i < x.numel(); ++i) {
    if (y.data()[i] == 0.f) ++dropped;
    else CHECK(y.data()[i] == doctest::Approx(x.data()[i] / (1 - p)));
  }
  CHECK(dropped > 0);
  CHECK(dropped < x.numel());
  // The same context replays the mask; another pass, seed or site draws another.
  check_close(drop.forward(x, ctx), y.cview(), 0, 0, "same context, same mask");
  auto differs = [&](CView<Cpu> v) { return test::gather(v) != y.to_host(); };
  CHECK(differs(drop.forward(x, {.training = true, .seed = 11, .pass = 4})));
  CHECK(differs(drop.forward(x, {.training = true, .seed = 12, .pass = 3})));
  Dropout<Cpu> other(p, "decoder.dropout_input");
  CHECK(differs(other.forward(x, ctx)));

  // Eval mode, and p = 0 in training, are the identity both ways.
  auto const dy = random_tensor<Cpu>(x.shape(), rng);
  for (auto [layer_p, c] : {std::pair{p, ForwardContext{.training = false, .seed = 11, .pass = 3}},
                            std::pair{0.f, ctx}}) {
    Dropout<Cpu> d(layer_p, "encoder.dropout_input");
    check_close(d.forward(x, c), x.cview(), 0, 0, "dropout forward in eval mode / p = 0");
    check_close(d.backward(dy), dy.cview(), 0, 0, "dropout backward in eval mode / p = 0");
  }
}

TEST_CASE("Dropout layer: backward with a gradient of another shape is a ShapeError") {
  Rng rng(13);
  auto const x = random_tensor<Cpu>(Shape{2, 5, 9}, rng);
  Tensor<Cpu> bad(Shape{2, 9, 5});
  for (bool training : {true, false}) {
    Dropout<Cpu> drop(0.3f, "site");
    (void)drop.forward(x, {.training = training});
    check_shape_error("backward", [&] { (void)drop.backward(bad); }, {"dy has shape [2, 9, 5]", "[2, 5, 9]"});
  }
  Tensor<Cpu> const bad_p(Shape{3});
  CHECK_THROWS_AS((void)Dropout<Cpu>(1.f, "site").forward(bad_p, {.training = true}), ValueError);
}

// --- the residual of every normalization policy ----------------------------------------------------

namespace {

/// A sublayer whose output has another width than its input: the residual must refuse it.
struct WideningSublayer {
  Linear<Cpu> lin{8, 9};
  CView<Cpu> forward(CView<Cpu> x, ForwardContext const&) { return lin.forward(x); }
  CView<Cpu> backward(CView<Cpu> dy) { return lin.backward(dy); }
};

}  // namespace

TEST_CASE_TEMPLATE_DEFINE("policy residual around a FeedForward: forward, gradients of x and every parameter, names", Norm,
                          residual_gradients) {
  std::int64_t const d = 8, hidden = 12;
  float const p = 0.2f;
  std::string const site = "encoder.layers.1.ffn";
  Rng rng(20);
  typename Norm::template Residual<Cpu> res(d, p, site);
  FeedForward<Cpu> ffn(d, hidden, ops::Activation::gelu, 0.1f, "encoder.layers.1");
  detail::FeedForwardSublayer<Cpu> sub{&ffn};
  ForwardContext const ctx{.training = true, .seed = 21, .pass = 5};

  // The policies whose formula and parameter names this test spells out; any other policy of the list
  // gets the generic checks (names under the prefix, unique; gradients; shape errors).
  constexpr bool known = std::is_same_v<Norm, PostLN> || std::is_same_v<Norm, PreLN> ||
                         std::is_same_v<Norm, AdminLN> || std::is_same_v<Norm, DeepNorm> ||
                         std::is_same_v<Norm, ReZero>;
  ParameterList<Cpu> params;
  res.collect("encoder.layers.1", {"final_layer_norm", "ffn"}, params);
  std::set<std::string> want;
  if constexpr (std::is_same_v<Norm, ReZero>) {
    want = {"encoder.layers.1.ffn_resweight"};
  } else if constexpr (known) {
    want = {"encoder.layers.1.final_layer_norm.weight", "encoder.layers.1.final_layer_norm.bias"};
    if constexpr (std::is_same_v<Norm, AdminLN>) want.insert("encoder.layers.1.ffn_admin_w");
  }
  if constexpr (known) {
    CHECK(names_of(params) == want);
  } else {
    CHECK(names_of(params).size() == params.size());
    for (auto const& q : params) CHECK(q.name.rfind("encoder.layers.1.", 0) == 0);
  }
  for (auto& q : params) CHECK_FALSE(q.param->decay);  // gains, biases and residual scales
  ffn.collect("encoder.layers.1", params);
  for (auto& q : params) randomize(*q.param, rng, -0.5f, 0.5f);

  // Non-trivial policy parameters: LayerNorm gains around 1, Admin's w far from 1 and per channel,
  // DeepNorm's alpha != 1, ReZero's r != 0.
  if constexpr (requires { res.ln; }) randomize(res.ln.weight, rng, 0.5f, 1.5f);
  if constexpr (std::is_same_v<Norm, AdminLN>) randomize(res.w, rng, 0.5f, 2.f);
  if constexpr (std::is_same_v<Norm, DeepNorm>) res.alpha = 1.7f;
  if constexpr (std::is_same_v<Norm, ReZero>) init::constant(res.r.value, 0.6f);

  auto x = random_tensor<Cpu>(Shape{2, 3, d}, rng);

  // Forward against the policy's formula, computed here from the same pieces (the branch's dropout site
  // is "<site>.dropout", so a Dropout with that site replays its mask).
  if constexpr (known) {
    auto const xh = x.to_host();
    auto branch = [&](CView<Cpu> in) {
      Dropout<Cpu> drop(p, site + ".dropout");
      auto const h = test::gather(drop.forward(ffn.forward(in, ctx), ctx));
      return std::vector<double>(h.begin(), h.end());
    };
    std::vector<double> want_y(xh.size());
    if constexpr (std::is_same_v<Norm, PreLN>) {
      auto const lnx = to_tensor(x.shape(), layer_norm_ref(std::vector<double>(xh.begin(), xh.end()), d,
                                                           res.ln.weight.value.to_host(), res.ln.bias.value.to_host()));
      auto const h = branch(lnx);
      for (std::size_t i = 0; i < xh.size(); ++i) want_y[i] = xh[i] + h[i];
    } else if constexpr (std::is_same_v<Norm, ReZero>) {
      auto const h = branch(x);
      for (std::size_t i = 0; i < xh.size(); ++i) want_y[i] = xh[i] + 0.6 * h[i];
    } else {
      auto const h = branch(x);
      std::vector<double> s(xh.size());
      for (std::size_t i = 0; i < xh.size(); ++i) {
        double scale = 1;
        if constexpr (std::is_same_v<Norm, AdminLN>) scale = res.w.value.to_host()[i % d];
        if constexpr (std::is_same_v<Norm, DeepNorm>) scale = 1.7;
        s[i] = scale * xh[i] + h[i];
      }
      want_y = layer_norm_ref(s, d, res.ln.weight.value.to_host(), res.ln.bias.value.to_host());
    }
    check_close(res.forward(x, sub, ctx), to_tensor(x.shape(), want_y).cview(), 1e-4, 1e-5,
                std::string(Norm::name) + " forward");
  }

  check_layer_gradients(
      std::string(Norm::name) + " residual", {{"x", &x}}, params, [&] { return res.forward(x, sub, ctx); },
      [&](CView<Cpu> dy) { return std::vector<CView<Cpu>>{res.backward(dy, sub)}; }, rng, Tol{});

  // A sublayer that changes the width is refused, with both shapes named.
  typename Norm::template Residual<Cpu> res2(d, p, site);
  WideningSublayer wide;
  check_shape_error(std::string(Norm::name) + " widening sublayer", [&] { (void)res2.forward(x, wide, ctx); },
                    {"[2, 3, 8]", "[2, 3, 9]"});
  // An input of the wrong width is refused.
  Tensor<Cpu> bad(Shape{2, 3, 7});
  check_shape_error(std::string(Norm::name) + " input width", [&] { (void)res2.forward(bad, sub, ctx); },
                    {"[2, 3, 7]"});
}
TEST_CASE_TEMPLATE_APPLY(residual_gradients, test::TupleOf<NormPolicies>);

TEST_CASE("AdminLN: a frozen w (the first sublayer of a stack) gets no gradient and is not collected") {
  Rng rng(30);
  AdminLN::Residual<Cpu> res(8, 0.f, "encoder.layers.0.self_attn");
  res.w_trainable = false;
  res.set_scale(1.5f);
  FeedForward<Cpu> ffn(8, 12, ops::Activation::gelu, 0.f, "encoder.layers.0");
  ParameterList<Cpu> params;
  ffn.collect("", params);
  for (auto& q : params) randomize(*q.param, rng, -0.5f, 0.5f);
  detail::FeedForwardSublayer<Cpu> sub{&ffn};
  ParameterList<Cpu> list;
  res.collect("encoder.layers.0", {"self_attn_layer_norm", "self_attn"}, list);
  CHECK(names_of(list) == std::set<std::string>{"encoder.layers.0.self_attn_layer_norm.weight",
                                               "encoder.layers.0.self_attn_layer_norm.bias"});
  auto x = random_tensor<Cpu>(Shape{2, 3, 8}, rng);
  ForwardContext const ctx{};
  // The input gradient still goes through w = 1.5.
  check_layer_gradients(
      "admin (frozen w)", {{"x", &x}}, list, [&] { return res.forward(x, sub, ctx); },
      [&](CView<Cpu> dy) { return std::vector<CView<Cpu>>{res.backward(dy, sub)}; }, rng, Tol{});
  CHECK(res.w.grad.to_host() == std::vector<float>(8, 0.f));
}
