// paper_figures: runs the measurements of Xiong et al. 2020 and Liu et al. 2020 (PAPERS.md sections 3
// and 4) for PostLN, PreLN and AdminLN through the library's analysis tools, and writes each as CSV
// plus a gnuplot script and its PNG into --out (default figures/):
//
//   grad_norms     per-layer ||dL/dW2|| (fc2) at initialisation, 6-6 model (Xiong et al., Figure 3)
//   theorem1       ||dL/dW2|| of the last decoder layer against depth, log-log fit (Xiong, Theorem 1)
//   output_change  |F(x, W) - F(x, W + delta)|^2 against the encoder's sublayer count N, random-sign and
//                  gradient-sign perturbations of the weight matrices, linear and log fits (Liu et al.,
//                  Figure 4)
//   dependency     beta_{i,j} of the encoder at initialisation and after --dependency-steps updates on
//                  the synthetic task, two heat maps per policy (Liu et al., Figures 7 and 8)
//   admin_profile  the w of every sublayer that Admin's profiling sets (and admin-torch's closed form)
//   warmup         training curves on the synthetic reverse task: PostLN with and without warm-up,
//                  PreLN without, at two learning rates (Xiong et al., the warm-up experiment)
//
// Two setups for the measured models (--setup), named in every CSV row, plot title and printed header:
//   paper    (default) the papers' measurement setup (analysis/paper_setup.hpp): an untied output
//            projection with a bias, plain cross-entropy, no dropout, random tokens from a vocabulary of
//            --vocab, the decoder fed the target;
//   trainer  the trainer's model: output projection tied to the embedding, label smoothing 0.1,
//            dropout --dropout (training mode, the same masks in every pass), batches of the synthetic
//            reverse task (padded, decoder fed the shifted target).
// grad_norms, theorem1, output_change and admin_profile follow --setup; dependency and warmup train, so
// they always use the trainer's model on the synthetic task (random tokens cannot be learned).
// Every measured point is one model per seed (--seeds, --perturb-seeds); the CSVs hold the median,
// quartiles and extremes over the seeds, the fits use the medians, the plots draw the interquartile
// range as a band.
//
//   paper_figures                                        everything, d 64 (minutes on 2 cores)
//   paper_figures --only theorem1,output_change          a subset
//   the papers' sizes (docs/figures; docs/papers.md has the commands and times):
//   paper_figures --only grad_norms,theorem1 --d-model 256 --ffn 512 --depths 3,6,12,24 --seeds 10
//   paper_figures --only output_change --d-model 128 --ffn 256
//                 --sublayers 2,4,8,12,16,24,32,40,48,64,96,128 --perturb-seeds 30
//
// Without gnuplot the CSVs and .gp scripts are still written; `cd DIR && gnuplot NAME.gp` renders them.
// The fitted quantities are printed to stdout, progress to stderr.
//
// Files: options.hpp (the command line), output.hpp (progress, CSV and gnuplot writing) and this one,
// which stays over 500 lines on purpose: it is the six measurements, one section each (60-110 lines),
// read one at a time, plus the models they share; splitting them further would scatter one concern
// (which policies are measured, and how) over files.

#include <lnformer/analysis/admin.hpp>
#include <lnformer/analysis/dependency.hpp>
#include <lnformer/analysis/fit.hpp>
#include <lnformer/analysis/gradients.hpp>
#include <lnformer/analysis/paper_setup.hpp>
#include <lnformer/analysis/perturbation.hpp>
#include <lnformer/analysis/seed_summary.hpp>
#include <lnformer/core/type_list.hpp>
#include <lnformer/data/synthetic.hpp>
#include <lnformer/metrics/accuracy.hpp>
#include <lnformer/norm/policies.hpp>
#include <lnformer/optim/optimizers.hpp>
#include <lnformer/schedule/schedules.hpp>
#include <lnformer/train/trainer.hpp>

#include "options.hpp"
#include "output.hpp"

#include <CLI/CLI.hpp>
#include <fmt/format.h>
#include <fmt/ranges.h>
#include <omp.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <string>
#include <vector>

using namespace lnformer;
namespace fs = std::filesystem;

namespace {

using namespace paper_figures;

using FigurePolicies = TypeList<PostLN, PreLN, AdminLN>;

std::string pretty(std::string_view norm) {
  if (norm == "post") return "Post-LN";
  if (norm == "pre") return "Pre-LN";
  if (norm == "admin") return "Admin";
  return std::string(norm);
}

/// gnuplot's colour for a policy, so that it is the same in every figure.
std::string colour(std::string_view norm) {
  if (norm == "post") return "#d62728";
  if (norm == "pre") return "#1f77b4";
  if (norm == "admin") return "#2ca02c";
  return "#7f7f7f";
}

// ---- the measured models and their data ------------------------------------------------------------

/// The synthetic task of the trainer setup and of the training experiments.
SyntheticTask measure_task() {
  return SyntheticTask{.kind = SyntheticKind::reverse, .symbols = 16, .min_len = 6, .max_len = 12};
}

/// The trainer's model (tied output projection, label smoothing 0.1) on the synthetic task.
ModelConfig trainer_config(Options const& o, int layers, float dropout) {
  return ModelConfig{.enc_layers = layers,
                     .dec_layers = layers,
                     .d_model = o.d_model,
                     .ffn = o.ffn > 0 ? o.ffn : 2 * o.d_model,
                     .heads = o.heads,
                     .vocab = measure_task().vocab(),
                     .max_positions = 64,
                     .dropout = dropout};
}

std::vector<Batch<Cpu>> task_batches(int n, std::size_t size, std::uint64_t seed) {
  Rng rng(seed);
  std::vector<Batch<Cpu>> out;
  for (int i = 0; i < n; ++i) out.push_back(make_batch<Cpu>(measure_task().sample(rng, size)));
  return out;
}

/// What --setup measures on: the model configuration and the batches.
struct Setup {
  Options const* o;
  bool paper;

