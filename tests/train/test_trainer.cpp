// Trainer: every Norm x Optimizer pair learns a small algorithmic task, divergence is detected before
// the update, a checkpoint resumes bit-exactly, and runtime names turn into types.
#include <lnformer/data/synthetic.hpp>
#include <lnformer/lnformer.hpp>
#include <lnformer/train/trainer.hpp>

#include "support.hpp"

#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <span>
#include <string>
#include <vector>

using namespace lnformer;

namespace {

SyntheticTask small_task() {
  return SyntheticTask{.kind = SyntheticKind::reverse, .symbols = 6, .min_len = 2, .max_len = 5};
}

ModelConfig small_model(SyntheticTask const& task, int layers = 1, float dropout = 0.f) {
  return ModelConfig{.enc_layers = layers, .dec_layers = layers, .d_model = 16, .ffn = 32, .heads = 2,
                     .vocab = task.vocab(), .max_positions = 16, .dropout = dropout};
}

/// The optimizer and a learning rate per optimizer family that train the small task in 150 steps.
template <class O>
O make_optimizer() {
  if constexpr (std::is_same_v<O, Sgd>) return Sgd{.momentum = 0.9f};
  else return O{.beta2 = 0.98f};
}
template <class O>
float learning_rate() {
  return std::is_same_v<O, Sgd> ? 0.3f : 3e-3f;
}

std::filesystem::path temp_path(std::string const& name) {
  return std::filesystem::temp_directory_path() / ("lnformer_test_trainer_" + name);
}

}  // namespace

TEST_CASE("every Norm x Optimizer pair lowers the loss on the reverse task") {
  constexpr int kSteps = 150;
  auto const task = small_task();
  for_each_type(NormPolicies{}, [&](auto norm_tag) {
    using Norm = typename decltype(norm_tag)::type;
    for_each_type(Optimizers{}, [&](auto opt_tag) {
      using O = typename decltype(opt_tag)::type;
      CAPTURE(Norm::name);
      CAPTURE(O::name);
      Seq2Seq<Norm, Cpu> model(small_model(task), 3);
      Rng rng(11, 1);
      Trainer trainer(model, make_optimizer<O>(), Constant{.lr = learning_rate<O>()},
                      TrainerOptions{.clip_norm = 1.f});
      // A policy that sets parameters from data (Admin's w) calibrates first; calibrate() says whether
      // the policy has the hook.
      if constexpr (CalibratingPolicy<Norm>) CHECK(trainer.calibrate(make_batch<Cpu>(task.sample(rng, 32))));
      double first = 0, last = 0;
      for (int step = 1; step <= kSteps; ++step) {
        auto const s = trainer.step(make_batch<Cpu>(task.sample(rng, 32)));
        REQUIRE(s.step == step);
        REQUIRE(std::isfinite(s.loss.loss));
        if (step <= 5) first += s.loss.mean_loss() / 5;
        if (step > kSteps - 5) last += s.loss.mean_loss() / 5;
      }
      // The stated factor: the mean loss of the last 5 steps is at most 80% of the first 5 steps'
      // (measured: 0.36-0.49 with the Adam family, 0.46-0.74 with SGD).
      CHECK(last < 0.8 * first);
      CHECK(trainer.steps() == kSteps);
    });
  });
}

TEST_CASE("bf16 GEMM math trains the reverse task like f32: close losses, not the same numbers") {
  // The same model, batches and dropout masks, 120 steps in f32 and in bf16 GEMM math (operands
  // rounded to bf16, f32 accumulation and master weights: cpu::set_gemm_math).
  auto const task = small_task();
  auto run = [&](cpu::GemmMath math) {
    cpu::ScopedGemmMath const scope(math);
    Seq2Seq<PreLN, Cpu> model(small_model(task, 2, 0.1f), 3);
    Trainer trainer(model, make_optimizer<Adam>(), Constant{.lr = 3e-3f}, TrainerOptions{.clip_norm = 1.f});
    Rng rng(12, 1);
    std::vector<double> losses;
    for (int step = 1; step <= 120; ++step)
      losses.push_back(trainer.step(make_batch<Cpu>(task.sample(rng, 32))).loss.mean_loss());
    return losses;
  };
  auto const f32 = run(cpu::GemmMath::f32), bf16 = run(cpu::GemmMath::bf16);
  double max_rel = 0, sum_abs = 0;
  for (std::size_t i = 0; i < f32.size(); ++i) {
    max_rel = std::max(max_rel, std::abs(bf16[i] - f32[i]) / f32[i]);
    sum_abs += std::abs(bf16[i] - f32[i]);
  }
  double const mean_end = [&] {
    double a = 0, b = 0;
    for (std::size_t i = f32.size() - 10; i < f32.size(); ++i) a += f32[i] / 10, b += bf16[i] / 10;
    return std::abs(a - b) / a;
  }();
  INFO("f32 loss ", f32.front(), " -> ", f32.back(), "; bf16 ", bf16.front(), " -> ", bf16.back(),
       "; max relative step difference ", max_rel, "; last 10 steps' means differ by ", mean_end);
  CHECK(bf16.back() < 0.8 * bf16.front());  // it trains
  CHECK(mean_end < 0.01);                   // to the same place (measured 0.0008)
  CHECK(max_rel < 0.03);                    // (measured 0.0034)
  CHECK(sum_abs > 0);                       // and the math did change
}

