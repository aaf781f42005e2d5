#pragma once
// LinearWarmup: linear from warmup_init (default 0) to peak over `warmup` updates, then constant.
//   step < warmup:  warmup_init + step * (peak - warmup_init) / warmup
//   otherwise:      peak
// (steps counted from 1, see schedule/concept.hpp; warmup = 0 is a constant peak)

#include <lnformer/schedule/concept.hpp>

namespace lnformer {

struct LinearWarmup {
  static constexpr std::string_view name = "linear_warmup";
  float peak = 5e-4f;
  std::int64_t warmup = 4000;
  float warmup_init = 0.f;

  constexpr void validate() const {
    detail::check_schedule_rate(name, "peak", peak);
    detail::check_schedule_rate(name, "warmup_init", warmup_init);
    detail::check_schedule_steps(name, "warmup", warmup, 0);
  }
  constexpr float operator()(std::int64_t step) const {
    validate();
    detail::check_schedule_step(name, step);
    if (step < warmup) return static_cast<float>(detail::linear_ramp(warmup_init, peak, step, warmup));
    return peak;
  }
};
static_assert(check_schedule<LinearWarmup>() && Schedule<LinearWarmup>);

}  // namespace lnformer
