// bench_policy_matrix: every normalization policy x optimizer x schedule of the library's own type lists
// (NormPolicies, Optimizers, Schedules: the lists the translation trainer dispatches over), each one
// instantiated at compile time, trains the same Seq2Seq from the same initial parameters on the same
// batches for a fixed number of steps. Prints one row per combination:
//
//   ms/step     median wall time of the timed steps (after --warm-steps untimed ones)
//   tgt tok/s   non-padding target tokens per second
//   GFLOP/s     model FLOPs per second: 3x the forward GEMM FLOPs (projections, attention products,
//               FFN, output head) of the padded batch, the usual training-FLOP count
//   of peak     that rate over the f32 GEMM peak, measured in the same run by a raw oneDNN matmul
//               (--peak-size cube, same threads) before the first combination
//   peak MB     the combination's peak resident memory: each one runs in its own child process
//               (fork), whose ru_maxrss the parent reads, so one combination's buffers and primitives
//               never count against the next
//   loss        mean label-smoothed loss per target token of the last step
//
// and, with --json FILE, the same as JSON. The parent process never runs OpenMP or oneDNN itself, so
// forking is safe.
//
//   OMP_NUM_THREADS=2 ./bench_policy_matrix                      all 5 x 4 x 6 = 120 combinations
//   ./bench_policy_matrix --norms pre,post --optimizers adam --schedules constant --d-model 512 --layers 6
//
// Defaults (the translation trainer's model shape at a smaller batch) take a few minutes on two cores.

#include <lnformer/lnformer.hpp>

#include <CLI/CLI.hpp>
#include <fmt/format.h>
#include <nlohmann/json.hpp>
#include <oneapi/dnnl/dnnl.hpp>

#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <sstream>
#include <string>
#include <type_traits>
#include <vector>

using namespace lnformer;