TEST_CASE("a deep PostLN model at a large learning rate without warm-up is reported as diverged") {
  auto const task = small_task();
  Seq2Seq<PostLN, Cpu> model(small_model(task, /*layers=*/6), 5);
  Trainer trainer(model, Adam{.beta2 = 0.98f}, Constant{.lr = 2.f});
  Rng rng(3, 1);
  bool diverged = false;
  for (int step = 1; step <= 100 && !diverged; ++step) {
    auto const batch = make_batch<Cpu>(task.sample(rng, 32));
    try {
      trainer.step(batch);
    } catch (DivergenceError const& e) {
      diverged = true;
      CHECK(e.step == step);
      CHECK(e.lr == 2.f);
      CHECK(e.step >= 2);  // the first step's loss is finite at initialisation
      CHECK(std::isfinite(e.last_finite_loss));
      CHECK(trainer.steps() == step - 1);  // the refused update was not applied
      std::string const msg = e.what();
      CHECK(msg.find(fmt::format("diverged at step {}", step)) != std::string::npos);
      CHECK(msg.find("learning rate 2)") != std::string::npos);
      CHECK(msg.find("last finite loss") != std::string::npos);
    }
  }
  CHECK(diverged);
}

TEST_CASE("a non-finite parameter stops the first step and leaves the parameters untouched") {
  auto const task = small_task();
  Seq2Seq<PreLN, Cpu> model(small_model(task), 5);
  auto params = model.parameters();
  params[3].param->value.data()[0] = std::nanf("");
  auto const before = params[5].param->value.to_host();
  Trainer trainer(model, Adam{}, Constant{.lr = 1e-3f});
  Rng rng(3, 1);
  CHECK_THROWS_WITH_AS(trainer.step(make_batch<Cpu>(task.sample(rng, 4))),
                       doctest::Contains("last finite loss none"), DivergenceError);
  CHECK(trainer.steps() == 0);
  CHECK(params[5].param->value.to_host() == before);
}

