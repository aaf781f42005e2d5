// bench_policy_matrix: every normalization policy x optimizer x schedule of the library's own type lists
// (NormPolicies, Optimizers, Schedules: the lists the translation trainer dispatches over), each one
// instantiated at compile time, trains the same Seq2Seq from the same initial parameters on the same
// batches for a fixed number of steps. Prints one row per combination:
//
//   ms/step     median wall time of the timed steps (after --warm-steps untimed ones)
//   tgt tok/s   non-padding target tokens per second
//   GFLOP/s     model FLOPs per second: 3x the forward GEMM FLOPs (projections, attention products,
//               FFN, output head) of the padded batch, the usual training-FLOP count
//   of peak     that rate over the GEMM peak, measured in the same run by a raw oneDNN matmul
//               (--peak-size cube, same threads, best of at least 12 repetitions and 0.5 s; f32, or
//               with --gemm-math bf16 on a CPU with oneDNN bf16 kernels, bf16 operands and an f32
//               result, where the f32 peak is printed beside it once), taken
//               before the first combination, again before each one and once after the last: the
//               table, printed as the run goes, divides by the best measurement so far, the JSON by
//               the best of the whole run. A shared machine's peak varies, and one measurement that
//               a noisy moment slowed would otherwise inflate every fraction.
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

#include "policy_matrix/cells.hpp"

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
using namespace lnformer::bench;