  [[nodiscard]] std::string name() const { return paper ? "paper" : "trainer"; }
  [[nodiscard]] PaperSetup random_tokens() const {
    return PaperSetup{.vocab = o->vocab, .sentences = o->batch_size, .length = o->length};
  }
  /// `dropout`: of the trainer setup (the paper setup has none).
  [[nodiscard]] ModelConfig config(int layers, float dropout) const {
    auto const base = trainer_config(*o, layers, dropout);
    return paper ? random_tokens().config(base) : base;
  }
  /// n batches from `seed` (the paper setup: seeds seed, seed + 1, ...).
  [[nodiscard]] std::vector<Batch<Cpu>> batches(int n, std::uint64_t seed) const {
    if (!paper) return task_batches(n, static_cast<std::size_t>(o->batch_size), seed);
    std::vector<Batch<Cpu>> out;
    for (int i = 0; i < n; ++i) out.push_back(random_tokens().batch<Cpu>(seed + static_cast<std::uint64_t>(i)));
    return out;
  }
  /// One line for the printed header of a figure.
  [[nodiscard]] std::string describe(float dropout) const {
    if (paper)
      return fmt::format("setup paper: untied output projection with bias, plain cross-entropy, dropout 0; batches "
                         "of {} x {} random tokens (vocabulary {}), decoder fed the target",
                         o->batch_size, o->length, o->vocab);
    return fmt::format("setup trainer: output projection tied to the embedding, label smoothing 0.1, dropout {:g} "
                       "(same masks in every pass); batches of {} synthetic reverse-task sentences",
                       dropout, o->batch_size);
  }
};

// Training mode (dropout on where the config has it), fixed masks: the analysis tests' context.
ForwardContext const kCtx{.training = true, .seed = 17, .pass = 0};

template <class F>
void for_each_norm(Options const& o, F&& f) {
  for (auto const& n : o.norms) dispatch(FigurePolicies{}, n, f, "--norms");
}

// ---- 1. grad_norms (Xiong et al., Figure 3) -------------------------------------------------------

void fig_grad_norms(Options const& o, Setup const& st) {
  auto const bs = st.batches(o.batches, 5);
  std::string csv = "setup,policy,stack,layer,seeds," + csv_summary_header("fc2") + ",fc1_median,ffn_median\n";
  int i = 0;
  int const n = static_cast<int>(o.norms.size()) * o.seeds;
  fmt::print("\ngrad_norms: ||dL/dW2|| (fc2) of each layer at initialisation, {}-{} model, d {}, FFN {}; per seed "
             "the mean over {} batches, then the median over {} seeds (model seeds {}..{})\n  {}\n",
             o.layers, o.layers, o.d_model, st.config(o.layers, o.dropout).ffn, o.batches, o.seeds, o.seed,
             o.seed + static_cast<std::uint64_t>(o.seeds) - 1, st.describe(o.dropout));
  for_each_norm(o, [&](auto tag) {
    using Norm = typename decltype(tag)::type;
    // per stack, per layer: the seeds' values
    std::map<StackKind, std::vector<std::vector<double>>> fc2, fc1, ffn;
    for (int s = 0; s < o.seeds; ++s) {
      progress("grad_norms", fmt::format("{}, seed {}, forward and backward", Norm::name, s + 1), ++i, n);
      Seq2Seq<Norm, Cpu> m(st.config(o.layers, o.dropout), o.seed + static_cast<std::uint64_t>(s));
      prepare_for_analysis(m, bs[0], kCtx);
      auto const prof = gradient_norms(m, std::span(bs), kCtx);
      for (StackKind k : {StackKind::encoder, StackKind::decoder}) {
        auto const layers = prof.stack(k);
        for (auto* v : {&fc2[k], &fc1[k], &ffn[k]}) v->resize(layers.size());
        for (std::size_t l = 0; l < layers.size(); ++l) {
          fc2[k][l].push_back(layers[l].fc2);
          fc1[k][l].push_back(layers[l].fc1);
          ffn[k][l].push_back(layers[l].ffn);
        }
      }
    }
    progress.clear();
    for (StackKind k : {StackKind::encoder, StackKind::decoder}) {
      std::vector<double> med, ratios;
      for (std::size_t l = 0; l < fc2[k].size(); ++l) {
        auto const s2 = summarize(fc2[k][l]);
        med.push_back(s2.median);
        csv += fmt::format("{},{},{},{},{},{},{:.6g},{:.6g}\n", st.name(), Norm::name, stack_name(k), l + 1, o.seeds,
                           csv_summary(s2), summarize(fc1[k][l]).median, summarize(ffn[k][l]).median);
      }
      for (int s = 0; s < o.seeds; ++s)
        ratios.push_back(fc2[k].back()[static_cast<std::size_t>(s)] / fc2[k].front()[static_cast<std::size_t>(s)]);
      auto const r = summarize(ratios);
      fmt::print("  {:<7} {:<7}: medians {}; last/first {:.2f} (per seed {:.2f} .. {:.2f})\n", pretty(Norm::name),
                 stack_name(k), list(med), med.back() / med.front(), r.min, r.max);
    }
  });
  write_file(fs::path(o.out) / "grad_norms.csv", csv);
  std::string gp = gp_header("grad_norms", 1000, 450);
  gp += fmt::format("set multiplot layout 1,2 title '||dL/dW2|| per layer at initialisation (Xiong et al. 2020, "
                    "Fig. 3) [{} setup, d {}; median and interquartile range of {} seeds]'\n"
                    "set xlabel 'layer'\nset ylabel '||dL/dW2||_F'\nset xtics 1\n"
                    "set style fill transparent solid 0.2 noborder\n",
                    st.name(), o.d_model, o.seeds);
  for (std::string_view stack : {"encoder", "decoder"}) {
    gp += fmt::format("set title '{}'\nplot ", stack);
    std::string sep;
    for (auto const& nm : o.norms) {
      auto const sel = fmt::format("({} && strcol(3) eq '{}') ? $4 : NaN", policy_is(nm), stack);
      gp += fmt::format("{0}'grad_norms.csv' skip 1 using ({1}):7:8 with filledcurves lc rgb '{2}' notitle, \\\n"
                        "     'grad_norms.csv' skip 1 using ({1}):6 with linespoints lw 2 pt 7 lc rgb '{2}' "
                        "title '{3}'",
                        sep, sel, colour(nm), pretty(nm));
      sep = ", \\\n     ";
    }
    gp += "\n";
  }
  gp += "unset multiplot\n";
  render(o, "grad_norms", gp);
}

// ---- 2. theorem1 (Xiong et al., Theorem 1) --------------------------------------------------------

void fig_theorem1(Options const& o, Setup const& st) {
  auto const bs = st.batches(o.batches, 5);
  std::string csv = "setup,policy,layers,seeds," + csv_summary_header("grad_norm") + ",mean\n";
  std::map<std::string, LinearFit> fits;
  int i = 0;
  int const n = static_cast<int>(o.norms.size() * o.depths.size());
  fmt::print("\ntheorem1: ||dL/dW2|| of the last decoder layer's fc2 at initialisation against depth L (layers per "
             "stack), d {}, FFN {}; per seed the mean over {} batches, then the median over {} seeds; log-log fit of "
             "the medians\n  {}\n",
             o.d_model, st.config(1, o.dropout).ffn, o.batches, o.seeds, st.describe(o.dropout));
  for_each_norm(o, [&](auto tag) {
    using Norm = typename decltype(tag)::type;
    std::vector<double> x, y;
    std::vector<std::vector<double>> per_seed(static_cast<std::size_t>(o.seeds));  // [seed][depth]
    for (int L : o.depths) {
      progress("theorem1", fmt::format("{}, {}-{} model, {} seed(s)", Norm::name, L, L, o.seeds), ++i, n);
      auto const pts = last_fc2_grad_norm_vs_depth<Seq2Seq, Norm>(st.config(L, o.dropout), {L}, std::span(bs), kCtx,
                                                                   StackKind::decoder, o.seeds, o.seed);
      auto const s = pts.front().summary();
      x.push_back(L);
      y.push_back(s.median);
      for (std::size_t k = 0; k < per_seed.size(); ++k) per_seed[k].push_back(pts.front().per_seed[k]);
      csv += fmt::format("{},{},{},{},{},{:.6g}\n", st.name(), Norm::name, L, o.seeds, csv_summary(s), s.mean);
    }
    progress.clear();
    auto const f = fit_log_log(x, y);
    std::vector<double> slopes;
    for (auto const& v : per_seed) slopes.push_back(fit_log_log(x, v).slope);
    auto const ss = summarize(slopes);
    fits[std::string(Norm::name)] = f;
    fmt::print("  {:<7}: L = {}: medians {}; slope {:+.3f} (R^2 {:.3f}); one seed's models alone: slope {:+.3f} .. "
               "{:+.3f}; Theorem 1: {}\n",
               pretty(Norm::name), fmt::join(o.depths, ", "), list(y), f.slope, f.r2, ss.min, ss.max,
               std::same_as<Norm, PreLN>    ? "-0.5 (Pre-LN)"
               : std::same_as<Norm, PostLN> ? "0 (Post-LN)"
                                            : "none (Admin starts Pre-LN-like)");
  });
  write_file(fs::path(o.out) / "theorem1.csv", csv);
  std::string gp = gp_header("theorem1");
  gp += fmt::format("set title \"||dL/dW2|| of the last layer against depth (Xiong et al. 2020, Theorem 1)\\n[{} "
                    "setup, d {}; median and interquartile range of {} seeds]\"\n"
                    "set logscale xy\nset xlabel 'layers per stack L'\nset ylabel '||dL/dW^{{2,L}}||_F'\n"
                    "set key bottom left\nset style fill transparent solid 0.2 noborder\n",
                    st.name(), o.d_model, o.seeds);
  gp += fmt::format("set xrange [{}:{}]\nset xtics ({})\n", o.depths.front() * 0.8, o.depths.back() * 1.25,
                    fmt::join(o.depths, ", "));
  gp += "plot ";
  std::string sep;
  for (auto const& nm : o.norms) {
    auto const& f = fits[nm];
    auto const sel = fmt::format("({}) ? $3 : NaN", policy_is(nm));
    gp += fmt::format("{0}'theorem1.csv' skip 1 using ({1}):6:7 with filledcurves lc rgb '{2}' notitle, \\\n"
                      "     'theorem1.csv' skip 1 using ({1}):5 with points pt 7 ps 1.3 lc rgb '{2}' notitle, \\\n"
                      "     exp({3:.6g})*x**({4:.6g}) with lines lw 2 lc rgb '{2}' title '{5}: slope {4:+.2f} (R^2 "
                      "{6:.2f})'",
                      sep, sel, colour(nm), f.intercept, f.slope, pretty(nm), f.r2);
    sep = ", \\\n     ";
  }
  gp += "\n";
  render(o, "theorem1", gp);
}

// ---- 3. output_change (Liu et al., Figure 4) ------------------------------------------------------

void fig_output_change(Options const& o, Setup const& st) {
  auto const b = st.batches(1, 9);
  std::vector<int> layers;
  for (int N : o.sublayers) layers.push_back(N / 2);
  std::string csv = "setup,policy,layers,sublayers,seeds," + csv_summary_header("random") + "," +
                    csv_summary_header("gradient") + "\n";
  struct Fits {
    LinearFit lin, log, pow;
    bool log_better() const { return log.r2 > lin.r2; }
  };
  std::map<std::string, Fits> fits[2];
  std::map<std::string, double> last[2];
  auto const targets =
      o.perturb_embeddings ? PerturbedParameters::weights_and_embeddings : PerturbedParameters::weight_matrices;
  int i = 0;
  int const n = static_cast<int>(o.norms.size() * layers.size());
  fmt::print("\noutput_change: |F(x, W) - F(x, W + delta)|^2 of the encoder output (summed over the batch's {} tokens "
             "and the channels), delta = -1e-4 sign(N(0,1)) (random) or -1e-6 sign(grad) on every weight matrix of "
             "the layers{}; d {}, FFN {}, {} decoder layers; median over {} seeds (a model and a sign draw each)\n"
             "  {}\n",
             b[0].src_tokens, o.perturb_embeddings ? " and the embeddings" : " (not the embeddings)", o.d_model,
             st.config(1, o.perturb_dropout).ffn, o.layers, o.perturb_seeds, st.describe(o.perturb_dropout));
  for_each_norm(o, [&](auto tag) {
    using Norm = typename decltype(tag)::type;
    std::vector<double> x, yr, yg;
    for (int L : layers) {
      progress("output_change", fmt::format("{}, {} encoder sublayers, {} seed(s)", Norm::name, 2 * L, o.perturb_seeds),
               ++i, n);
      // The encoder has L layers; the decoder keeps --layers (only the measured stack varies).
      auto const pts = output_change_vs_depth<Seq2Seq, Norm>(
          st.config(o.layers, o.perturb_dropout), {L}, b[0], kCtx,
          {.seeds = o.perturb_seeds, .model_seed = o.seed, .targets = targets});
      auto const& p = pts.front();
      auto const r = p.random_summary(), g = p.gradient_summary();
      x.push_back(p.sublayers);
      yr.push_back(r.median);
      yg.push_back(g.median);
      csv += fmt::format("{},{},{},{},{},{},{}\n", st.name(), Norm::name, L, p.sublayers, o.perturb_seeds,
                         csv_summary(r), csv_summary(g));
    }
    progress.clear();
    std::string const nm(Norm::name);
    for (int k = 0; k < 2; ++k) {
      auto const& y = k == 0 ? yr : yg;
      Fits f{fit_line(x, y), fit_log_x(x, y), fit_log_log(x, y)};
      fits[k][nm] = f;
      last[k][nm] = y.back();
      fmt::print("  {:<7} {:<13}: N = {}: medians {}\n  {:<21}  growth {:.2f}x over {:.0f}x more sublayers; linear fit "
                 "R^2 {:.3f}, log fit R^2 {:.3f} -> {}; power law N^{:.2f}\n",
                 pretty(nm), k == 0 ? "random-sign" : "gradient-sign", fmt::join(x, ", "), list(y), "",
                 y.back() / y.front(), x.back() / x.front(), f.lin.r2, f.log.r2,
                 f.log_better() ? "logarithmic" : "linear", f.pow.slope);
    }
  });
  for (int k = 0; k < 2; ++k)
    if (last[k].contains("post"))
      for (auto const& [nm, v] : last[k])
        if (nm != "post")
          fmt::print("  {}: at N = {}, Post-LN's median change is {:.1f}x {}'s\n",
                     k == 0 ? "random-sign" : "gradient-sign", o.sublayers.back(), last[k]["post"] / v, pretty(nm));
  write_file(fs::path(o.out) / "output_change.csv", csv);
  // Left: random-sign on linear axes with the better of the linear and log fits (Liu et al.'s claim:
  // O(N) for Post-LN, O(log N) for Pre-LN and Admin). Right: gradient-sign on log-log axes with a
  // power-law fit (a coherent perturbation adds up across sublayers: super-linear for every policy).
  std::string gp = gp_header("output_change", 1000, 450);
  gp += fmt::format("set multiplot layout 1,2 title 'Output change against the number of encoder sublayers N "
                    "(Liu et al. 2020, Fig. 4) [{} setup, d {}; median and interquartile range of {} seeds]'\n"
                    "set xlabel 'encoder sublayers N'\nset ylabel '|F(x,W) - F(x,W+delta)|^2'\n"
                    "set style fill transparent solid 0.2 noborder\n",
                    st.name(), o.d_model, o.perturb_seeds);
  for (int k = 0; k < 2; ++k) {
    if (k == 0)
      gp += "set title 'random-sign delta (1e-4); lines: the better of a linear and a log fit'\n"
            "set format y '%.3g'\nset key top left\n";
    else
      gp += fmt::format("set title 'gradient-sign delta (1e-6); lines: power-law fits'\nset logscale xy\n"
                        "set format y '%.0e'\nset xtics ({})\nset xrange [{}:{}]\nset key top left\n",
                        fmt::join(o.sublayers, ", "), o.sublayers.front() / 1.3, o.sublayers.back() * 1.3);
    gp += "plot ";
    std::string sep;
    for (auto const& nm : o.norms) {
      auto const& f = fits[k][nm];
      std::string expr, title;
      if (k == 0) {
        auto const& fit = f.log_better() ? f.log : f.lin;
        expr = f.log_better() ? fmt::format("({:.6g} + {:.6g}*log(x))", fit.intercept, fit.slope)
                              : fmt::format("({:.6g} + {:.6g}*x)", fit.intercept, fit.slope);
        title = fmt::format("{}: {} fit, R^2 {:.3f} ({} {:.3f})", pretty(nm), f.log_better() ? "log" : "linear", fit.r2,
                            f.log_better() ? "linear" : "log", f.log_better() ? f.lin.r2 : f.log.r2);
      } else {
        expr = fmt::format("exp({:.6g})*x**({:.6g})", f.pow.intercept, f.pow.slope);
        title = fmt::format("{}: ~ N^{:.2f} (R^2 {:.3f})", pretty(nm), f.pow.slope, f.pow.r2);
      }
      int const med = k == 0 ? 6 : 11;  // columns: median, q1, q3 of random (6-8) or gradient (11-13)
      auto const sel = fmt::format("({}) ? $4 : NaN", policy_is(nm));
      gp += fmt::format("{0}'output_change.csv' skip 1 using ({1}):{2}:{3} with filledcurves lc rgb '{4}' notitle, "
                        "\\\n     'output_change.csv' skip 1 using ({1}):{5} with points pt 7 ps 1.2 lc rgb '{4}' "
                        "notitle, \\\n     [{6}:{7}] {8} with lines lw 2 lc rgb '{4}' title '{9}'",
                        sep, sel, med + 1, med + 2, colour(nm), med, o.sublayers.front(), o.sublayers.back(), expr,
                        title);
      sep = ", \\\n     ";
    }
    gp += "\n";
  }
  gp += "unset multiplot\n";
  render(o, "output_change", gp);
}

// ---- 4. dependency (Liu et al., Figures 7 and 8) ----------------------------------------------------

/// beta_(i,j) as CSV: rows i = 0..N (sublayer outputs), columns j = 0..N (branches; 0 = embedding).
std::string dependency_csv(DependencyMatrix const& d) {
  int const N = d.sublayers();
  std::string csv = "i\\j";
  for (int j = 0; j <= N; ++j) csv += fmt::format(",{}", j);
  csv += "\n";
  for (int r = 0; r <= N; ++r) {
    csv += fmt::format("{}", r);
    for (int j = 0; j <= N; ++j)
      csv += fmt::format(",{:.6g}", j <= r ? d.beta[static_cast<std::size_t>(r)][static_cast<std::size_t>(j)] : 0.0);
    csv += "\n";
  }
  return csv;
}

/// Mean beta_(i,i) over the upper half of the sublayers (where the policies differ most).
double upper_self_dependency(DependencyMatrix const& d) {
  auto const s = d.self_dependency();
  double upper = 0;
  for (std::size_t k = s.size() / 2; k < s.size(); ++k) upper += s[k];
  return upper / static_cast<double>(s.size() - s.size() / 2);
}

// Always the trainer setup: the right-hand panel trains the model, which needs a learnable task.
void fig_dependency(Options const& o) {
  Setup const st{&o, false};
  auto const b = st.batches(1, 5);
  int i = 0;
  int const n = static_cast<int>(o.norms.size());
  fmt::print("\ndependency: beta_(i,j) of the encoder ({} layers = {} sublayers, d {}) at initialisation and after "
             "{} updates on the synthetic task (Adam, lr 5e-4 after 50 warm-up steps, clip 1); beta_(i,i) is how "
             "much sublayer i's output depends on its own branch\n  {}\n",
             o.layers, 2 * o.layers, o.d_model, o.dependency_steps, st.describe(o.dropout));
  for_each_norm(o, [&](auto tag) {
    using Norm = typename decltype(tag)::type;
    progress("dependency", fmt::format("{}, at initialisation", Norm::name), ++i, n);
    Seq2Seq<Norm, Cpu> m(st.config(o.layers, o.dropout), o.seed);
    prepare_for_analysis(m, b[0], kCtx);
    auto const init = layer_dependency(m, b[0], kCtx, StackKind::encoder);
    // Figure 8: the same model trained (every policy trains at this rate with the short warm-up).
    Trainer trainer(m, Adam{.beta1 = 0.9f, .beta2 = 0.98f}, LinearWarmup{.peak = 5e-4f, .warmup = 50},
                    TrainerOptions{.clip_norm = 1.f, .seed = o.seed});
    Rng rng(o.seed, 3);
    double loss = 0;
    for (int step = 1; step <= o.dependency_steps; ++step) {
      auto const st = trainer.step(make_batch<Cpu>(measure_task().sample(rng, static_cast<std::size_t>(o.batch_size))));
      loss = st.loss.loss / static_cast<double>(st.loss.tokens);  // per target token
      if (step % 50 == 0)
        progress("dependency", fmt::format("{}, training step {}/{}, loss {:.3f}", Norm::name, step, o.dependency_steps, loss),
                 i, n);
    }
    auto const trained = layer_dependency(m, b[0], kCtx, StackKind::encoder);
    progress.clear();
    int const N = init.sublayers();
    std::string const name = fmt::format("dependency_{}", Norm::name);
    write_file(fs::path(o.out) / (name + ".csv"), dependency_csv(init));
    write_file(fs::path(o.out) / (name + "_trained.csv"), dependency_csv(trained));
    fmt::print("  {:<7}: beta_ii = {}; upper-half mean {:.3f}; beta_(N,0) (embedding) {:.3f}  [initialisation]\n",
               pretty(Norm::name), list(init.self_dependency(), "{:.2f}"), upper_self_dependency(init),
               init.beta.back().front());
    fmt::print("  {:<7}  beta_ii = {}; upper-half mean {:.3f}; beta_(N,0) (embedding) {:.3f}  [trained {} steps, "
               "loss per token {:.3f}]\n",
               "", list(trained.self_dependency(), "{:.2f}"), upper_self_dependency(trained),
               trained.beta.back().front(), o.dependency_steps, loss);
    std::string gp = gp_header(name, 1000, 480);
    gp += fmt::format(
        "set multiplot layout 1,2 title \"{}: layer dependency beta(i,j), encoder (Liu et al. 2020, Figures 7 and 8) "
        "[{} setup, d {}]\"\n"
        "set xlabel 'j (branch; 0 = embedding)'\nset ylabel 'i (sublayer output)'\n"
        "set xrange [-0.5:{}.5]\nset yrange [{}.5:-0.5]\nset cbrange [0:1]\nset palette rgbformulae 30,31,32 negative\n"
        "set size ratio -1\nunset grid\nset tics out\n"
        "set title 'at initialisation'\n"
        "plot '{}.csv' matrix rowheaders columnheaders using 1:2:3 with image notitle\n"
        "set title 'after {} updates'\n"
        "plot '{}_trained.csv' matrix rowheaders columnheaders using 1:2:3 with image notitle\n"
        "unset multiplot\n",
        pretty(Norm::name), st.name(), o.d_model, N, N, name, o.dependency_steps, name);
    render(o, name, gp);
  });
}

// ---- 5. admin_profile ----------------------------------------------------------------------------

void fig_admin_profile(Options const& o, Setup const& st) {
  auto const b = st.batches(1, 5);
  progress("admin_profile", "AdminLN, one profiling forward pass", 1, 1);
  Seq2Seq<AdminLN, Cpu> m(st.config(o.layers, o.dropout), o.seed);
  auto const p = admin_profile(m, b[0], kCtx);
  progress.clear();
  std::string csv = "setup,stack,sublayer,w,closed_form_log_n\n";
  fmt::print("\nadmin_profile: w of every sublayer after Admin's profiling ({}-{} model, d {}, one batch); "
             "admin-torch's O(log n) closed form for comparison\n  {}\n",
             o.layers, o.layers, o.d_model, st.describe(o.dropout));
  double cf[2] = {0, 0};
  for (int k = 0; k < 2; ++k) {
    auto const& v = k == 0 ? p.encoder : p.decoder;
    int const N = static_cast<int>(v.size());
    cf[k] = admin_closed_form(N, AdminOrder::log_n);
    for (int i = 0; i < N; ++i)
      csv += fmt::format("{},{},{},{:.6g},{:.6g}\n", st.name(), k == 0 ? "encoder" : "decoder", i + 1,
                         v[static_cast<std::size_t>(i)], i == 0 ? 1.0 : cf[k]);
    // w_i^2 - 1 ~ the summed branch variance before sublayer i: ~linear in i
    fmt::print("  {}: w = {}; closed form (N = {}) {:.3f}\n", k == 0 ? "encoder" : "decoder", list(v, "{:.3f}"), N,
               cf[k]);
  }
  write_file(fs::path(o.out) / "admin_profile.csv", csv);
  std::string gp = gp_header("admin_profile");
  gp += fmt::format("set title \"Admin's w per sublayer after profiling (Liu et al. 2020): w_i = sqrt(sum of the "
                    "earlier branch variances)\\n[{} setup, d {}]\"\nset xlabel 'sublayer i'\nset ylabel 'w_i'\n"
                    "set xtics 1\n",
                    st.name(), o.d_model);
  gp += fmt::format(
      "plot 'admin_profile.csv' skip 1 using (strcol(2) eq 'encoder' ? $3 : NaN):4 with linespoints lw 2 pt 7 "
      "lc rgb '#1f77b4' title 'encoder (profiled)', \\\n"
      "     'admin_profile.csv' skip 1 using (strcol(2) eq 'decoder' ? $3 : NaN):4 with linespoints lw 2 pt 5 "
      "lc rgb '#d62728' title 'decoder (profiled)', \\\n"
      "     'admin_profile.csv' skip 1 using (strcol(2) eq 'encoder' ? $3 : NaN):5 with steps dt 2 lw 2 "
      "lc rgb '#1f77b4' title 'encoder, O(log n) closed form (N = {})', \\\n"
      "     'admin_profile.csv' skip 1 using (strcol(2) eq 'decoder' ? $3 : NaN):5 with steps dt 2 lw 2 "
      "lc rgb '#d62728' title 'decoder, O(log n) closed form (N = {})'\n",
      p.encoder.size(), p.decoder.size());
  render(o, "admin_profile", gp);
}

// ---- 6. warmup -----------------------------------------------------------------------------------

struct Curve {
  std::string label;  // post_warmup, post_nowarmup, pre_nowarmup
  float lr = 0;
  std::vector<int> step;
  std::vector<double> train_loss, held_nll;
  int diverged_at = 0;  // 0: did not diverge
};

SyntheticTask warm_task() {
  return SyntheticTask{.kind = SyntheticKind::reverse, .symbols = 16, .min_len = 3, .max_len = 10};
}

template <class Norm, class Sched>
Curve train_curve(Options const& o, std::string label, float lr, Sched const& sched, int& run, int runs) {
  auto const task = warm_task();
  ModelConfig const cfg{.enc_layers = o.warm_layers,
                        .dec_layers = o.warm_layers,
                        .d_model = o.warm_d_model,
                        .ffn = 2 * o.warm_d_model,
                        .heads = 4,
                        .vocab = task.vocab(),
                        .max_positions = task.max_len + 8,
                        .dropout = 0.1f,
                        .label_smoothing = 0.1f};
  Seq2Seq<Norm, Cpu> model(cfg, o.seed);
  Rng train_rng(o.seed, 1), held_rng(o.seed, 2);
  auto const held = task.sample(held_rng, static_cast<std::size_t>(o.held_out));
  auto held_nll = [&] {
    double nll = 0;
    std::int64_t tokens = 0;
    for (std::size_t b = 0; b < held.size(); b += 100) {
      auto const a = teacher_forced_accuracy(model, make_batch<Cpu>(held, b, std::min(held.size(), b + 100)));
      nll += a.loss.nll;
      tokens += a.loss.tokens;
    }
    return nll / static_cast<double>(tokens);
  };
  Trainer trainer(model, Adam{.beta1 = 0.9f, .beta2 = 0.98f}, sched, TrainerOptions{.seed = o.seed});
  Curve c{label, lr, {}, {}, {}, 0};
  c.step.push_back(0);
  c.train_loss.push_back(std::nan(""));
  c.held_nll.push_back(held_nll());
  ++run;
  double window = 0;
  std::int64_t tokens = 0;
  for (int step = 1; step <= o.steps; ++step) {
    auto const batch = make_batch<Cpu>(task.sample(train_rng, static_cast<std::size_t>(o.warm_batch)));
    try {
      auto const s = trainer.step(batch);
      window += s.loss.loss;
      tokens += s.loss.tokens;
    } catch (DivergenceError const&) {
      c.diverged_at = step;
      break;
    }
    if (step % o.eval_every == 0 || step == o.steps) {
      c.step.push_back(step);
      c.train_loss.push_back(window / static_cast<double>(tokens));
      c.held_nll.push_back(held_nll());
      window = 0;
      tokens = 0;
      progress("warmup", fmt::format("{} lr {:g}, step {}/{}, held-out nll {:.3f}", label, lr, step, o.steps, c.held_nll.back()),
               run, runs);
    }
  }
  return c;
}

void fig_warmup(Options const& o) {
  std::vector<Curve> curves;
  int run = 0;
  int const runs = static_cast<int>(3 * o.lrs.size());
  fmt::print("\nwarmup: training on the synthetic reverse task ({}-{} layers, d {}, batch {}, dropout 0.1, Adam "
             "(0.9, 0.98), no clipping), {} steps; with warm-up: inverse_sqrt, {} warm-up steps; without: constant "
             "lr\n  setup trainer: output projection tied to the embedding, label smoothing 0.1\n",
             o.warm_layers, o.warm_layers, o.warm_d_model, o.warm_batch, o.steps, o.warmup);
  for (float lr : o.lrs) {
    curves.push_back(train_curve<PostLN>(o, "post_warmup", lr, InverseSqrt{.peak = lr, .warmup = o.warmup}, run, runs));
    curves.push_back(train_curve<PostLN>(o, "post_nowarmup", lr, Constant{.lr = lr}, run, runs));
    curves.push_back(train_curve<PreLN>(o, "pre_nowarmup", lr, Constant{.lr = lr}, run, runs));
  }
  progress.clear();
  std::string csv = "lr,run,step,train_loss,heldout_nll\n";
  for (auto const& c : curves) {
    for (std::size_t k = 0; k < c.step.size(); ++k)
      csv += fmt::format("{:g},{},{},{},{:.6g}\n", c.lr, c.label, c.step[k],
                         std::isnan(c.train_loss[k]) ? std::string("") : fmt::format("{:.6g}", c.train_loss[k]),
                         c.held_nll[k]);
    fmt::print("  lr {:<6g} {:<14}: held-out nll per token {:.3f} at step 0, {:.3f} at step {}; lowest {:.3f}{}\n",
               c.lr, c.label, c.held_nll.front(), c.held_nll.back(), c.step.back(),
               *std::min_element(c.held_nll.begin(), c.held_nll.end()),
               c.diverged_at ? fmt::format(" (diverged at step {})", c.diverged_at) : std::string(""));
  }
  write_file(fs::path(o.out) / "warmup.csv", csv);
  std::string gp = gp_header("warmup", 1000, 450);
  gp += fmt::format("set multiplot layout 1,{} title 'Held-out loss on the synthetic reverse task: "
                    "Post-LN with and without warm-up, Pre-LN without (cf. Xiong et al. 2020) [trainer setup]'\n"
                    "set xlabel 'step'\nset ylabel 'held-out NLL per token'\nset key top right\n",
                    o.lrs.size());
  struct Run {
    char const* id;
    char const* title;
    char const* colour;
    int dt;
  };
  Run const rs[] = {{"post_warmup", "Post-LN, warm-up", "#d62728", 1},
                    {"post_nowarmup", "Post-LN, no warm-up", "#d62728", 2},
                    {"pre_nowarmup", "Pre-LN, no warm-up", "#1f77b4", 1}};
  for (float lr : o.lrs) {
    gp += fmt::format("set title 'lr {:g}'\nplot ", lr);
    std::string sep;
    for (auto const& r : rs) {
      gp += fmt::format("{}'warmup.csv' skip 1 using ((abs($1 - {:g}) < 1e-12 && strcol(2) eq '{}') ? $3 : NaN):5 "
                        "with linespoints lw 2 pt 7 ps 0.6 dt {} lc rgb '{}' title '{}'",
                        sep, lr, r.id, r.dt, r.colour, r.title);
      sep = ", \\\n     ";
    }
    gp += "\n";
  }
  gp += "unset multiplot\n";
  render(o, "warmup", gp);
}

}  // namespace

