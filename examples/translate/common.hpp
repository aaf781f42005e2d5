#pragma once
// What every part of the translate program shares: names, exit statuses, the ranks of the run, the
// signal flag, and small helpers (durations, atomic line files).

#include <lnformer/dist/communicator.hpp>
#include <lnformer/lnformer.hpp>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <string>
#include <string_view>
#include <vector>

namespace translate {

using namespace lnformer;
namespace fs = std::filesystem;
using json = nlohmann::json;
using Clock = std::chrono::steady_clock;
using Ids = std::vector<std::int32_t>;

inline constexpr int kExitError = 1, kExitDiverged = 3, kExitInterrupted = 130;
inline constexpr std::string_view kFormat = "1";  ///< translate/format of the checkpoints written

// The ranks of this run: one process, or the MPI job (set in main).
inline dist::SingleProcess g_single;
inline dist::Communicator* g_comm = &g_single;

/// The last SIGINT/SIGTERM received (0: none); set by main's handler, read by the training loop.
inline std::atomic<int> g_signal{0};


inline std::string duration(double s) {
  if (!std::isfinite(s) || s < 0) return "?";
  auto const t = static_cast<long>(s + 0.5);
  if (t >= 3600) return fmt::format("{}h{:02d}m", t / 3600, (t / 60) % 60);
  if (t >= 60) return fmt::format("{}m{:02d}s", t / 60, t % 60);
  return fmt::format("{}s", t);
}

inline double seconds_since(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }


inline void write_lines(fs::path const& path, std::vector<std::string> const& lines) {
  fs::path const tmp = path.string() + ".tmp";
  {
    std::ofstream f(tmp, std::ios::binary | std::ios::trunc);
    LNF_EXPECTS_AS(IoError, f.good(), "cannot write '{}'", tmp.string());
    for (auto const& l : lines) f << l << '\n';
    f.flush();
    LNF_EXPECTS_AS(IoError, f.good(), "error writing '{}'", tmp.string());
  }
  fs::rename(tmp, path);
}

}  // namespace translate
