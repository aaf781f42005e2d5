#pragma once
// NoWarmupLinearDecay: linear decay from peak to 0 with no warm-up, the schedule Xiong et al. use
// for Pre-LN BERT (lr 3e-4). Same as WarmupLinearDecay with warmup = 0:
//   step < total:  peak * (total - step) / total        (step 0: peak; step 1, the first update:
//   otherwise:     0                                      peak * (1 - 1 / total))

#include <lnformer/schedule/concept.hpp>

namespace lnformer {

struct NoWarmupLinearDecay {
  static constexpr std::string_view name = "no_warmup_linear_decay";
  float peak = 5e-4f;
  std::int64_t total = 0;  ///< required: the update at which the rate reaches 0

  constexpr void validate() const {
    detail::check_schedule_rate(name, "peak", peak);
    LNF_EXPECTS_AS(ValueError, total >= 1,
                   "{} schedule: total = {} must be >= 1 (set .total to the number of updates)", name, total);
  }
  constexpr float operator()(std::int64_t step) const {
    validate();
    detail::check_schedule_step(name, step);
    if (step >= total) return 0.f;
    return static_cast<float>(static_cast<double>(peak) * static_cast<double>(total - step) /
                              static_cast<double>(total));
  }
};
static_assert(check_schedule<NoWarmupLinearDecay>() && Schedule<NoWarmupLinearDecay>);

}  // namespace lnformer