TEST_CASE("a checkpoint resumes bit-exactly: 2N steps == N steps, save, new model, load, N steps") {
  auto const task = small_task();
  auto const config = small_model(task, 1, /*dropout=*/0.1f);  // dropout on: masks follow the step
  constexpr int kHalf = 4;
  auto batches = [&] {
    Rng rng(21, 1);
    std::vector<Batch<Cpu>> v;
    for (int i = 0; i < 2 * kHalf; ++i) v.push_back(make_batch<Cpu>(task.sample(rng, 16)));
    return v;
  }();
  auto const path = temp_path("resume.safetensors").string();
  InverseSqrt const sched{.peak = 2e-3f, .warmup = 3};

  Seq2Seq<AdminLN, Cpu> straight(config, 9);
  Trainer t1(straight, RAdam{}, sched, TrainerOptions{.clip_norm = 0.5f, .seed = 4});
  for (auto const& b : batches) t1.step(b);

  Seq2Seq<AdminLN, Cpu> first(config, 9);
  Trainer t2(first, RAdam{}, sched, TrainerOptions{.clip_norm = 0.5f, .seed = 4});
  for (int i = 0; i < kHalf; ++i) t2.step(batches[i]);
  t2.save_checkpoint(path);

  Seq2Seq<AdminLN, Cpu> resumed(config, 1234);  // a different initialisation: the file must override it
  Trainer t3(resumed, RAdam{}, sched, TrainerOptions{.clip_norm = 0.5f, .seed = 4});
  t3.load_checkpoint(path);
  CHECK(t3.steps() == kHalf);
  for (int i = kHalf; i < 2 * kHalf; ++i) CHECK(t3.step(batches[i]).step == i + 1);

  auto const a = straight.parameters(), b = resumed.parameters();
  REQUIRE(a.size() == b.size());
  for (std::size_t i = 0; i < a.size(); ++i) {
    CAPTURE(a[i].name);
    CHECK(a[i].param->value.to_host() == b[i].param->value.to_host());
  }

  // A damaged checkpoint is refused before anything changes: one flipped byte in the tensor data.
  {
    auto bytes = [&] {
      std::ifstream in(path, std::ios::binary);
      return std::string(std::istreambuf_iterator<char>(in), {});
    }();
    bytes[bytes.size() - 3] = static_cast<char>(bytes[bytes.size() - 3] ^ 0x10);
    auto const bad = temp_path("flipped.safetensors").string();
    std::ofstream(bad, std::ios::binary) << bytes;
    Seq2Seq<AdminLN, Cpu> victim(config, 77);
    Trainer t5(victim, RAdam{}, sched);
    auto const before = victim.parameters()[0].param->value.to_host();
    CHECK_THROWS_WITH_AS(t5.load_checkpoint(bad), doctest::Contains("corrupted"), IoError);
    CHECK(t5.steps() == 0);
    CHECK(victim.parameters()[0].param->value.to_host() == before);
    std::filesystem::remove(bad);
  }

  // A checkpoint of another optimizer is refused with a message that says so.
  Seq2Seq<AdminLN, Cpu> other(config, 9);
  Trainer t4(other, Adam{}, sched);
  CHECK_THROWS_WITH_AS(t4.load_checkpoint(path), doctest::Contains("radam"), Error);
  std::filesystem::remove(path);
}

TEST_CASE("runtime names become types once; unknown names list the valid ones") {
  std::string seen;
  dispatch(NormPolicies{}, "admin", [&](auto n) {
    dispatch(Optimizers{}, "adamw", [&](auto o) {
      dispatch(Schedules{}, "inverse_sqrt", [&](auto s) {
        seen = fmt::format("{}/{}/{}", decltype(n)::type::name, decltype(o)::type::name, decltype(s)::type::name);
      }, "schedule");
    }, "optimizer");
  }, "norm");
  CHECK(seen == "admin/adamw/inverse_sqrt");
  CHECK_THROWS_WITH_AS(dispatch(Optimizers{}, "adagrad", [](auto) {}, "optimizer"),
                       doctest::Contains("unknown optimizer 'adagrad'; valid: sgd, adam, adamw, radam"), ValueError);
  std::string const valid = "valid: " + type_names(NormPolicies{});
  CHECK_THROWS_WITH_AS(dispatch(NormPolicies{}, "mid", [](auto) {}, "norm"), doctest::Contains(valid.c_str()),
                       ValueError);
  for_each_type(NormPolicies{}, [](auto tag) {
    CHECK(type_names(NormPolicies{}).find(decltype(tag)::type::name) != std::string::npos);
  });
  // A name typed by a user: the message is exactly what was asked and the valid names, with no
  // library internals (no header, line or template arguments).
  std::string message;
  try {
    dispatch(NormPolicies{}, "mid", [](auto) {}, "--norm");
  } catch (ValueError const& e) {
    message = e.what();
  }
  CHECK(message == "unknown --norm 'mid'; valid: " + type_names(NormPolicies{}));
}

TEST_CASE("Trainer rejects bad options") {
  auto const task = small_task();
  Seq2Seq<PreLN, Cpu> model(small_model(task), 5);
  CHECK_THROWS_WITH_AS(Trainer(model, Adam{}, Constant{}, TrainerOptions{.clip_norm = -1.f}),
                       doctest::Contains("clip_norm -1"), ValueError);
  CHECK_THROWS_WITH_AS(Trainer(model, Adam{}, Constant{}, TrainerOptions{.explode_factor = 0.5f}),
                       doctest::Contains("explode_factor 0.5"), ValueError);
  CHECK_THROWS_AS(Trainer(model, Adam{.beta1 = 1.5f}, Constant{}), ValueError);
}