int main(int argc, char** argv) {
  Options o;
  CLI::App app{"Measure the effects of Xiong et al. 2020 and Liu et al. 2020 for PostLN, PreLN and AdminLN and "
               "write CSV + PNG figures"};
  add_options(app, o, type_names(FigurePolicies{}));
  CLI11_PARSE(app, argc, argv);

  try {
    if (o.threads > 0) omp_set_num_threads(o.threads);
    check_and_normalise(o);
    for (auto const& n : o.norms) dispatch(FigurePolicies{}, n, [](auto) {}, "--norms");
    std::set<std::string> only(o.only.begin(), o.only.end());
    auto want = [&](std::string const& f) { return only.empty() || only.contains(f); };
    fs::create_directories(o.out);

    fmt::print("paper_figures: writing to {}/ ; --setup {} (each figure names the setup it measured); policies {}; "
               "{} OpenMP threads\n",
               o.out, o.setup, fmt::join(o.norms, ", "), omp_get_max_threads());
    if (!o.no_png && !have_gnuplot())
      fmt::print("paper_figures: gnuplot not found: writing CSV and .gp scripts only; render them with "
                 "`cd {} && for f in *.gp; do gnuplot \"$f\"; done` after `apt-get install gnuplot-nox` "
                 "(scripts/install-deps.sh)\n",
                 o.out);
    Setup const st{&o, o.setup == "paper"};
    std::vector<std::pair<std::string, double>> times;
    auto timed = [&](std::string const& name, auto&& f) {
      if (!want(name)) return;
      double const t0 = elapsed();
      f();
      times.emplace_back(name, elapsed() - t0);
    };
    timed("grad_norms", [&] { fig_grad_norms(o, st); });
    timed("theorem1", [&] { fig_theorem1(o, st); });
    timed("output_change", [&] { fig_output_change(o, st); });
    timed("dependency", [&] { fig_dependency(o); });
    timed("admin_profile", [&] { fig_admin_profile(o, st); });
    timed("warmup", [&] { fig_warmup(o); });
    progress.clear();

    fmt::print("\ntime:");
    for (auto const& [n, t] : times) fmt::print(" {} {:.1f} s;", n, t);
    fmt::print(" total {:.1f} s\n", elapsed());
    std::vector<std::string> files;
    for (auto const& e : fs::directory_iterator(o.out))
      if (e.path().extension() == ".png") files.push_back(e.path().filename().string());
    std::sort(files.begin(), files.end());
    if (!files.empty()) fmt::print("figures in {}/: {}\n", o.out, fmt::join(files, ", "));
    return 0;
  } catch (Error const& e) {
    fmt::print(stderr, "paper_figures: {}\n", e.what());
    return 1;
  }
}
