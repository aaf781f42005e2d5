#pragma once
// The run directory's checkpoints: their names and steps, the one translate/evaluate use by default,
// the translate/* metadata every checkpoint carries, and the rules that keep them a consistent set.
//
// The set: checkpoint_<step>.safetensors (the newest --keep-last of the current line of training)
// and checkpoint_best.safetensors, the numbered checkpoint of the best validation BLEU, published
// after it as a hard link (a copy where the file system has none) renamed into place. A crash
// between the two leaves a stale best; every numbered checkpoint records the step and BLEU of the
// run's best, so `--resume` finds and repairs that (settle_best) and translate/evaluate notice it
// (default_checkpoint). Nothing valid is deleted to make the set consistent: files that do not
// belong to the line being continued (an abandoned continuation's newer checkpoints, a stale or
// foreign best) move to <out>/abandoned/.

#include "run_config.hpp"

#include <lnformer/io/checksum.hpp>

#include <charconv>
#include <map>
#include <optional>

namespace translate {

/// checkpoint_<step>.safetensors in dir, by step.
inline std::map<std::int64_t, fs::path> numbered_checkpoints(fs::path const& dir) {
  std::map<std::int64_t, fs::path> out;
  if (!fs::is_directory(dir)) return out;
  for (auto const& e : fs::directory_iterator(dir)) {
    auto const name = e.path().filename().string();
    if (!name.starts_with("checkpoint_") || !name.ends_with(".safetensors")) continue;
    auto const num = name.substr(11, name.size() - 11 - 12);
    std::int64_t step = 0;
    auto const [end, ec] = std::from_chars(num.data(), num.data() + num.size(), step);
    if (ec == std::errc{} && end == num.data() + num.size()) out.emplace(step, e.path());
  }
  return out;
}

inline fs::path checkpoint_path(fs::path const& dir, std::int64_t step) {
  return dir / fmt::format("checkpoint_{}.safetensors", step);
}

inline std::string const& meta_at(std::map<std::string, std::string> const& meta, std::string const& key,
                           std::string const& source) {
  auto it = meta.find(key);
  LNF_EXPECTS_AS(IoError, it != meta.end(), "'{}' is not a translate checkpoint: its metadata has no '{}'", source,
                 key);
  return it->second;
}

inline std::int64_t meta_int(std::map<std::string, std::string> const& meta, std::string const& key, std::string const& source) {
  auto const& s = meta_at(meta, key, source);
  std::int64_t v = 0;
  auto const [end, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  LNF_EXPECTS_AS(IoError, ec == std::errc{} && end == s.data() + s.size(), "'{}': metadata {} = '{}' is not an integer",
                 source, key, s);
  return v;
}

inline RunConfig config_of(std::map<std::string, std::string> const& meta, std::string const& source) {
  LNF_EXPECTS_AS(IoError, meta_at(meta, "translate/format", source) == kFormat,
                 "'{}': translate checkpoint format '{}' is not the supported '{}'", source,
                 meta_at(meta, "translate/format", source), kFormat);
  try {
    return json::parse(meta_at(meta, "translate/config", source)).get<RunConfig>();
  } catch (json::exception const& e) {
    throw IoError(fmt::format("'{}': translate/config is not a valid configuration: {}", source, e.what()));
  }
}

inline fs::path best_checkpoint_path(fs::path const& dir) { return dir / "checkpoint_best.safetensors"; }

/// What the consistency rules need from a checkpoint.
struct CheckpointInfo {
  fs::path path;
  std::int64_t step = 0;       ///< updates done (optim/step)
  std::int64_t best_step = 0;  ///< the step of the run's best validation BLEU when it was written
  std::string best_bleu;       ///< that BLEU as written (text: compared, never parsed)
  std::map<std::string, std::string> meta;
};

/// Opens `path` and verifies its checksum (an IoError naming the file when it is damaged).
inline CheckpointInfo checkpoint_info(fs::path const& path) {
  auto const file = io::SafetensorsFile::open(path.string());
  io::verify_checksum(file, /*required=*/true);
  auto const& m = file.metadata();
  return {path, meta_int(m, "optim/step", file.source()), meta_int(m, "translate/best_step", file.source()),
          meta_at(m, "translate/best_bleu", file.source()), m};
}

/// Moves `file` into <dir>/abandoned/ as `name` (its own name by default; "-2", "-3"... when taken)
/// and returns where it went.
inline fs::path move_aside(fs::path const& dir, fs::path const& file, std::string name = {}) {
  fs::path const to_dir = dir / "abandoned";
  fs::create_directories(to_dir);
  if (name.empty()) name = file.filename().string();
  fs::path to = to_dir / name;
  for (int k = 2; fs::exists(to); ++k)
    to = to_dir / fmt::format("{}-{}{}", fs::path(name).stem().string(), k, fs::path(name).extension().string());
  fs::rename(file, to);
  return to;
}

/// checkpoint_best becomes `numbered`: a hard link (no second write, no extra space; a copy where
/// the file system has none) renamed over it, so it is always one whole checkpoint.
inline void publish_best(fs::path const& numbered, fs::path const& best) {
  fs::path const tmp = best.string() + ".tmp";
  std::error_code ec;
  fs::remove(tmp, ec);
  fs::create_hard_link(numbered, tmp, ec);
  if (ec) {
    fs::copy_file(numbered, tmp, ec);
    if (ec) {
      std::error_code ignored;
      fs::remove(tmp, ignored);
      throw IoError(fmt::format("cannot write '{}' (a copy of '{}'): {}", best.string(), numbered.string(),
                                ec.message()));
    }
  }
  fs::rename(tmp, best);
}

/// Whether checkpoint_best in `dir` is the checkpoint of `line`'s best (its step and BLEU); if
/// not, why, in words.
inline std::optional<std::string> best_mismatch(fs::path const& dir, CheckpointInfo const& line) {
  fs::path const best = best_checkpoint_path(dir);
  if (!fs::exists(best)) return fmt::format("there is no {}", best.filename().string());
  CheckpointInfo b;
  try {
    b = checkpoint_info(best);
  } catch (std::exception const& e) {
    return fmt::format("{} cannot be used: {}", best.filename().string(), e.what());
  }
  if (b.step == line.best_step && b.best_bleu == line.best_bleu) return std::nullopt;
  return fmt::format("{} holds step {} (valid BLEU {}) but {} records the best at step {} (valid BLEU {})",
                     best.filename().string(), b.step, b.best_bleu, line.path.filename().string(), line.best_step,
                     line.best_bleu);
}

/// On resume (from `from`): makes checkpoint_best the checkpoint of the resumed line's best. A stale
/// best (a crash or full disk between the numbered file and the best, or an abandoned
/// continuation's) is moved aside and the numbered checkpoint of the best step published in its
/// place; where that one is gone (pruned), the run goes on without a best on disk until its next
/// better validation. Says what it did; returns whether checkpoint_best is now right.
inline bool settle_best(fs::path const& dir, CheckpointInfo const& from, std::vector<std::string>& log) {
  auto const why = best_mismatch(dir, from);
  if (!why) return true;
  fs::path const best = best_checkpoint_path(dir);
  std::string moved;
  if (fs::exists(best)) moved = fmt::format("; the old file is now {}", move_aside(dir, best).string());
  std::optional<CheckpointInfo> source;
  if (from.step == from.best_step) {
    source = from;
  } else if (auto const all = numbered_checkpoints(dir); all.contains(from.best_step)) {
    try {
      source = checkpoint_info(all.at(from.best_step));
    } catch (std::exception const& e) {
      log.push_back(fmt::format("{} cannot be used: {}", all.at(from.best_step).string(), e.what()));
    }
  }
  if (source && source->best_bleu == from.best_bleu) {
    publish_best(source->path, best);
    log.push_back(fmt::format("{}: restored from {}{}", *why, source->path.string(), moved));
    return true;
  }
  log.push_back(fmt::format("{}, and the checkpoint of step {} is no longer on disk{}: the next better validation "
                            "writes a new best; until then the final test uses the last model",
                            *why, from.best_step, moved));
  return false;
}

/// The checkpoint translate/evaluate use by default: best, else the latest. A best that the newest
/// valid numbered checkpoint does not confirm (a save interrupted between the two files) is not
/// used silently: the numbered checkpoint of the recorded best step is, with a note on stderr.
inline fs::path default_checkpoint(fs::path const& dir) {
  auto const all = numbered_checkpoints(dir);
  fs::path const best = best_checkpoint_path(dir);
  if (all.empty()) {
    LNF_EXPECTS_AS(IoError, fs::exists(best), "no checkpoint in '{}' (train one with `translate train --out {}`)",
                   dir.string(), dir.string());
    return best;
  }
  std::optional<CheckpointInfo> latest;
  for (auto it = all.rbegin(); it != all.rend() && !latest; ++it) {
    try {
      latest = checkpoint_info(it->second);
    } catch (std::exception const& e) {
      fmt::print(stderr, "translate: skipping {}: {}\n", it->second.string(), e.what());
    }
  }
  LNF_EXPECTS_AS(IoError, latest.has_value() || fs::exists(best), "no usable checkpoint in '{}'", dir.string());
  if (!latest) return best;  // loading it says whether it is usable
  auto const why = best_mismatch(dir, *latest);
  if (!why) return best;
  fs::path const use = all.contains(latest->best_step) ? all.at(latest->best_step) : latest->path;
  fmt::print(stderr, "translate: {}; using {} (`translate train --out {} --resume` repairs checkpoint_best)\n", *why,
             use.string(), dir.string());
  return use;
}

}  // namespace translate
