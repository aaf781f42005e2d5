// Whole models on the GPU against the Reference backend (the CPU oracle): for every normalization
// policy, Seq2Seq<Norm, Gpu> and LanguageModel<Norm, Gpu> built from the same seed give the same loss
// and the same gradient of every parameter (f32: relative 1e-4, dropout on: the same masks from the
// same counter-based RNG); a Trainer runs on the GPU (Adam, clipping, inverse-sqrt schedule) and
// follows the Reference trainer step for step; and the training loss goes down on the synthetic task.
// Skipped, with the reason printed, where there is no CUDA device.
// The backends first: layers bind to the ops declared before them (backend/backends.hpp).
#include "gpu_support.cuh"

#include <lnformer/data/synthetic.hpp>
#include <lnformer/lnformer.hpp>

#include <doctest/doctest.h>
#include <fmt/format.h>

#include <cstdint>
#include <string>
#include <vector>

using namespace lnformer;
using test::check_gpu_close;

namespace {

ModelConfig small_config(float dropout) {
  return ModelConfig{.enc_layers = 2, .dec_layers = 2, .d_model = 16, .ffn = 24, .heads = 2, .vocab = 13,
                     .max_positions = 16, .dropout = dropout};
}

std::vector<std::vector<std::int32_t>> const kSrc{{4, 5, 6, 7}, {8, 9}, {10, 4, 11, 12, 5}};
std::vector<std::vector<std::int32_t>> const kTgt{{5, 6}, {7, 8, 9, 10}, {11}};

/// Relative tolerance of a gradient through a few layers (f32 vs double, sums over ~50 terms).
constexpr double kRtol = 1e-4;
constexpr double kAtol = 1e-5;

template <class Model, class ModelRef>
void check_gradients(Model& gpu, ModelRef& ref, std::string const& what) {
  auto const pg = gpu.parameters();
  auto const pr = ref.parameters();
  REQUIRE(pg.size() == pr.size());
  for (std::size_t i = 0; i < pg.size(); ++i) {
    REQUIRE(pg[i].name == pr[i].name);
    check_gpu_close(pg[i].param->grad, pr[i].param->grad, kRtol, kAtol, what + ": grad of " + pg[i].name);
  }
}

}  // namespace

LNF_GPU_TEST_CASE("gpu Seq2Seq: every policy matches the reference loss and gradients (dropout on and off)") {
  for_each_type(NormPolicies{}, [&]<class Norm>(TypeTag<Norm>) {
    for (float dropout : {0.f, 0.2f}) {
      std::string const what = fmt::format("Seq2Seq<{}> dropout {}", Norm::name, dropout);
      Seq2Seq<Norm, Gpu> gpu(small_config(dropout), 7);
      Seq2Seq<Norm, Reference> ref(small_config(dropout), 7);
      ForwardContext const ctx{.training = dropout > 0.f, .seed = 11, .pass = 3};
      auto const sg = gpu.forward(make_batch<Gpu>(kSrc, kTgt), ctx);
      auto const sr = ref.forward(make_batch<Reference>(kSrc, kTgt), ctx);
      INFO(what);
      CHECK(sg.tokens == sr.tokens);
      CHECK(sg.loss == doctest::Approx(sr.loss).epsilon(kRtol));
      CHECK(sg.nll == doctest::Approx(sr.nll).epsilon(kRtol));
      gpu.backward(0.5f);
      ref.backward(0.5f);
      check_gradients(gpu, ref, what);
    }
  });
}

LNF_GPU_TEST_CASE("gpu Seq2Seq in the papers' analysis setup: an untied output projection with a bias") {
  // PaperSetup (analysis/paper_setup.hpp): the output projection's bias and its gradient, plain
  // cross-entropy, random tokens with the decoder fed the target.
  PaperSetup const setup{.vocab = 13, .sentences = 3, .length = 5};
  ModelConfig const c = setup.config(small_config(0.f));
  for_each_type(NormPolicies{}, [&]<class Norm>(TypeTag<Norm>) {
    std::string const what = fmt::format("Seq2Seq<{}>, paper setup", Norm::name);
    Seq2Seq<Norm, Gpu> gpu(c, 7);
    Seq2Seq<Norm, Reference> ref(c, 7);
    ForwardContext const ctx{.training = true, .seed = 11, .pass = 3};
    auto const sg = gpu.forward(setup.batch<Gpu>(4), ctx);
    auto const sr = ref.forward(setup.batch<Reference>(4), ctx);
    INFO(what);
    CHECK(sg.tokens == sr.tokens);
    CHECK(sg.loss == doctest::Approx(sr.loss).epsilon(kRtol));
    gpu.backward(0.5f);
    ref.backward(0.5f);
    check_gradients(gpu, ref, what);
  });
}