namespace {

using Clock = std::chrono::steady_clock;

struct Options {
  int layers = 3;
  std::int64_t d_model = 256, ffn = 1024, heads = 4, vocab = 8000;
  int sentences = 64, src_len = 24, tgt_len = 24;  // one batch: sentences x length, no padding
  int batches = 4;                                 // distinct batches, used in turn
  int warm_steps = 1, steps = 3;
  float lr = 1e-3f;
  std::int64_t warmup = 4;  // schedules with a warm-up
  float clip_norm = 1.f;
  std::uint64_t seed = 1;
  std::int64_t peak_size = 1024;
  std::string norms, optimizers, schedules, json;
};

/// Forward GEMM FLOPs of one batch (N sentences, padded lengths s and t) through the Seq2Seq.
double forward_flops(Options const& o) {
  double const n = o.sentences, s = o.src_len, t = o.tgt_len, d = static_cast<double>(o.d_model);
  double const f = static_cast<double>(o.ffn), v = static_cast<double>(o.vocab);
  double const enc = 2 * n * s * (4 * d * d + 2 * d * f) + 2 * 2 * n * s * s * d;
  double const dec = 2 * n * t * (4 * d * d + 2 * d * f)    // self-attention projections, FFN
                     + 2 * 2 * n * t * t * d                // self-attention products
                     + 2 * n * (2 * t * d * d + 2 * s * d * d)  // cross-attention: q, out on t; k, v on s
                     + 2 * 2 * n * t * s * d;               // cross-attention products
  return o.layers * (enc + dec) + 2 * n * t * d * v;
}

std::vector<Batch<Cpu>> make_batches(Options const& o) {
  Rng rng(o.seed, /*stream=*/7);
  std::vector<Batch<Cpu>> out;
  auto sentence = [&](int len) {
    std::vector<std::int32_t> s(static_cast<std::size_t>(len));
    for (auto& x : s) x = 4 + static_cast<std::int32_t>(rng.next_u32() % static_cast<std::uint32_t>(o.vocab - 4));
    return s;
  };
  for (int b = 0; b < o.batches; ++b) {
    std::vector<std::vector<std::int32_t>> src, tgt;
    for (int i = 0; i < o.sentences; ++i) src.push_back(sentence(o.src_len - 1)), tgt.push_back(sentence(o.tgt_len - 1));
    out.push_back(make_batch<Cpu>(src, tgt));  // each side gains its end-of-sentence token
  }
  return out;
}

template <class S>
S make_schedule(Options const& o) {
  S s{};
  if constexpr (requires { s.lr; }) s.lr = o.lr;
  if constexpr (requires { s.peak; }) s.peak = o.lr;
  if constexpr (requires { s.warmup; }) s.warmup = o.warmup;
  if constexpr (requires { s.total; }) s.total = o.warmup + o.warm_steps + o.steps;
  s.validate();
  return s;
}

template <class Opt>
Opt make_optimizer() {
  Opt opt{};
  if constexpr (requires { opt.beta2; }) opt.beta2 = 0.98f;  // the papers' fairseq recipes
  return opt;
}

/// What a child reports through its pipe (plain bytes: parent and child are the same program).
struct Result {
  double ms_per_step = 0, tokens_per_s = 0, gflops = 0, loss = 0;
  std::int64_t target_tokens = 0;
  char error[200] = {};
};

template <class Norm, class Opt, class Sched>
Result run_combination(Options const& o) {
  ModelConfig const config{.enc_layers = o.layers,
                           .dec_layers = o.layers,
                           .d_model = o.d_model,
                           .ffn = o.ffn,
                           .heads = o.heads,
                           .vocab = o.vocab,
                           .max_positions = std::max(o.src_len, o.tgt_len) + 8,
                           .dropout = 0.1f};
  Seq2Seq<Norm, Cpu> model(config, o.seed);
  auto const batches = make_batches(o);
  if constexpr (std::is_same_v<Norm, AdminLN>)
    apply_admin_profile(model, admin_profile(model, batches[0], ForwardContext{.seed = o.seed}));
  Trainer trainer(model, make_optimizer<Opt>(), make_schedule<Sched>(o),
                  TrainerOptions{.clip_norm = o.clip_norm, .seed = o.seed});
  Result r;
  std::vector<double> ms;
  StepStats last;
  for (int i = 0; i < o.warm_steps + o.steps; ++i) {
    auto const& batch = batches[static_cast<std::size_t>(i) % batches.size()];
    auto const t0 = Clock::now();
    last = trainer.step(batch);
    double const dt = std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
    if (i >= o.warm_steps) {
      ms.push_back(dt);
      r.target_tokens = last.loss.tokens;
    }
  }
  std::sort(ms.begin(), ms.end());
  r.ms_per_step = ms[ms.size() / 2];
  r.tokens_per_s = static_cast<double>(r.target_tokens) / (r.ms_per_step / 1e3);
  r.gflops = 3 * forward_flops(o) / (r.ms_per_step / 1e3) / 1e9;
  r.loss = last.loss.loss / static_cast<double>(last.loss.tokens);
  return r;
}

/// Best GFLOP/s of a raw oneDNN f32 matmul n x n x n over a few repetitions: the peak the model's
/// FLOP rate is compared with.
Result measure_peak(Options const& o) {
  using dnnl::memory;
  dnnl::engine eng(dnnl::engine::kind::cpu, 0);
  dnnl::stream strm(eng);
  memory::dims const dims{o.peak_size, o.peak_size};
  memory::desc const md(dims, memory::data_type::f32, memory::format_tag::ab);
  memory a(md, eng), b(md, eng), c(md, eng);
  for (auto* m : {&a, &b}) {
    auto* p = static_cast<float*>(m->get_data_handle());
    for (std::int64_t i = 0; i < o.peak_size * o.peak_size; ++i) p[i] = static_cast<float>((i * 7919) % 1000) / 1000.f;
  }
  dnnl::matmul prim(dnnl::matmul::primitive_desc(dnnl::matmul::desc(md, md, md), eng));
  double best = 1e30;
  for (int rep = 0; rep < 12; ++rep) {
    auto const t0 = Clock::now();
    prim.execute(strm, {{DNNL_ARG_SRC, a}, {DNNL_ARG_WEIGHTS, b}, {DNNL_ARG_DST, c}});
    strm.wait();
    best = std::min(best, std::chrono::duration<double>(Clock::now() - t0).count());
  }
  Result r;
  r.gflops = 2.0 * std::pow(static_cast<double>(o.peak_size), 3) / best / 1e9;
  return r;
}

/// Runs f() in a child process; returns its Result and peak RSS in MiB (error set on failure).
template <class F>
std::pair<Result, double> in_child(F&& f) {
  int fd[2];
  if (pipe(fd) != 0) throw IoError(fmt::format("pipe: {}", std::strerror(errno)));
  std::fflush(stdout);
  pid_t const pid = fork();
  if (pid < 0) throw IoError(fmt::format("fork: {}", std::strerror(errno)));
  if (pid == 0) {
    close(fd[0]);
    Result r;
    try {
      r = f();
    } catch (std::exception const& e) {
      std::snprintf(r.error, sizeof r.error, "%s", e.what());
    }
    ssize_t const w = write(fd[1], &r, sizeof r);
    _exit(w == static_cast<ssize_t>(sizeof r) ? 0 : 1);
  }
  close(fd[1]);
  Result r;
  ssize_t const got = read(fd[0], &r, sizeof r);
  close(fd[0]);
  int status = 0;
  rusage ru{};
  wait4(pid, &status, 0, &ru);
  if (got != static_cast<ssize_t>(sizeof r))
    std::snprintf(r.error, sizeof r.error, "the child process ended without a result (status %d)", status);
  return {r, static_cast<double>(ru.ru_maxrss) / 1024.0};
}

bool selected(std::string const& list, std::string_view name) {
  if (list.empty()) return true;
  std::stringstream ss(list);
  for (std::string item; std::getline(ss, item, ',');)
    if (item == name) return true;
  return false;
}

template <class L>
void check_names(std::string const& list, L types, char const* what) {
  std::stringstream ss(list);
  for (std::string item; std::getline(ss, item, ',');) {
    bool found = false;
    for_each_type(types, [&](auto tag) { found = found || decltype(tag)::type::name == item; });
    LNF_EXPECTS_AS(ValueError, found, "--{}: unknown '{}' (one of: {})", what, item, type_names(types));
  }
}

}  // namespace

