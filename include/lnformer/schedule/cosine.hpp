#pragma once
// Cosine: linear warm-up from warmup_init to peak, then half a cosine down to min_lr at `total`.
//   step < warmup:           warmup_init + step * (peak - warmup_init) / warmup
//   warmup <= step < total:  min_lr + (peak - min_lr) * (1 + cos(pi * p)) / 2,
//                            p = (step - warmup) / (total - warmup)
//   step >= total:           min_lr

#include <lnformer/schedule/concept.hpp>

namespace lnformer {

struct Cosine {
  static constexpr std::string_view name = "cosine";
  float peak = 5e-4f;
  std::int64_t warmup = 4000;
  std::int64_t total = 0;  ///< required: the update at which the rate reaches min_lr
  float min_lr = 0.f;
  float warmup_init = 0.f;

  constexpr void validate() const {
    detail::check_schedule_rate(name, "peak", peak);
    detail::check_schedule_rate(name, "min_lr", min_lr);
    detail::check_schedule_rate(name, "warmup_init", warmup_init);
    detail::check_schedule_steps(name, "warmup", warmup, 0);
    LNF_EXPECTS_AS(ValueError, total > warmup,
                   "{} schedule: total = {} must be greater than warmup = {} (set .total to the number of updates)",
                   name, total, warmup);
    LNF_EXPECTS_AS(ValueError, min_lr <= peak, "{} schedule: min_lr = {} must not exceed peak = {}", name, min_lr,
                   peak);
  }
  constexpr float operator()(std::int64_t step) const {
    validate();
    detail::check_schedule_step(name, step);
    if (step < warmup) return static_cast<float>(detail::linear_ramp(warmup_init, peak, step, warmup));
    if (step >= total) return min_lr;
    double const p = static_cast<double>(step - warmup) / static_cast<double>(total - warmup);
    double const lo = min_lr;
    return static_cast<float>(lo + (static_cast<double>(peak) - lo) * 0.5 *
                                       (1.0 + detail::constexpr_cos(detail::kConstexprPi * p)));
  }
};
static_assert(check_schedule<Cosine>() && Schedule<Cosine>);

}  // namespace lnformer