LNF_GPU_TEST_CASE("gpu LanguageModel: every policy matches the reference loss and gradients") {
  std::vector<std::vector<std::int32_t>> const seqs{{4, 5, 6, 7, 8}, {9, 10}, {11, 12, 4}};
  for_each_type(NormPolicies{}, [&]<class Norm>(TypeTag<Norm>) {
    std::string const what = fmt::format("LanguageModel<{}>", Norm::name);
    LanguageModel<Norm, Gpu> gpu(small_config(0.1f), 5);
    LanguageModel<Norm, Reference> ref(small_config(0.1f), 5);
    ForwardContext const ctx{.training = true, .seed = 2, .pass = 1};
    auto const sg = gpu.forward(make_lm_batch<Gpu>(seqs), ctx);
    auto const sr = ref.forward(make_lm_batch<Reference>(seqs), ctx);
    INFO(what);
    CHECK(sg.loss == doctest::Approx(sr.loss).epsilon(kRtol));
    gpu.backward(1.f);
    ref.backward(1.f);
    check_gradients(gpu, ref, what);
  });
}

LNF_GPU_TEST_CASE("gpu Trainer: Adam with clipping follows the reference trainer for 5 steps") {
  SyntheticTask const task{.kind = SyntheticKind::reverse, .symbols = 8, .min_len = 3, .max_len = 8};
  ModelConfig c = small_config(0.1f);
  c.vocab = task.vocab();
  Seq2Seq<PreLN, Gpu> gpu(c, 3);
  Seq2Seq<PreLN, Reference> ref(c, 3);
  auto const sched = InverseSqrt{.peak = 1e-3f, .warmup = 2};
  Trainer tg(gpu, Adam{.beta2 = 0.98f}, sched, TrainerOptions{.clip_norm = 0.5f, .seed = 9});
  Trainer tr(ref, Adam{.beta2 = 0.98f}, sched, TrainerOptions{.clip_norm = 0.5f, .seed = 9});
  Rng rng(4);
  for (int step = 0; step < 5; ++step) {
    auto const examples = task.sample(rng, 8);
    auto const a = tg.step(make_batch<Gpu>(examples));
    auto const b = tr.step(make_batch<Reference>(examples));
    CHECK(a.loss.loss == doctest::Approx(b.loss.loss).epsilon(1e-4));
    CHECK(a.grad_norm == doctest::Approx(b.grad_norm).epsilon(1e-4));
  }
  auto const pg = gpu.parameters();
  auto const pr = ref.parameters();
  for (std::size_t i = 0; i < pg.size(); ++i)
    check_gpu_close(pg[i].param->value, pr[i].param->value, 1e-4, 1e-5, "after 5 steps: " + pg[i].name);
}

LNF_GPU_TEST_CASE("gpu training: the loss goes down on the synthetic reverse task (PreLN, no warm-up)") {
  SyntheticTask const task{.kind = SyntheticKind::reverse, .symbols = 8, .min_len = 3, .max_len = 8};
  Seq2Seq<PreLN, Gpu> model(ModelConfig{.enc_layers = 2, .dec_layers = 2, .d_model = 32, .ffn = 64, .heads = 4,
                                        .vocab = task.vocab(), .max_positions = 16, .dropout = 0.f},
                            1);
  Trainer trainer(model, Adam{.beta2 = 0.98f}, Constant{.lr = 3e-3f}, TrainerOptions{.clip_norm = 1.f});
  Rng rng(1, 1);
  double first = 0, last = 0;
  for (int step = 1; step <= 200; ++step) {
    double const loss = trainer.step(make_batch<Gpu>(task.sample(rng, 32))).loss.mean_loss();
    if (step <= 10) first += loss / 10;
    if (step > 190) last += loss / 10;
  }
  fmt::print("gpu PreLN reverse task: mean loss of steps 1-10 {:.3f}, of steps 191-200 {:.3f}\n", first, last);
  CHECK(last < 0.5 * first);
}
