#pragma once
// InverseSqrt: fairseq's `inverse_sqrt` (Vaswani et al.; the IWSLT/WMT recipes of both papers).
//   step < warmup:  warmup_init + step * (peak - warmup_init) / warmup      (linear warm-up)
//   otherwise:      peak * sqrt(warmup) / sqrt(step)                         (= peak at step = warmup)
// fairseq's names: peak = --lr, warmup = --warmup-updates, warmup_init = --warmup-init-lr.
// Steps counted from 1 (fairseq gives update t the value at t - 1; see schedule/concept.hpp).

#include <lnformer/schedule/concept.hpp>

namespace lnformer {

struct InverseSqrt {
  static constexpr std::string_view name = "inverse_sqrt";
  float peak = 5e-4f;
  std::int64_t warmup = 4000;
  float warmup_init = 0.f;

  constexpr void validate() const {
    detail::check_schedule_rate(name, "peak", peak);
    detail::check_schedule_rate(name, "warmup_init", warmup_init);
    // The decay is anchored at the end of warm-up: with warmup = 0 it would be 0 forever.
    detail::check_schedule_steps(name, "warmup", warmup, 1);
  }
  constexpr float operator()(std::int64_t step) const {
    validate();
    detail::check_schedule_step(name, step);
    if (step < warmup) return static_cast<float>(detail::linear_ramp(warmup_init, peak, step, warmup));
    // fairseq: decay_factor = lr * warmup_updates ** 0.5; lr = decay_factor * num_updates ** -0.5
    double const decay_factor = static_cast<double>(peak) * detail::constexpr_sqrt(static_cast<double>(warmup));
    return static_cast<float>(decay_factor / detail::constexpr_sqrt(static_cast<double>(step)));
  }
};
static_assert(check_schedule<InverseSqrt>() && Schedule<InverseSqrt>);

}  // namespace lnformer