int main(int argc, char** argv) {
  Options o;
  CLI::App app{"Every normalization policy x optimizer x schedule: ms per step, tokens/s, GFLOP/s, peak memory"};
  app.add_option("--layers", o.layers, "encoder and decoder layers")->capture_default_str();
  app.add_option("--d-model", o.d_model, "model width")->capture_default_str();
  app.add_option("--ffn", o.ffn, "feed-forward width")->capture_default_str();
  app.add_option("--heads", o.heads, "attention heads")->capture_default_str();
  app.add_option("--vocab", o.vocab, "vocabulary (shared, tied output)")->capture_default_str()->check(CLI::Range(16, 1 << 20));
  app.add_option("--sentences", o.sentences, "sentences per batch")->capture_default_str()->check(CLI::PositiveNumber);
  app.add_option("--src-len", o.src_len, "source tokens per sentence (with end of sentence)")->capture_default_str()->check(CLI::Range(2, 1000));
  app.add_option("--tgt-len", o.tgt_len, "target tokens per sentence (with end of sentence)")->capture_default_str()->check(CLI::Range(2, 1000));
  app.add_option("--batches", o.batches, "distinct batches, used in turn")->capture_default_str()->check(CLI::PositiveNumber);
  app.add_option("--warm-steps", o.warm_steps, "untimed steps first")->capture_default_str()->check(CLI::NonNegativeNumber);
  app.add_option("--steps", o.steps, "timed steps (the median is reported)")->capture_default_str()->check(CLI::PositiveNumber);
  app.add_option("--lr", o.lr, "(peak) learning rate")->capture_default_str()->check(CLI::PositiveNumber);
  app.add_option("--warmup", o.warmup, "warm-up steps of the schedules that have one")->capture_default_str()->check(CLI::PositiveNumber);
  app.add_option("--clip-norm", o.clip_norm, "gradient clipping (0: off)")->capture_default_str()->check(CLI::NonNegativeNumber);
  app.add_option("--seed", o.seed, "initialisation, batches and dropout")->capture_default_str();
  app.add_option("--peak-size", o.peak_size, "n of the n x n x n GEMM that measures the peak")->capture_default_str()->check(CLI::Range(64, 8192));
  app.add_option("--norms", o.norms, "comma-separated subset of: " + type_names(NormPolicies{}));
  app.add_option("--optimizers", o.optimizers, "comma-separated subset of: " + type_names(Optimizers{}));
  app.add_option("--schedules", o.schedules, "comma-separated subset of: " + type_names(Schedules{}));
  app.add_option("--json", o.json, "also write the table as JSON to this file");
  CLI11_PARSE(app, argc, argv);

  try {
    LNF_EXPECTS_AS(ValueError, o.d_model % o.heads == 0, "--d-model {} must be divisible by --heads {}", o.d_model, o.heads);
    check_names(o.norms, NormPolicies{}, "norms");
    check_names(o.optimizers, Optimizers{}, "optimizers");
    check_names(o.schedules, Schedules{}, "schedules");

    char const* threads = std::getenv("OMP_NUM_THREADS");
    fmt::print("policy matrix: Seq2Seq {}+{} layers, d {}, ffn {}, heads {}, vocab {}; batch {} x ({} -> {}) tokens; "
               "{} untimed + {} timed steps; lr {} (warm-up {}), clip {}; OMP_NUM_THREADS={}\n",
               o.layers, o.layers, o.d_model, o.ffn, o.heads, o.vocab, o.sentences, o.src_len, o.tgt_len,
               o.warm_steps, o.steps, o.lr, o.warmup, o.clip_norm, threads ? threads : "(unset)");
    auto const [peak, peak_mb] = in_child([&] { return measure_peak(o); });
    LNF_EXPECTS_AS(BackendError, peak.error[0] == '\0', "GEMM peak measurement failed: {}", peak.error);
    fmt::print("f32 GEMM peak (raw oneDNN matmul {0}x{0}x{0}, best of 12): {1:.1f} GFLOP/s; model {2:.2f} GFLOP "
               "per training step\n\n",
               o.peak_size, peak.gflops, 3 * forward_flops(o) / 1e9);
    fmt::print("{:<9} {:<7} {:<22} {:>9} {:>10} {:>8} {:>8} {:>8} {:>8}\n", "norm", "optim", "schedule", "ms/step",
               "tgt tok/s", "GFLOP/s", "of peak", "peak MB", "loss");

    nlohmann::json rows = nlohmann::json::array();
    int failures = 0;
    auto const t_all = Clock::now();
    for_each_type(NormPolicies{}, [&](auto ntag) {
      using Norm = typename decltype(ntag)::type;
      if (!selected(o.norms, Norm::name)) return;
      for_each_type(Optimizers{}, [&](auto otag) {
        using Opt = typename decltype(otag)::type;
        if (!selected(o.optimizers, Opt::name)) return;
        for_each_type(Schedules{}, [&](auto stag) {
          using Sched = typename decltype(stag)::type;
          if (!selected(o.schedules, Sched::name)) return;
          auto const [r, mb] = in_child([&] { return run_combination<Norm, Opt, Sched>(o); });
          if (r.error[0] != '\0') {
            ++failures;
            fmt::print("{:<9} {:<7} {:<22} failed: {}\n", Norm::name, Opt::name, Sched::name, r.error);
            rows.push_back({{"norm", Norm::name}, {"optimizer", Opt::name}, {"schedule", Sched::name}, {"error", r.error}});
            return;
          }
          fmt::print("{:<9} {:<7} {:<22} {:>9.1f} {:>10.0f} {:>8.1f} {:>7.1f}% {:>8.0f} {:>8.4f}\n", Norm::name,
                     Opt::name, Sched::name, r.ms_per_step, r.tokens_per_s, r.gflops, 100 * r.gflops / peak.gflops,
                     mb, r.loss);
          std::fflush(stdout);
          rows.push_back({{"norm", Norm::name},
                          {"optimizer", Opt::name},
                          {"schedule", Sched::name},
                          {"ms_per_step", r.ms_per_step},
                          {"target_tokens_per_s", r.tokens_per_s},
                          {"gflops", r.gflops},
                          {"fraction_of_peak", r.gflops / peak.gflops},
                          {"peak_rss_mib", mb},
                          {"loss", r.loss}});
        });
      });
    });
    fmt::print("\n{} combinations in {:.0f} s{}\n", rows.size(),
               std::chrono::duration<double>(Clock::now() - t_all).count(),
               failures ? fmt::format(", {} failed", failures) : "");
    if (!o.json.empty()) {
      nlohmann::json doc{{"config",
                          {{"layers", o.layers}, {"d_model", o.d_model}, {"ffn", o.ffn}, {"heads", o.heads},
                           {"vocab", o.vocab}, {"sentences", o.sentences}, {"src_len", o.src_len},
                           {"tgt_len", o.tgt_len}, {"steps", o.steps}, {"warm_steps", o.warm_steps},
                           {"omp_num_threads", threads ? threads : ""}}},
                         {"gemm_peak_gflops", peak.gflops},
                         {"forward_gflop_per_batch", forward_flops(o) / 1e9},
                         {"rows", rows}};
      std::ofstream f(o.json);
      f << doc.dump(2) << '\n';
      LNF_EXPECTS_AS(IoError, f.good(), "could not write '{}'", o.json);
      fmt::print("wrote {}\n", o.json);
    }
    return failures == 0 ? 0 : 1;
  } catch (Error const& e) {
    fmt::print(stderr, "bench_policy_matrix: {}\n", e.what());
    return 1;
  }
}
