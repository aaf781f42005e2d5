#pragma once
// WarmupLinearDecay: BERT's schedule, linear warm-up from 0 to peak, then linear decay to 0.
//   step < warmup:           peak * step / warmup
//   warmup <= step < total:  peak * (total - step) / (total - warmup)
//   step >= total:           0
// The decay runs from the end of warm-up (continuous at step = warmup, as HuggingFace's
// get_linear_schedule_with_warmup); the original BERT code decays from step 0, i.e. its value right
// after warm-up is peak * (1 - warmup / total). `total` must be set (the number of updates).

#include <lnformer/schedule/concept.hpp>

namespace lnformer {

struct WarmupLinearDecay {
  static constexpr std::string_view name = "warmup_linear_decay";
  float peak = 5e-4f;
  std::int64_t warmup = 4000;
  std::int64_t total = 0;  ///< required: the update at which the rate reaches 0

  constexpr void validate() const {
    detail::check_schedule_rate(name, "peak", peak);
    detail::check_schedule_steps(name, "warmup", warmup, 0);
    LNF_EXPECTS_AS(ValueError, total > warmup,
                   "{} schedule: total = {} must be greater than warmup = {} (set .total to the number of updates)",
                   name, total, warmup);
  }
  constexpr float operator()(std::int64_t step) const {
    validate();
    detail::check_schedule_step(name, step);
    if (step < warmup) return static_cast<float>(detail::linear_ramp(0.0, peak, step, warmup));
    if (step >= total) return 0.f;
    return static_cast<float>(static_cast<double>(peak) * static_cast<double>(total - step) /
                              static_cast<double>(total - warmup));
  }
};
static_assert(check_schedule<WarmupLinearDecay>() && Schedule<WarmupLinearDecay>);

}  // namespace lnformer
