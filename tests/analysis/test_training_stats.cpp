// Training statistics (analysis/training_stats.hpp) against hand computations on a tiny model: each
// layer's gradient norm from the parameter gradients by name, each layer's output variance from the
// layers run one by one.
#include <lnformer/analysis/training_stats.hpp>
#include <lnformer/data/synthetic.hpp>
#include <lnformer/lnformer.hpp>

#include "support.hpp"

#include <doctest/doctest.h>

#include <cmath>
#include <string>
#include <vector>

using namespace lnformer;

namespace {

SyntheticTask tiny_task() { return {.kind = SyntheticKind::reverse, .symbols = 5, .min_len = 3, .max_len = 6}; }
ModelConfig tiny_config(SyntheticTask const& t) {
  return {.enc_layers = 2, .dec_layers = 3, .d_model = 8, .ffn = 16, .heads = 2, .vocab = t.vocab(),
          .max_positions = 16, .dropout = 0.f};
}

/// Population variance by the two-pass formula, over every element.
double variance_by_hand(std::vector<float> const& v) {
  double mean = 0;
  for (float x : v) mean += x;
  mean /= static_cast<double>(v.size());
  double s = 0;
  for (float x : v) s += (x - mean) * (x - mean);
  return s / static_cast<double>(v.size());
}

}  // namespace

TEST_CASE_TEMPLATE("layer_gradient_norms: the L2 norm of each layer's parameter gradients", Norm, PreLN, PostLN,
                   AdminLN) {
  auto const task = tiny_task();
  Seq2Seq<Norm, Cpu> model(tiny_config(task), 3);
  Rng rng(7, 1);
  auto const batch = make_batch<Cpu>(task.sample(rng, 4));
  model.zero_grad();
  (void)model.train_step(batch, ForwardContext{.training = false});
  auto const norms = layer_gradient_norms(model.parameters());
  REQUIRE(norms.size() == 5);  // 2 encoder layers, then 3 decoder layers
  for (std::size_t i = 0; i < norms.size(); ++i) {
    bool const enc = i < 2;
    int const layer = enc ? static_cast<int>(i) : static_cast<int>(i) - 2;
    CHECK(norms[i].site == LayerSite{enc ? StackKind::encoder : StackKind::decoder, layer});
    std::string const prefix = fmt::format("{}.layers.{}.", enc ? "encoder" : "decoder", layer);
    double sq = 0;
    int tensors = 0;
    for (auto const& p : model.parameters()) {
      if (p.name.rfind(prefix, 0) != 0) continue;
      ++tensors;
      for (float g : p.param->grad.to_host()) sq += static_cast<double>(g) * g;
    }
    CAPTURE(prefix);
    CHECK(tensors >= 8);
    CHECK(sq > 0);
    CHECK(norms[i].value == doctest::Approx(std::sqrt(sq)).epsilon(1e-12));
  }
  // Parameters outside the layers are not counted: a gradient put on the embedding changes nothing.
  for (auto const& p : model.parameters())
    if (p.name.find("embed_tokens") != std::string::npos) ops::fill(Cpu{}, p.param->grad, 100.f);
  CHECK(layer_gradient_norms(model.parameters()) == norms);
}

TEST_CASE_TEMPLATE("HiddenStateRecorder: the variance of each layer's output in a forward pass", Norm, PreLN, PostLN) {
  auto const task = tiny_task();
  Seq2Seq<Norm, Cpu> model(tiny_config(task), 4);
  Rng rng(8, 1);
  auto const batch = make_batch<Cpu>(task.sample(rng, 3));
  ForwardContext const eval{.training = false};
  std::vector<LayerValue> recorded;
  {
    HiddenStateRecorder rec(model);
    (void)model.forward(batch, eval);
    CHECK(rec.passes() == 1);
    recorded = rec.variances();
  }
  // The recorder is gone: the observers are removed.
  CHECK(!model.encoder.layer_observer);
  CHECK(!model.decoder.layer_observer);
  REQUIRE(recorded.size() == 5);

  // By hand: the encoder's layers one by one from its (dropout-free) embedding output.
  auto const& cfg = model.config();
  Tensor<Cpu> x0(Shape{batch.src.size(0), batch.src.size(1), cfg.d_model});
  model.encoder.embedding().forward(x0, batch.src, batch.src_pos);
  CView<Cpu> x = x0;
  for (int l = 0; l < 2; ++l) {
    x = model.encoder.layers[static_cast<std::size_t>(l)].forward(x, batch.src_mask, eval);
    CAPTURE(l);
    CHECK(recorded[static_cast<std::size_t>(l)].site == LayerSite{StackKind::encoder, l});
    CHECK(recorded[static_cast<std::size_t>(l)].value == doctest::Approx(variance_by_hand(detail::host_copy<Cpu>(x))).epsilon(1e-9));
  }
  for (std::size_t i = 2; i < 5; ++i) {
    CHECK(recorded[i].site.stack == StackKind::decoder);
    CHECK(recorded[i].value > 0);
  }
  // variance_of is the population variance.
  std::vector<float> const values{1.f, 2.f, 3.f, 6.f};
  Tensor<Cpu> t(Shape{2, 2}, std::span<float const>(values));
  CHECK(variance_of<Cpu>(t.cview()) == doctest::Approx(3.5));
}