namespace {

using Clock = std::chrono::steady_clock;

/// Best GFLOP/s of a raw oneDNN matmul n x n x n over at least 12 repetitions and 0.5 s: the peak
/// the model's FLOP rate is compared with. f32: f32 operands and result; bf16: bf16 operands, f32
/// result and accumulation, as the library's bf16 GEMM math runs them (error set where oneDNN has no
/// bf16 kernel on this CPU).
Result measure_peak(Options const& o, dnnl::memory::data_type type) {
  using dnnl::memory;
  Result r;
  try {
    dnnl::engine eng(dnnl::engine::kind::cpu, 0);
    dnnl::stream strm(eng);
    memory::dims const dims{o.peak_size, o.peak_size};
    memory::desc const in_md(dims, type, memory::format_tag::ab);
    memory::desc const out_md(dims, memory::data_type::f32, memory::format_tag::ab);
    memory a(in_md, eng), b(in_md, eng), c(out_md, eng);
    memory src(out_md, eng);  // f32 values, reordered into a and b (converted where they are bf16)
    auto* p = static_cast<float*>(src.get_data_handle());
    for (std::int64_t i = 0; i < o.peak_size * o.peak_size; ++i) p[i] = static_cast<float>((i * 7919) % 1000) / 1000.f;
    dnnl::reorder(src, a).execute(strm, src, a);
    dnnl::reorder(src, b).execute(strm, src, b);
    dnnl::matmul prim(dnnl::matmul::primitive_desc(dnnl::matmul::desc(in_md, in_md, out_md), eng));
    double best = 1e30;
    auto const start = Clock::now();
    for (int rep = 0; rep < 12 || std::chrono::duration<double>(Clock::now() - start).count() < 0.5; ++rep) {
      auto const t0 = Clock::now();
      prim.execute(strm, {{DNNL_ARG_SRC, a}, {DNNL_ARG_WEIGHTS, b}, {DNNL_ARG_DST, c}});
      strm.wait();
      best = std::min(best, std::chrono::duration<double>(Clock::now() - t0).count());
    }
    r.gflops = 2.0 * std::pow(static_cast<double>(o.peak_size), 3) / best / 1e9;
  } catch (dnnl::error const& e) {
    std::snprintf(r.error, sizeof r.error, "oneDNN: %s", e.what());
  }
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
    if (!found) throw ValueError(fmt::format("--{}: unknown '{}' (one of: {})", what, item, type_names(types)));
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
  app.add_option("--gemm-math", o.gemm_math,
                 "f32, or bf16: GEMM operands rounded to bf16, f32 accumulation and weights (emulated, not "
                 "faster, where oneDNN has no bf16 kernels)")
      ->capture_default_str()
      ->check(CLI::IsMember({"f32", "bf16"}));
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
    // Not cpu::native_bf16_gemm() here: the parent runs no oneDNN (it forks the cells).
    auto const [native, native_mb] = in_child([] {
      Result r;
      r.gflops = cpu::native_bf16_gemm() ? 1 : 0;
      return r;
    });
    // The peak of the kernels the rows run: bf16 GEMM math on oneDNN's bf16 kernels is compared with a
    // bf16 matmul, everything else (f32, emulated bf16) with an f32 one.
    bool const bf16_peak = o.gemm_math == "bf16" && native.gflops > 0;
    auto const peak_type = bf16_peak ? dnnl::memory::data_type::bf16 : dnnl::memory::data_type::f32;
    std::string_view const peak_name = bf16_peak ? "bf16" : "f32";
    auto peak_of = [&](dnnl::memory::data_type type) {
      auto const [p, p_mb] = in_child([&] { return measure_peak(o, type); });
      LNF_EXPECTS_AS(BackendError, p.error[0] == '\0', "GEMM peak measurement failed: {}", p.error);
      return p.gflops;
    };
    // The peak: the best of the measurements so far (remeasure() before each combination).
    double peak = 0, peak_low = 1e30;
    int peak_count = 0;
    auto remeasure = [&] {
      double const p = peak_of(peak_type);
      peak = std::max(peak, p);
      peak_low = std::min(peak_low, p);
      ++peak_count;
    };
    remeasure();
    fmt::print("{0} GEMM peak (raw oneDNN matmul {1}x{1}x{1}{2}): {3:.1f} GFLOP/s, measured again before each "
               "combination (each row's \"of peak\" is of the best so far); model {4:.2f} GFLOP per training step\n",
               peak_name, o.peak_size, bf16_peak ? ", bf16 operands, f32 result" : "", peak,
               3 * forward_flops(o) / 1e9);
    double const f32_peak = bf16_peak ? peak_of(dnnl::memory::data_type::f32) : peak;
    if (bf16_peak)
      fmt::print("f32 GEMM peak of the same matmul, for comparison: {:.1f} GFLOP/s (bf16/f32 {:.2f})\n", f32_peak,
                 peak / f32_peak);
    fmt::print("GEMM math: {}{}\n\n", o.gemm_math,
               o.gemm_math != "bf16" ? ""
               : native.gflops > 0   ? " (oneDNN bf16 kernels)"
                                     : " (emulated: oneDNN has no bf16 kernels on this CPU; the same numbers, not faster)");
    fmt::print("{:<9} {:<7} {:<22} {:>9} {:>10} {:>8} {:>8} {:>8} {:>8}\n", "norm", "optim", "schedule", "ms/step",
               "tgt tok/s", "GFLOP/s", "of peak", "peak MB", "loss");

    nlohmann::json rows = nlohmann::json::array();
    int failures = 0;
    auto const t_all = Clock::now();
    // The loops run over names, so this unit holds one copy of the row code (not 120): the cells are
    // compiled in cells_<norm>.cpp, one unit per policy of the list, generated by benchmarks/CMakeLists.txt.
    auto names = [](auto list) {
      std::vector<std::string_view> out;
      for_each_type(list, [&](auto tag) { out.push_back(decltype(tag)::type::name); });
      return out;
    };
    for (std::string_view const norm : names(NormPolicies{})) {
      if (!selected(o.norms, norm)) continue;
      for (std::string_view const opt : names(Optimizers{})) {
        if (!selected(o.optimizers, opt)) continue;
        for (std::string_view const sched : names(Schedules{})) {
          if (!selected(o.schedules, sched)) continue;
          remeasure();
          auto const [r, mb] = in_child([&] {
            return dispatch(NormPolicies{}, norm,
                            [&](auto ntag) { return run_cell<typename decltype(ntag)::type>(opt, sched, o); }, "norm");
          });
          if (r.error[0] != '\0') {
            ++failures;
            fmt::print("{:<9} {:<7} {:<22} failed: {}\n", norm, opt, sched, r.error);
            rows.push_back({{"norm", norm}, {"optimizer", opt}, {"schedule", sched}, {"error", r.error}});
            continue;
          }
          fmt::print("{:<9} {:<7} {:<22} {:>9.1f} {:>10.0f} {:>8.1f} {:>7.1f}% {:>8.0f} {:>8.4f}\n", norm, opt, sched,
                     r.ms_per_step, r.tokens_per_s, r.gflops, 100 * r.gflops / peak, mb, r.loss);
          std::fflush(stdout);
          rows.push_back({{"norm", norm},
                          {"optimizer", opt},
                          {"schedule", sched},
                          {"ms_per_step", r.ms_per_step},
                          {"target_tokens_per_s", r.tokens_per_s},
                          {"gflops", r.gflops},
                          {"gflops_per_peak_so_far", r.gflops / peak},
                          {"peak_rss_mib", mb},
                          {"loss", r.loss}});
        }
      }
    }
    remeasure();
    for (auto& row : rows)
      if (row.contains("gflops")) row["fraction_of_peak"] = row["gflops"].get<double>() / peak;
    fmt::print("\n{} combinations in {:.0f} s{}; {} GEMM peak: best {:.1f}, lowest {:.1f} GFLOP/s of {} measurements "
               "(the JSON's fraction_of_peak is of the best)\n",
               rows.size(), std::chrono::duration<double>(Clock::now() - t_all).count(),
               failures ? fmt::format(", {} failed", failures) : "", peak_name, peak, peak_low, peak_count);
    if (!o.json.empty()) {
      nlohmann::json doc{{"config",
                          {{"layers", o.layers}, {"d_model", o.d_model}, {"ffn", o.ffn}, {"heads", o.heads},
                           {"vocab", o.vocab}, {"sentences", o.sentences}, {"src_len", o.src_len},
                           {"tgt_len", o.tgt_len}, {"steps", o.steps}, {"warm_steps", o.warm_steps},
                           {"omp_num_threads", threads ? threads : ""}, {"gemm_math", o.gemm_math},
                           {"native_bf16", native.gflops > 0}}},
                         {"gemm_peak_gflops", peak},
                         {"gemm_peak_lowest_gflops", peak_low},
                         {"gemm_peak_type", peak_name},
                         {"f32_gemm_peak_gflops", f32_peak},
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
