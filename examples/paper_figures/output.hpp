#pragma once
// paper_figures' output: progress lines, files, gnuplot scripts and their rendering, CSV fields.
// Nothing here names a policy.

#include "options.hpp"

#include <lnformer/analysis/seed_summary.hpp>
#include <lnformer/core/error.hpp>

#include <fmt/format.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>
#include <string_view>
#include <vector>

namespace paper_figures {

using lnformer::IoError;
using lnformer::SeedSummary;
using Clock = std::chrono::steady_clock;

inline Clock::time_point const g_start = Clock::now();
inline double elapsed() { return std::chrono::duration<double>(Clock::now() - g_start).count(); }

/// "[theorem1] pre, L = 12 (5/12)  34.2 s": one line, rewritten in place on a terminal.
struct Progress {
  bool tty = isatty(fileno(stderr)) != 0;
  void operator()(std::string_view fig, std::string const& what, int i, int n) const {
    std::fflush(stdout);
    auto const line = fmt::format("[{}] {} ({}/{})  {:.1f} s elapsed", fig, what, i, n, elapsed());
    if (tty)
      fmt::print(stderr, "\r{:<110}", line);
    else
      fmt::print(stderr, "{}\n", line);
    std::fflush(stderr);
  }
  void clear() const {
    if (tty) fmt::print(stderr, "\r{:<110}\r", "");
  }
};
inline Progress const progress;

inline void write_file(std::filesystem::path const& p, std::string const& text) {
  std::ofstream f(p, std::ios::trunc);
  LNF_EXPECTS_AS(IoError, f.good(), "cannot write {}", p.string());
  f << text;
  f.flush();
  LNF_EXPECTS_AS(IoError, f.good(), "writing {} failed", p.string());
}

inline bool have_gnuplot() {
  static bool const yes = std::system("command -v gnuplot >/dev/null 2>&1") == 0;
  return yes;
}

/// The start of every script: a small PNG (pngcairo when gnuplot has it), CSV input.
inline std::string gp_header(std::string const& name, int w = 800, int h = 500) {
  return fmt::format(
      "# {0}.png from {0}.csv; render with: gnuplot {0}.gp (in this directory)\n"
      "if (strstrt(GPVAL_TERMINALS, 'pngcairo') > 0) {{\n"
      "  set terminal pngcairo size {1},{2} noenhanced font ',10'\n"
      "}} else {{\n"
      "  set terminal png size {1},{2} noenhanced\n"
      "}}\n"
      "set output '{0}.png'\n"
      "set datafile separator comma\n"
      "set grid\n"
      "set key top left\n",
      name, w, h);
}

/// Writes NAME.gp and renders it when gnuplot is there and rendering is not off.
inline void render(Options const& o, std::string const& name, std::string const& script) {
  std::filesystem::path const dir(o.out);
  write_file(dir / (name + ".gp"), script);
  if (o.no_png) return;
  if (!have_gnuplot()) return;
  auto const cmd = fmt::format("cd '{}' && gnuplot '{}.gp'", dir.string(), name);
  if (std::system(cmd.c_str()) != 0)
    fmt::print(stderr, "paper_figures: gnuplot failed on {}; the CSV is there\n", (dir / (name + ".gp")).string());
}

/// "median,q1,q3,min,max" of a summary, for the CSVs.
inline std::string csv_summary(SeedSummary const& s) {
  return fmt::format("{:.6g},{:.6g},{:.6g},{:.6g},{:.6g}", s.median, s.q1, s.q3, s.min, s.max);
}
inline std::string csv_summary_header(std::string const& q) {
  return fmt::format("{0}_median,{0}_q1,{0}_q3,{0}_min,{0}_max", q);
}

inline std::string list(std::vector<double> const& v, char const* f = "{:.4g}") {
  std::string s;
  for (double x : v) s += (s.empty() ? "" : ", ") + fmt::format(fmt::runtime(f), x);
  return s;
}

/// gnuplot: a filter on the policy column (2; column 1 is the setup).
inline std::string policy_is(std::string_view nm) { return fmt::format("strcol(2) eq '{}'", nm); }

}  // namespace paper_figures
