// bench_bf16_curve: does training with bf16 GEMM math (cpu::set_gemm_math: operands rounded to bf16,
// f32 accumulation, f32 master weights) follow the f32 loss curve within noise? For each chosen norm,
// three runs from the same initial parameters on the same batches (Adam, beta2 0.98, inverse_sqrt
// warm-up, dropout 0.1, label smoothing 0.1, clipping at 1):
//
//   f32        the reference
//   bf16       bf16 GEMM math, same dropout masks
//   f32 seed'  f32 again with another dropout seed: the run-to-run noise a bf16 curve is measured against
//
// Prints the three losses every --every steps, then per norm the mean |bf16 - f32| and the mean
// |f32 seed' - f32| over all steps and over the last quarter, the final losses, and ms per step of
// each run (where oneDNN has no bf16 kernels, bf16 is emulated: same numbers, slower than f32).
//
//   OMP_NUM_THREADS=2 ./bench_bf16_curve                 300 steps of a small model, PostLN and PreLN
//   ./bench_bf16_curve --steps 500 --norms pre --d-model 512 --layers 6 --json curve.json

#include "policy_matrix/cells.hpp"

#include <lnformer/lnformer.hpp>

#include <CLI/CLI.hpp>
#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <chrono>
#include <cmath>
#include <cstdint>
#include <fstream>
#include <string>
#include <vector>

using namespace lnformer;
using namespace lnformer::bench;

namespace {

struct Run {
  std::vector<double> loss;  // mean loss per target token of each step
  double ms_per_step = 0;
};

template <class Norm>
Run train(Options const& o, std::vector<Batch<Cpu>> const& batches, cpu::GemmMath math, std::uint64_t dropout_seed,
          int every, char const* label) {
  cpu::ScopedGemmMath const scope(math);
  Seq2Seq<Norm, Cpu> model(model_config(o), o.seed);
  Trainer trainer(model, make_optimizer<Adam>(), make_schedule<InverseSqrt>(o),
                  TrainerOptions{.clip_norm = o.clip_norm, .seed = dropout_seed});
  Run run;
  auto const t0 = Clock::now();
  for (int i = 0; i < o.steps; ++i) {
    auto const s = trainer.step(batches[static_cast<std::size_t>(i) % batches.size()]);
    run.loss.push_back(s.loss.loss / static_cast<double>(s.loss.tokens));
    if ((i + 1) % (every * 4) == 0 || i + 1 == o.steps)
      fmt::print(stderr, "  {} {}: step {}/{}, loss {:.4f}\n", Norm::name, label, i + 1, o.steps, run.loss.back());
  }
  run.ms_per_step = std::chrono::duration<double, std::milli>(Clock::now() - t0).count() / o.steps;
  return run;
}

double mean_abs_diff(std::vector<double> const& a, std::vector<double> const& b, std::size_t from) {
  double s = 0;
  for (std::size_t i = from; i < a.size(); ++i) s += std::abs(a[i] - b[i]);
  return s / static_cast<double>(a.size() - from);
}

template <class Norm>
nlohmann::json compare(Options const& o, std::vector<Batch<Cpu>> const& batches, int every) {
  Run const f32 = train<Norm>(o, batches, cpu::GemmMath::f32, o.seed, every, "f32");
  Run const bf16 = train<Norm>(o, batches, cpu::GemmMath::bf16, o.seed, every, "bf16");
  Run const other = train<Norm>(o, batches, cpu::GemmMath::f32, o.seed + 1000, every, "f32 seed'");
  fmt::print("\n{}: loss per target token\n{:>6} {:>9} {:>9} {:>10} {:>12} {:>14}\n", Norm::name, "step", "f32",
             "bf16", "f32 seed'", "|bf16-f32|", "|seed'-f32|");
  for (std::size_t i = 0; i < f32.loss.size(); ++i) {
    if ((i + 1) % static_cast<std::size_t>(every) != 0 && i != 0 && i + 1 != f32.loss.size()) continue;
    fmt::print("{:>6} {:>9.4f} {:>9.4f} {:>10.4f} {:>12.4f} {:>14.4f}\n", i + 1, f32.loss[i], bf16.loss[i],
               other.loss[i], std::abs(bf16.loss[i] - f32.loss[i]), std::abs(other.loss[i] - f32.loss[i]));
  }
  std::size_t const quarter = f32.loss.size() - std::max<std::size_t>(1, f32.loss.size() / 4);
  double const d_all = mean_abs_diff(bf16.loss, f32.loss, 0), n_all = mean_abs_diff(other.loss, f32.loss, 0);
  double const d_end = mean_abs_diff(bf16.loss, f32.loss, quarter), n_end = mean_abs_diff(other.loss, f32.loss, quarter);
  auto verdict = [](double d, double n) {
    return d <= n ? std::string("within noise") : fmt::format("{:.2f}x the noise", d / n);
  };
  fmt::print("{}: mean |bf16 - f32| {:.4f} against noise (mean |f32 seed' - f32|) {:.4f} over all {} steps: {}\n",
             Norm::name, d_all, n_all, f32.loss.size(), verdict(d_all, n_all));
  fmt::print("{}: over the last {} steps: {:.4f} against {:.4f}: {}\n", Norm::name, f32.loss.size() - quarter, d_end,
             n_end, verdict(d_end, n_end));
  fmt::print("{}: final loss f32 {:.4f}, bf16 {:.4f}, f32 seed' {:.4f}; ms/step f32 {:.1f}, bf16 {:.1f}\n", Norm::name,
             f32.loss.back(), bf16.loss.back(), other.loss.back(), f32.ms_per_step, bf16.ms_per_step);
  std::fflush(stdout);
  return {{"norm", Norm::name},
          {"loss_f32", f32.loss},
          {"loss_bf16", bf16.loss},
          {"loss_f32_other_seed", other.loss},
          {"mean_abs_diff_bf16", d_all},
          {"mean_abs_diff_noise", n_all},
          {"mean_abs_diff_bf16_last_quarter", d_end},
          {"mean_abs_diff_noise_last_quarter", n_end},
          {"ms_per_step_f32", f32.ms_per_step},
          {"ms_per_step_bf16", bf16.ms_per_step}};
}

}  // namespace

