#pragma once
// What every part of the translate program shares: names, exit statuses, the ranks of the run, the
// signal flag, and small helpers (durations, atomic line files).

#include <lnformer/dist/communicator.hpp>
#include <lnformer/lnformer.hpp>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <string>
#include <string_view>
#include <utility>
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


/// A file written whole or not at all: the bytes go to `<path>.tmp`, which commit() flushes, syncs
/// and renames over `path`. Any failure (a full disk) throws IoError naming `path` and the reason,
/// and the destructor of an uncommitted file removes the temporary one: no partial file is left,
/// and an older `path` stays as it was.
class AtomicFile {
 public:
  explicit AtomicFile(fs::path path) : path_(std::move(path)), tmp_(path_.string() + ".tmp") {
    LNF_EXPECTS_AS(IoError, !fs::is_directory(path_), "cannot write '{}': it is a directory", path_.string());
    f_ = std::fopen(tmp_.c_str(), "wb");
    if (f_ == nullptr) fail("cannot create");
  }
  AtomicFile(AtomicFile const&) = delete;
  AtomicFile& operator=(AtomicFile const&) = delete;
  ~AtomicFile() {
    if (f_ != nullptr) std::fclose(f_);
    if (!committed_) std::remove(tmp_.c_str());
  }
  void write(std::string_view s) {
    if (std::fwrite(s.data(), 1, s.size(), f_) != s.size()) fail("cannot write");
  }
  void commit() {
    if (std::fflush(f_) != 0) fail("cannot write");
    if (::fsync(::fileno(f_)) != 0) fail("cannot sync");
    std::FILE* const f = std::exchange(f_, nullptr);
    if (std::fclose(f) != 0) fail("cannot write");
    if (std::rename(tmp_.c_str(), path_.c_str()) != 0) fail("cannot rename the temporary file to");
    committed_ = true;
  }
  [[nodiscard]] fs::path const& path() const { return path_; }

 private:
  [[noreturn]] void fail(char const* what) const {
    int const err = errno;
    throw IoError(fmt::format("{} '{}': {} (nothing was written to it{})", what, path_.string(), std::strerror(err),
                              fs::exists(path_) ? "; the file there is unchanged" : ""));
  }
  fs::path path_;
  std::string tmp_;
  std::FILE* f_ = nullptr;
  bool committed_ = false;
};

inline void write_lines(fs::path const& path, std::vector<std::string> const& lines) {
  AtomicFile f(path);
  for (auto const& l : lines) {
    f.write(l);
    f.write("\n");
  }
  f.commit();
}

}  // namespace translate
