#pragma once
// paper_figures' options: the figure and setup names, the Options struct, the command line that fills
// it and the checks that normalise it. The policy names come from the caller (--norms' help and check).

#include <lnformer/core/error.hpp>

#include <CLI/CLI.hpp>
#include <fmt/format.h>
#include <fmt/ranges.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

namespace paper_figures {

using lnformer::ValueError;

inline std::vector<std::string> const kFigures{"grad_norms", "theorem1", "output_change", "dependency", "admin_profile",
                                        "warmup"};
inline std::vector<std::string> const kSetups{"paper", "trainer"};

struct Options {
  std::string out = "figures";
  std::vector<std::string> only;
  std::vector<std::string> norms{"post", "pre", "admin"};
  std::string setup = "paper";
  // the measured models
  std::int64_t d_model = 64;
  std::int64_t ffn = 0;  // 0: 2 * d_model
  std::int64_t heads = 4;
  // paper setup: random tokens
  std::int64_t vocab = 1000;
  std::int64_t length = 32;
  // trainer setup
  float dropout = 0.3f;
  float perturb_dropout = 0.f;
  int batches = 3;
  int batch_size = 16;
  int layers = 6;  // grad_norms, dependency, admin_profile
  int dependency_steps = 300;  // training before the "trained" dependency matrix
  std::vector<int> depths{3, 6, 12, 24};
  int seeds = 5;
  std::vector<int> sublayers{2, 4, 8, 16, 32, 64};
  int perturb_seeds = 15;
  bool perturb_embeddings = false;
  // warm-up experiment
  int steps = 400;
  int warmup = 100;
  std::vector<float> lrs{5e-4f, 1e-3f};
  int warm_layers = 6;
  std::int64_t warm_d_model = 32;
  int warm_batch = 32;
  int eval_every = 50;
  int held_out = 200;
  std::uint64_t seed = 1;
  int threads = 0;
  bool no_png = false;
};

/// Every option of the command line into `o`; `norm_names` lists the policies --norms accepts.
inline void add_options(CLI::App& app, Options& o, std::string const& norm_names) {
  app.add_option("--out", o.out, "output directory")->capture_default_str();
  app.add_option("--only", o.only, "figures to make (comma-separated; default all): " + fmt::format("{}", fmt::join(kFigures, ", ")))
      ->delimiter(',')
      ->check(CLI::IsMember(kFigures));
  app.add_option("--norms", o.norms, "policies to measure: " + norm_names)
      ->delimiter(',')
      ->capture_default_str();
  app.add_option("--setup", o.setup,
                 "the measured models and data: paper (untied output projection with bias, plain cross-entropy, no "
                 "dropout, random tokens, decoder fed the target) or trainer (the trainer's tied, label-smoothed model "
                 "with dropout on the synthetic task); dependency and warmup always use trainer")
      ->check(CLI::IsMember(kSetups))
      ->capture_default_str();
  app.add_option("--d-model", o.d_model, "model width of the measured models")->check(CLI::PositiveNumber)->capture_default_str();
  app.add_option("--ffn", o.ffn, "feed-forward width (0: 2 * d-model)")->check(CLI::NonNegativeNumber)->capture_default_str();
  app.add_option("--heads", o.heads, "attention heads")->check(CLI::PositiveNumber)->capture_default_str();
  app.add_option("--vocab", o.vocab, "paper setup: vocabulary of the random tokens")
      ->check(CLI::Range(5, 1 << 20))
      ->capture_default_str();
  app.add_option("--length", o.length, "paper setup: tokens per source and target sentence")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  app.add_option("--dropout", o.dropout, "trainer setup: dropout of the measured models (same masks in every pass)")
      ->check(CLI::Range(0.f, 0.9f))
      ->capture_default_str();
  app.add_option("--batches", o.batches, "batches the gradient norms are averaged over")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  app.add_option("--batch-size", o.batch_size, "sequences per measurement batch")->check(CLI::PositiveNumber)->capture_default_str();
  app.add_option("--layers", o.layers,
                 "layers per stack for grad_norms, dependency and admin_profile; output_change's decoder layers")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  app.add_option("--dependency-steps", o.dependency_steps, "dependency: training updates before the trained matrix")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  app.add_option("--depths", o.depths, "theorem1: layers per stack (comma-separated, at least 2)")
      ->delimiter(',')
      ->capture_default_str();
  app.add_option("--seeds", o.seeds, "grad_norms and theorem1: models (seeds --seed, --seed + 1, ...) per point")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  app.add_option("--sublayers", o.sublayers,
                 "output_change: encoder sublayer counts N (even, comma-separated, at least 3; N / 2 layers)")
      ->delimiter(',')
      ->capture_default_str();
  app.add_option("--perturb-seeds", o.perturb_seeds, "output_change: models (and sign draws) per depth")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  app.add_flag("--perturb-embeddings", o.perturb_embeddings,
               "output_change: perturb the token embeddings too (the reference code's parameter set)");
  app.add_option("--perturb-dropout", o.perturb_dropout,
                 "output_change, trainer setup: dropout (0 as in the reference protocol)")
      ->check(CLI::Range(0.f, 0.9f))
      ->capture_default_str();
  app.add_option("--steps", o.steps, "warmup: training steps per run")->check(CLI::PositiveNumber)->capture_default_str();
  app.add_option("--warmup", o.warmup, "warmup: warm-up steps of the inverse_sqrt run")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  app.add_option("--lrs", o.lrs, "warmup: peak learning rates (comma-separated)")->delimiter(',')->capture_default_str();
  app.add_option("--warm-layers", o.warm_layers, "warmup: layers per stack")->check(CLI::PositiveNumber)->capture_default_str();
  app.add_option("--warm-d-model", o.warm_d_model, "warmup: model width")->check(CLI::PositiveNumber)->capture_default_str();
  app.add_option("--warm-batch", o.warm_batch, "warmup: sequences per step")->check(CLI::PositiveNumber)->capture_default_str();
  app.add_option("--eval-every", o.eval_every, "warmup: steps between held-out evaluations")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  app.add_option("--held-out", o.held_out, "warmup: held-out sequences")->check(CLI::PositiveNumber)->capture_default_str();
  app.add_option("--seed", o.seed, "the first model seed")->capture_default_str();
  app.add_option("--threads", o.threads, "OpenMP threads (0: the OpenMP default)")
      ->check(CLI::NonNegativeNumber)
      ->capture_default_str();
  app.add_flag("--no-png", o.no_png, "write CSV and gnuplot scripts only");
}

/// The checks that need more than one option, and sorted, de-duplicated lists (--depths, --sublayers);
/// a ValueError names the option. The policy names (--norms) are checked by the caller.
inline void check_and_normalise(Options& o) {
  LNF_EXPECTS_AS(ValueError, o.depths.size() >= 2, "--depths needs at least 2 depths, got {}", o.depths.size());
  for (int d : o.depths) LNF_EXPECTS_AS(ValueError, d >= 1, "--depths: {} is not a positive depth", d);
  std::sort(o.depths.begin(), o.depths.end());
  o.depths.erase(std::unique(o.depths.begin(), o.depths.end()), o.depths.end());
  LNF_EXPECTS_AS(ValueError, o.depths.size() >= 2, "--depths needs at least 2 different depths");
  for (int N : o.sublayers)
    LNF_EXPECTS_AS(ValueError, N >= 2 && N % 2 == 0, "--sublayers: {} is not a positive even count", N);
  std::sort(o.sublayers.begin(), o.sublayers.end());
  o.sublayers.erase(std::unique(o.sublayers.begin(), o.sublayers.end()), o.sublayers.end());
  LNF_EXPECTS_AS(ValueError, o.sublayers.size() >= 3, "--sublayers needs at least 3 different counts (two fits)");
  LNF_EXPECTS_AS(ValueError, !o.lrs.empty(), "--lrs is empty");
  for (float lr : o.lrs) LNF_EXPECTS_AS(ValueError, lr > 0 && std::isfinite(lr), "--lrs: {} is not a positive rate", lr);
}

}  // namespace paper_figures
