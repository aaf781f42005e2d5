#pragma once
// ForwardContext: the settings of one forward pass (training or not, dropout seed and pass).

#include <cstdint>

namespace lnformer {

/// Per-forward-pass settings. Dropout masks are a pure function of (seed, site, pass), so the same
/// context reproduces the same masks (the Admin profile and the perturbation analysis rely on it).
struct ForwardContext {
  bool training = true;
  std::uint64_t seed = 0;
  std::uint64_t pass = 0;  ///< advance once per forward pass (e.g. the step counter)
};

}  // namespace lnformer