TEST_CASE_TEMPLATE("gradient accumulation: K batches make the update one batch of all their sentences makes", Norm,
                   PreLN, PostLN) {
  auto const task = small_task();
  auto const config = small_model(task, 2);  // dropout 0: the masks of K batches and one cannot agree
  Rng rng(31, 1);
  // Three batches of different sizes (so the mean of their means is not the mean over all tokens).
  std::vector<std::vector<SyntheticExample>> parts{task.sample(rng, 3), task.sample(rng, 9), task.sample(rng, 5)};
  std::vector<SyntheticExample> all;
  std::vector<Batch<Cpu>> batches;
  for (auto const& p : parts) {
    all.insert(all.end(), p.begin(), p.end());
    batches.push_back(make_batch<Cpu>(p));
  }
  Seq2Seq<Norm, Cpu> accumulated(config, 5), joined(config, 5);
  // SGD keeps the update linear in the gradient (Adam's first step is sign-like and hides differences).
  Trainer ta(accumulated, Sgd{}, Constant{.lr = 0.5f}, TrainerOptions{.clip_norm = 0.f});
  Trainer tj(joined, Sgd{}, Constant{.lr = 0.5f}, TrainerOptions{.clip_norm = 0.f});
  for (int step = 1; step <= 2; ++step) {
    auto const sa = ta.step(std::span<Batch<Cpu> const>(batches));
    auto const sj = tj.step(make_batch<Cpu>(all));
    CHECK(sa.step == step);
    CHECK(sa.loss.tokens == sj.loss.tokens);
    CHECK(sa.loss.tokens == batches[0].target_tokens + batches[1].target_tokens + batches[2].target_tokens);
    CHECK(sa.loss.mean_loss() == doctest::Approx(sj.loss.mean_loss()).epsilon(1e-5));
    CHECK(sa.grad_norm == doctest::Approx(sj.grad_norm).epsilon(1e-5));
  }
  auto const a = accumulated.parameters(), j = joined.parameters();
  double worst = 0;
  for (std::size_t i = 0; i < a.size(); ++i) {
    auto const x = a[i].param->value.to_host(), y = j[i].param->value.to_host();
    for (std::size_t k = 0; k < x.size(); ++k) worst = std::max(worst, static_cast<double>(std::abs(x[k] - y[k])));
  }
  CHECK(worst < 2e-6);
  // The mean over all tokens is what is matched: the mean of the three batches' means differs.
  Seq2Seq<Norm, Cpu> probe(config, 5);
  double mean_of_means = 0;
  for (auto const& b : batches) mean_of_means += probe.forward(b, ForwardContext{.training = false}).mean_loss() / 3;
  auto const joined_loss = probe.forward(make_batch<Cpu>(all), ForwardContext{.training = false}).mean_loss();
  CHECK(std::abs(mean_of_means - joined_loss) > 1e-4);
}

TEST_CASE("gradient accumulation: each batch of a step draws its own dropout masks; one batch is a plain step") {
  auto const task = small_task();
  auto const config = small_model(task, 1, /*dropout=*/0.3f);
  Rng rng(32, 1);
  auto const ex = task.sample(rng, 8);
  auto const b = make_batch<Cpu>(ex);
  // The same batch twice in one step: with the same masks the loss would be twice one batch's.
  Seq2Seq<PreLN, Cpu> m1(config, 2), m2(config, 2), m3(config, 2);
  Trainer t1(m1, Adam{}, Constant{.lr = 1e-3f}), t2(m2, Adam{}, Constant{.lr = 1e-3f}), t3(m3, Adam{}, Constant{.lr = 1e-3f});
  std::vector<Batch<Cpu>> twice;
  twice.push_back(make_batch<Cpu>(ex));
  twice.push_back(make_batch<Cpu>(ex));
  auto const s2 = t1.step(std::span<Batch<Cpu> const>(twice));
  auto const s1 = t2.step(b);
  CHECK(s2.loss.tokens == 2 * s1.loss.tokens);
  CHECK(std::abs(s2.loss.loss - 2 * s1.loss.loss) > 1e-3);
  // A span of one batch is step(batch), bit for bit.
  auto const one = t3.step(std::span<Batch<Cpu> const>(&b, 1));
  CHECK(one.loss.loss == s1.loss.loss);
  CHECK(m2.parameters()[3].param->value.to_host() == m3.parameters()[3].param->value.to_host());
  // No batch at all is an error outside data-parallel training.
  CHECK_THROWS_AS(t3.step(std::span<Batch<Cpu> const>()), ValueError);
}
