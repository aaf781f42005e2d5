// reverse: trains a small Seq2Seq to reverse (or sort, or copy) random token sequences, then decodes a
// held-out set greedily and prints its accuracy and a few examples.
//
// The task is algorithmic, so success is unambiguous: a model that has learnt it gets every held-out
// sequence right. It exercises everything a translation model uses (encoder, decoder, cross-attention,
// padding masks, label-smoothed loss, dropout, the optimizer, the schedule and gradient clipping), and
// the normalization policy is a run-time flag turned into a type once, in main().
//
//   reverse                                  PreLN, Adam, no warm-up: the defaults
//   reverse --norm post --warmup 400         Post-LN needs warm-up (Xiong et al. 2020)
//   reverse --norm admin                     Admin initialisation from one profiling batch
//   reverse --task sort --steps 3000
//
// Exit status: 0 when trained (whatever the accuracy), 1 on bad options or divergence.

#include <lnformer/data/synthetic.hpp>
#include <lnformer/lnformer.hpp>
#include <lnformer/train/trainer.hpp>

#include <CLI/CLI.hpp>
#include <fmt/format.h>
#include <omp.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <string>
#include <vector>

using namespace lnformer;

namespace {

struct Options {
  std::string norm = "pre";
  std::string task = "reverse";
  int steps = 3000;
  float lr = 1e-3f;
  int warmup = 0;
  int layers = 2;
  std::int64_t d_model = 64;
  std::int64_t ffn = 128;
  std::int64_t heads = 4;
  float dropout = 0.1f;
  float label_smoothing = 0.1f;
  float clip_norm = 1.0f;
  int symbols = 16;
  int min_len = 3;
  int max_len = 10;
  int batch = 64;
  int held_out = 500;
  int log_every = 100;
  std::uint64_t seed = 1;
  int threads = 0;
};

using Clock = std::chrono::steady_clock;
using Seq = std::vector<std::int32_t>;

SyntheticTask task_of(Options const& o) {
  return SyntheticTask{.kind = parse_synthetic_kind(o.task), .symbols = o.symbols, .min_len = o.min_len,
                       .max_len = o.max_len};
}

/// Symbols as letters: "c a b".
std::string show(Seq const& s, SyntheticTask const& task) {
  std::string out;
  for (auto t : s) out += fmt::format("{}{}", out.empty() ? "" : " ", static_cast<char>('a' + (t - task.first_symbol)));
  return out;
}

struct Evaluation {
  double token_accuracy = 0;     // teacher-forced, EOS included
  double sequence_accuracy = 0;  // greedy decoding, exact match
  double loss = 0;               // per target token
};

template <class Norm>
Evaluation evaluate(Seq2Seq<Norm, Cpu>& model, std::vector<SyntheticExample> const& held, Options const& o, bool decode) {
  TokenAccuracy acc;
  double loss = 0;
  std::int64_t exact = 0;
  for (std::size_t b = 0; b < held.size(); b += static_cast<std::size_t>(o.batch)) {
    std::size_t const e = std::min(held.size(), b + static_cast<std::size_t>(o.batch));
    auto const batch = make_batch<Cpu>(held, b, e);
    auto const a = teacher_forced_accuracy(model, batch);
    acc.correct += a.correct;
    acc.total += a.total;
    loss += a.loss.loss;
    if (decode) {
      std::vector<Seq> src;
      for (std::size_t i = b; i < e; ++i) src.push_back(held[i].src);
      auto const hyp = greedy_decode(model, src, o.max_len + 2);
      for (std::size_t i = b; i < e; ++i) exact += hyp[i - b] == held[i].tgt ? 1 : 0;
    }
  }
  return {acc.value(), static_cast<double>(exact) / static_cast<double>(held.size()),
          loss / static_cast<double>(acc.total)};
}

/// Trains with the schedule type chosen in main(); returns the exit status.
template <class Norm, class Sched>
int train(Options const& o, Sched const& schedule) {
  auto const task = task_of(o);
  ModelConfig const config{.enc_layers = o.layers,
                           .dec_layers = o.layers,
                           .d_model = o.d_model,
                           .ffn = o.ffn,
                           .heads = o.heads,
                           .vocab = task.vocab(),
                           .max_positions = o.max_len + 8,
                           .dropout = o.dropout,
                           .label_smoothing = o.label_smoothing};
  Seq2Seq<Norm, Cpu> model(config, o.seed);
  std::int64_t n_params = 0;
  for (auto const& p : model.parameters()) n_params += p.param->value.numel();

  Rng train_rng(o.seed, /*stream=*/1), held_rng(o.seed, /*stream=*/2);
  auto const held = task.sample(held_rng, static_cast<std::size_t>(o.held_out));

  fmt::print("task {}: {} symbols, lengths {}..{}; Seq2Seq<{}>, {} + {} layers, d {}, ffn {}, heads {}, "
             "{} parameters\n",
             o.task, o.symbols, o.min_len, o.max_len, Norm::name, o.layers, o.layers, o.d_model, o.ffn, o.heads,
             n_params);

  Trainer trainer(model, Adam{.beta1 = 0.9f, .beta2 = 0.98f}, schedule,
                  TrainerOptions{.clip_norm = o.clip_norm, .seed = o.seed});
  {
    // A policy that sets parameters from data (Admin's w, Liu et al. 2020) calibrates on one ordinary
    // training batch, in training mode.
    Rng profile_rng(o.seed, /*stream=*/3);
    auto const ex = task.sample(profile_rng, static_cast<std::size_t>(o.batch));
    if (trainer.calibrate(make_batch<Cpu>(ex)))
      fmt::print("{}: calibrated on one batch of {} sequences\n", Norm::name, ex.size());
  }
  fmt::print("optimizer adam ({}), schedule {} (lr {}, warm-up {}), clip norm {}, {} sequences per step, {} steps\n",
             trainer.optimizer().describe(), Sched::name, o.lr, o.warmup, o.clip_norm, o.batch, o.steps);

  auto const t0 = Clock::now();
  double window_loss = 0;
  std::int64_t window_tokens = 0, all_tokens = 0;
  for (int step = 1; step <= o.steps; ++step) {
    auto const batch = make_batch<Cpu>(task.sample(train_rng, static_cast<std::size_t>(o.batch)));
    StepStats s;
    try {
      s = trainer.step(batch);
    } catch (DivergenceError const& e) {
      fmt::print(stderr, "reverse: {}\n", e.what());
      return 1;
    }
    window_loss += s.loss.loss;
    window_tokens += s.loss.tokens;
    all_tokens += batch.src_tokens + s.loss.tokens;
    if (step % o.log_every == 0 || step == o.steps) {
      double const secs = std::chrono::duration<double>(Clock::now() - t0).count();
      auto const ev = evaluate(model, held, o, /*decode=*/false);
      fmt::print("step {:5d}  loss {:.4f}  gnorm {:6.3f}  lr {:.2e}  held-out loss {:.4f} token acc {:6.2f}%  "
                 "{:.0f} tok/s  {:.0f}s elapsed, ETA {:.0f}s\n",
                 step, window_loss / static_cast<double>(window_tokens), s.grad_norm, s.lr, ev.loss,
                 100 * ev.token_accuracy, static_cast<double>(all_tokens) / secs, secs,
                 secs / step * (o.steps - step));
      std::fflush(stdout);
      window_loss = 0;
      window_tokens = 0;
    }
  }

  auto const ev = evaluate(model, held, o, /*decode=*/true);
  double const secs = std::chrono::duration<double>(Clock::now() - t0).count();
  fmt::print("\nheld-out ({} sequences): token accuracy {:.2f}% (teacher-forced), exact match {:.2f}% (greedy); "
             "{:.0f} s\n",
             held.size(), 100 * ev.token_accuracy, 100 * ev.sequence_accuracy, secs);
  std::vector<Seq> src;
  for (std::size_t i = 0; i < 5 && i < held.size(); ++i) src.push_back(held[i].src);
  auto const hyp = greedy_decode(model, src, o.max_len + 2);
  for (std::size_t i = 0; i < hyp.size(); ++i)
    fmt::print("  {:<22} -> {:<22} {}\n", show(held[i].src, task), show(hyp[i], task),
               hyp[i] == held[i].tgt ? "ok" : "WRONG");
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  Options o;
  CLI::App app{"Train a small Seq2Seq Transformer on an algorithmic task and decode a held-out set"};
  app.add_option("--norm", o.norm, "normalization policy: " + type_names(NormPolicies{}))
      ->check(CLI::IsMember(type_name_list(NormPolicies{})))
      ->capture_default_str();
  app.add_option("--task", o.task, "what the target is: reverse, sort or copy of the source")
      ->check(CLI::IsMember({"reverse", "sort", "copy"}))
      ->capture_default_str();
  app.add_option("--steps", o.steps, "training steps")->check(CLI::PositiveNumber)->capture_default_str();
  app.add_option("--lr", o.lr, "peak learning rate")->check(CLI::PositiveNumber)->capture_default_str();
  app.add_option("--warmup", o.warmup, "warm-up steps (0: constant learning rate)")
      ->check(CLI::NonNegativeNumber)
      ->capture_default_str();
  app.add_option("--layers", o.layers, "encoder and decoder layers")->check(CLI::PositiveNumber)->capture_default_str();
  app.add_option("--d-model", o.d_model, "model width")->check(CLI::PositiveNumber)->capture_default_str();
  app.add_option("--ffn", o.ffn, "feed-forward width")->check(CLI::PositiveNumber)->capture_default_str();
  app.add_option("--heads", o.heads, "attention heads")->check(CLI::PositiveNumber)->capture_default_str();
  app.add_option("--dropout", o.dropout, "dropout")->check(CLI::Range(0.f, 0.9f))->capture_default_str();
  app.add_option("--label-smoothing", o.label_smoothing, "label smoothing")
      ->check(CLI::Range(0.f, 0.9f))
      ->capture_default_str();
  app.add_option("--clip-norm", o.clip_norm, "gradient clipping norm (0: off)")
      ->check(CLI::NonNegativeNumber)
      ->capture_default_str();
  app.add_option("--symbols", o.symbols, "alphabet size")->check(CLI::Range(2, 26))->capture_default_str();
  app.add_option("--min-len", o.min_len, "shortest sequence")->check(CLI::Range(1, 200))->capture_default_str();
  app.add_option("--max-len", o.max_len, "longest sequence")->check(CLI::Range(1, 200))->capture_default_str();
  app.add_option("--batch", o.batch, "sentences per step")->check(CLI::PositiveNumber)->capture_default_str();
  app.add_option("--held-out", o.held_out, "held-out sequences")->check(CLI::PositiveNumber)->capture_default_str();
  app.add_option("--log-every", o.log_every, "steps between progress lines")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  app.add_option("--seed", o.seed, "seed of the data, the initialisation and dropout")->capture_default_str();
  app.add_option("--threads", o.threads, "OpenMP threads (0: the OpenMP default)")
      ->check(CLI::NonNegativeNumber)
      ->capture_default_str();
  CLI11_PARSE(app, argc, argv);

  try {
    if (o.threads > 0) omp_set_num_threads(o.threads);
    task_of(o).validate();
    return dispatch(
        NormPolicies{}, o.norm,
        [&](auto tag) {
          using Norm = typename decltype(tag)::type;
          // With warm-up: fairseq's inverse square root schedule; without: a constant rate.
          if (o.warmup > 0) return train<Norm>(o, InverseSqrt{.peak = o.lr, .warmup = o.warmup});
          return train<Norm>(o, Constant{.lr = o.lr});
        },
        "--norm");
  } catch (Error const& e) {
    fmt::print(stderr, "reverse: {}\n", e.what());
    return 1;
  }
}
