#pragma once
// What `translate train` settles before training when --out already holds something: the checkpoint
// to resume (a damaged latest one names the older ones that verify).

#include "commands.hpp"

namespace translate {

/// The newest numbered checkpoint in `dir`, verified. When it is damaged, the error says so and
/// names the older checkpoints that verify, with the command that continues from one.
inline CheckpointInfo latest_checkpoint(fs::path const& dir) {
  auto const all = numbered_checkpoints(dir);
  LNF_EXPECTS_AS(IoError, !all.empty(), "--resume: no checkpoint_<step>.safetensors in '{}'", dir.string());
  fs::path const latest = all.rbegin()->second;
  try {
    return checkpoint_info(latest);
  } catch (std::exception const& e) {
    std::vector<std::string> older;
    for (auto it = std::next(all.rbegin()); it != all.rend(); ++it) {
      try {
        auto const info = checkpoint_info(it->second);
        older.push_back(fmt::format("{} (step {})", info.path.string(), info.step));
      } catch (std::exception const&) {
        older.push_back(fmt::format("{} (damaged too)", it->second.string()));
      }
    }
    std::string const hint =
        older.empty()
            ? std::string("there is no older checkpoint in it")
            : fmt::format("older checkpoints: {}; continue from one with `translate train --out {} --resume-from "
                          "<checkpoint>` (the newer ones are then moved to {})",
                          fmt::join(older, ", "), dir.string(), (dir / "abandoned").string());
    throw IoError(fmt::format("--resume: the latest checkpoint {} cannot be used: {}\n  {}", latest.string(), e.what(),
                              hint));
  }
}

}  // namespace translate
