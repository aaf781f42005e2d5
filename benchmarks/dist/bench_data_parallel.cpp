// bench_data_parallel: scaling of data-parallel training over MPI, in one run.
//
//   mpirun -np 2 --oversubscribe bench_data_parallel [options]      (benchmarks/data_parallel.sh)
//
// Phase 1: rank 0 trains alone (the other ranks wait) on one batch per step; phase 2: every rank
// trains on its own batch of the same size, data-parallel (a step's global batch is N batches), with
// the gradient sums after the backward pass; phase 3: the same with the sums overlapped with the
// backward pass (dist::GradientReducer, the Trainer's default). All use the same model, batches,
// threads per rank and steps, so
//   scaling efficiency = (global tokens/s with N ranks) / (N x tokens/s of one rank)
//                      = (one rank's step time) / (N ranks' step time)
// and the communication time per step is the time spent inside the collectives (the gradient
// all-reduce, the loss sums; waiting for a slower rank counts): with overlap, the part of the
// communication the backward pass did not hide. Prints a table and, with --json, a JSON file.
#include <lnformer/dist/mpi.hpp>
#include <lnformer/lnformer.hpp>

#include <CLI/CLI.hpp>
#include <fmt/format.h>
#include <nlohmann/json.hpp>
#include <omp.h>

#include <algorithm>
#include <chrono>
#include <fstream>
#include <vector>

using namespace lnformer;
using Clock = std::chrono::steady_clock;

namespace {

struct Options {
  int layers = 3;
  std::int64_t d_model = 256, ffn = 1024, heads = 4, vocab = 8000;
  int sentences = 64, src_len = 24, tgt_len = 24;
  int warm_steps = 1, steps = 5;
  std::size_t bucket_floats = dist::kDefaultBucketFloats;
  std::uint64_t seed = 1;
  std::string json;
};

Batch<Cpu> random_batch(Options const& o, Rng& rng) {
  auto sentence = [&](int len) {
    std::vector<std::int32_t> s(static_cast<std::size_t>(len));
    for (auto& x : s) x = 4 + static_cast<std::int32_t>(rng.next_u32() % static_cast<std::uint32_t>(o.vocab - 4));
    return s;
  };
  std::vector<std::vector<std::int32_t>> src, tgt;
  for (int i = 0; i < o.sentences; ++i) src.push_back(sentence(o.src_len - 1)), tgt.push_back(sentence(o.tgt_len - 1));
  return make_batch<Cpu>(src, tgt);
}

struct Phase {
  double seconds_per_step = 0;   // median
  double comm_per_step = 0;      // mean time in collectives per timed step (rank 0)
  double comm_max_per_step = 0;  // the largest over the ranks
  double mb_per_step = 0;        // payload all-reduced per step by one rank
  double loss = 0;
};

/// Trains warm + timed steps with `comm` (null: alone) on this rank's batches; returns rank 0's view.
Phase run(Options const& o, dist::Communicator* comm, std::vector<Batch<Cpu>> const& batches, bool overlap = true) {
  ModelConfig const cfg{.enc_layers = o.layers, .dec_layers = o.layers, .d_model = o.d_model, .ffn = o.ffn,
                        .heads = o.heads, .vocab = o.vocab, .max_positions = std::max(o.src_len, o.tgt_len) + 2,
                        .dropout = 0.1f};
  Seq2Seq<PreLN, Cpu> model(cfg, o.seed);
  Trainer trainer(model, Adam{.beta2 = 0.98f}, InverseSqrt{.peak = 5e-4f, .warmup = 4},
                  TrainerOptions{.clip_norm = 1.f, .seed = o.seed, .comm = comm, .bucket_floats = o.bucket_floats,
                                 .overlap_allreduce = overlap});
  for (int i = 0; i < o.warm_steps; ++i) trainer.step(batches[static_cast<std::size_t>(i) % batches.size()]);
  if (comm) comm->reset_stats();
  std::vector<double> times;
  Phase p;
  for (int i = 0; i < o.steps; ++i) {
    auto const t0 = Clock::now();
    auto const s = trainer.step(batches[static_cast<std::size_t>(o.warm_steps + i) % batches.size()]);
    times.push_back(std::chrono::duration<double>(Clock::now() - t0).count());
    p.loss = s.loss.mean_loss();
  }
  std::sort(times.begin(), times.end());
  p.seconds_per_step = times[times.size() / 2];
  if (comm) {
    p.comm_per_step = comm->stats().seconds / o.steps;
    p.mb_per_step = static_cast<double>(comm->stats().bytes) / 1e6 / o.steps;
    double worst = p.comm_per_step;
    comm->allreduce_sum(std::span<double>(&worst, 1));  // (a max would do; the sum bounds it and is cheap)
    p.comm_max_per_step = worst;
  }
  return p;
}

}  // namespace

