#pragma once
// The run directory's checkpoints: their names and steps, the one translate/evaluate use by default,
// and the translate/* metadata every checkpoint carries.

#include "run_config.hpp"

#include <charconv>
#include <map>

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

/// The checkpoint translate/evaluate use by default: best, else the latest.
inline fs::path default_checkpoint(fs::path const& dir) {
  if (fs::exists(dir / "checkpoint_best.safetensors")) return dir / "checkpoint_best.safetensors";
  auto const all = numbered_checkpoints(dir);
  LNF_EXPECTS_AS(IoError, !all.empty(), "no checkpoint in '{}' (train one with `translate train --out {}`)",
                 dir.string(), dir.string());
  return all.rbegin()->second;
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

}  // namespace translate