int main(int argc, char** argv) {
  Options o;
  o.layers = 2;
  o.d_model = 256;
  o.ffn = 512;
  o.vocab = 2000;
  o.sentences = 32;
  o.src_len = o.tgt_len = 16;
  o.batches = 16;
  o.steps = 300;
  o.lr = 5e-4f;
  o.warmup = 50;
  int every = 25;
  std::string norms = "post,pre";
  CLI::App app{"Loss curves of bf16 GEMM math against f32 and against f32 with another dropout seed"};
  app.add_option("--layers", o.layers, "encoder and decoder layers")->capture_default_str()->check(CLI::PositiveNumber);
  app.add_option("--d-model", o.d_model, "model width")->capture_default_str()->check(CLI::PositiveNumber);
  app.add_option("--ffn", o.ffn, "feed-forward width")->capture_default_str()->check(CLI::PositiveNumber);
  app.add_option("--heads", o.heads, "attention heads")->capture_default_str()->check(CLI::PositiveNumber);
  app.add_option("--vocab", o.vocab, "vocabulary (shared, tied output)")->capture_default_str()->check(CLI::Range(16, 1 << 20));
  app.add_option("--sentences", o.sentences, "sentences per batch")->capture_default_str()->check(CLI::PositiveNumber);
  app.add_option("--src-len", o.src_len, "source tokens per sentence")->capture_default_str()->check(CLI::Range(2, 1000));
  app.add_option("--tgt-len", o.tgt_len, "target tokens per sentence")->capture_default_str()->check(CLI::Range(2, 1000));
  app.add_option("--batches", o.batches, "distinct random batches, used in turn (the model learns them)")->capture_default_str()->check(CLI::PositiveNumber);
  app.add_option("--steps", o.steps, "training steps of each run")->capture_default_str()->check(CLI::PositiveNumber);
  app.add_option("--every", every, "print the losses every this many steps")->capture_default_str()->check(CLI::PositiveNumber);
  app.add_option("--lr", o.lr, "peak learning rate")->capture_default_str()->check(CLI::PositiveNumber);
  app.add_option("--warmup", o.warmup, "inverse_sqrt warm-up steps")->capture_default_str()->check(CLI::PositiveNumber);
  app.add_option("--clip-norm", o.clip_norm, "gradient clipping (0: off)")->capture_default_str()->check(CLI::NonNegativeNumber);
  app.add_option("--seed", o.seed, "initialisation, batches and dropout")->capture_default_str();
  app.add_option("--norms", norms, "comma-separated subset of: post, pre")->capture_default_str();
  app.add_option("--json", o.json, "also write the curves as JSON to this file");
  CLI11_PARSE(app, argc, argv);

  try {
    LNF_EXPECTS_AS(ValueError, o.d_model % o.heads == 0, "--d-model {} must be divisible by --heads {}", o.d_model, o.heads);
    bool const post = norms.find("post") != std::string::npos, pre = norms.find("pre") != std::string::npos;
    LNF_EXPECTS_AS(ValueError, (post || pre) && norms.find_first_not_of("postre,") == std::string::npos,
                   "--norms '{}': expected post, pre or post,pre", norms);
    char const* threads = std::getenv("OMP_NUM_THREADS");
    fmt::print("bf16 curve: Seq2Seq {}+{} layers, d {}, ffn {}, heads {}, vocab {}; {} batches of {} x ({} -> {}) "
               "tokens; {} steps, Adam, inverse_sqrt (lr {}, warm-up {}), clip {}; OMP_NUM_THREADS={}\n"
               "oneDNN bf16 matmul kernels on this CPU: {}\n",
               o.layers, o.layers, o.d_model, o.ffn, o.heads, o.vocab, o.batches, o.sentences, o.src_len, o.tgt_len,
               o.steps, o.lr, o.warmup, o.clip_norm, threads ? threads : "(unset)",
               cpu::native_bf16_gemm() ? "yes" : "no (bf16 emulated: the same numbers, not faster)");
    std::fflush(stdout);  // before the progress lines on stderr
    auto const batches = make_batches(o);
    nlohmann::json rows = nlohmann::json::array();
    if (post) rows.push_back(compare<PostLN>(o, batches, every));
    if (pre) rows.push_back(compare<PreLN>(o, batches, every));
    if (!o.json.empty()) {
      std::ofstream f(o.json);
      f << nlohmann::json{{"native_bf16", cpu::native_bf16_gemm()}, {"steps", o.steps}, {"rows", rows}}.dump(2) << '\n';
      LNF_EXPECTS_AS(IoError, f.good(), "could not write '{}'", o.json);
      fmt::print("wrote {}\n", o.json);
    }
    return 0;
  } catch (Error const& e) {
    fmt::print(stderr, "bench_bf16_curve: {}\n", e.what());
    return 1;
  }
}