int main(int argc, char** argv) {
  dist::MpiSession session(argc, argv);
  dist::Mpi world;
  Options o;
  CLI::App app{"Data-parallel scaling over MPI: one rank alone, then all ranks (run under mpirun)"};
  app.add_option("--layers", o.layers, "encoder and decoder layers")->capture_default_str();
  app.add_option("--d-model", o.d_model, "model width")->capture_default_str();
  app.add_option("--ffn", o.ffn, "feed-forward width")->capture_default_str();
  app.add_option("--heads", o.heads, "attention heads")->capture_default_str();
  app.add_option("--vocab", o.vocab, "vocabulary")->capture_default_str()->check(CLI::Range(16, 1 << 20));
  app.add_option("--sentences", o.sentences, "sentences per batch (per rank)")->capture_default_str()->check(CLI::PositiveNumber);
  app.add_option("--src-len", o.src_len, "source tokens per sentence")->capture_default_str()->check(CLI::Range(2, 1000));
  app.add_option("--tgt-len", o.tgt_len, "target tokens per sentence")->capture_default_str()->check(CLI::Range(2, 1000));
  app.add_option("--warm-steps", o.warm_steps, "untimed steps first")->capture_default_str()->check(CLI::NonNegativeNumber);
  app.add_option("--steps", o.steps, "timed steps (the median is reported)")->capture_default_str()->check(CLI::PositiveNumber);
  app.add_option("--seed", o.seed, "initialisation and batches")->capture_default_str();
  app.add_option("--bucket-floats", o.bucket_floats, "gradient all-reduce bucket, in floats")
      ->capture_default_str()->check(CLI::PositiveNumber);
  app.add_option("--json", o.json, "also write the figures as JSON to this file");
  try {
    app.parse(argc, argv);
  } catch (CLI::ParseError const& e) {
    return world.is_root() ? app.exit(e) : (e.get_exit_code() == 0 ? 0 : 1);
  }
  int const n = world.size();
  bool const root = world.is_root();
  try {
    Rng rng(o.seed, 100 + static_cast<std::uint64_t>(world.rank()));  // each rank its own batches
    std::vector<Batch<Cpu>> batches;
    for (int i = 0; i < 2; ++i) batches.push_back(random_batch(o, rng));
    std::int64_t const tokens = batches[0].src_tokens + batches[0].target_tokens;
    std::int64_t params = 0;
    if (root) {
      fmt::print("data-parallel scaling: {} rank(s) x {} OpenMP thread(s); Seq2Seq<PreLN> {}+{} layers, d {}, ffn {}, "
                 "vocab {}; {} x ({}+{}) tokens per rank and step; median of {} steps after {}\n",
                 n, omp_get_max_threads(), o.layers, o.layers, o.d_model, o.ffn, o.vocab, o.sentences, o.src_len,
                 o.tgt_len, o.steps, o.warm_steps);
      std::fflush(stdout);
    }
    Phase one;
    if (root) one = run(o, nullptr, batches);
    world.barrier();  // the other ranks wait here during phase 1
    Phase const after = run(o, &world, batches, /*overlap=*/false);
    Phase const all = run(o, &world, batches, /*overlap=*/true);
    if (root) {
      Seq2Seq<PreLN, Cpu> m(ModelConfig{.enc_layers = o.layers, .dec_layers = o.layers, .d_model = o.d_model,
                                        .ffn = o.ffn, .heads = o.heads, .vocab = o.vocab,
                                        .max_positions = std::max(o.src_len, o.tgt_len) + 2},
                            o.seed);
      for (auto const& p : m.parameters()) params += p.param->value.numel();
      double const tps1 = static_cast<double>(tokens) / one.seconds_per_step;
      double const tpsn = static_cast<double>(tokens) * n / all.seconds_per_step;
      double const tps_after = static_cast<double>(tokens) * n / after.seconds_per_step;
      double const eff = tpsn / (n * tps1);
      fmt::print("{:>8} {:>16} {:>12} {:>14} {:>16} {:>18} {:>14}\n", "ranks", "gradient sums", "s/step", "tokens/s",
                 "comm s/step", "all-reduce MB/step", "loss");
      fmt::print("{:>8} {:>16} {:>12.3f} {:>14.0f} {:>16} {:>18} {:>14.4f}\n", 1, "-", one.seconds_per_step, tps1, "-",
                 "-", one.loss);
      fmt::print("{:>8} {:>16} {:>12.3f} {:>14.0f} {:>16.3f} {:>18.1f} {:>14.4f}\n", n, "after backward",
                 after.seconds_per_step, tps_after, after.comm_per_step, after.mb_per_step, after.loss);
      fmt::print("{:>8} {:>16} {:>12.3f} {:>14.0f} {:>16.3f} {:>18.1f} {:>14.4f}\n", n, "overlapped",
                 all.seconds_per_step, tpsn, all.comm_per_step, all.mb_per_step, all.loss);
      fmt::print("scaling efficiency 1 -> {} ranks: {:.1f}% (speed-up {:.2f}x) overlapped, {:.1f}% with the sums after "
                 "backward; communication {:.1f}% of a step overlapped, {:.1f}% after ({} parameters, {:.1f} MB of "
                 "gradients)\n",
                 n, 100 * eff, tpsn / tps1, 100 * tps_after / (n * tps1), 100 * all.comm_per_step / all.seconds_per_step,
                 100 * after.comm_per_step / after.seconds_per_step, params, static_cast<double>(params) * 4 / 1e6);
      if (!o.json.empty()) {
        nlohmann::json j{{"ranks", n},
                         {"threads_per_rank", omp_get_max_threads()},
                         {"parameters", params},
                         {"tokens_per_rank_step", tokens},
                         {"one_rank", {{"seconds_per_step", one.seconds_per_step}, {"tokens_per_s", tps1}}},
                         {"all_ranks",
                          {{"seconds_per_step", all.seconds_per_step},
                           {"tokens_per_s", tpsn},
                           {"comm_seconds_per_step", all.comm_per_step},
                           {"allreduce_mb_per_step", all.mb_per_step}}},
                         {"all_ranks_sums_after_backward",
                          {{"seconds_per_step", after.seconds_per_step},
                           {"tokens_per_s", tps_after},
                           {"comm_seconds_per_step", after.comm_per_step}}},
                         {"scaling_efficiency", eff}};
        std::ofstream(o.json) << j.dump(2) << '\n';
      }
    }
  } catch (std::exception const& e) {
    fmt::print(stderr, "bench_data_parallel: rank {}: {}\n", world.rank(), e.what());
    std::fflush(stderr);
    world.abort(1);
  }
  return 0;
}
