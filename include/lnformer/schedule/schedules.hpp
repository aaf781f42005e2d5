#pragma once
// Every learning-rate schedule, and the list that turns a runtime name into one:
//   dispatch(Schedules{}, "inverse_sqrt", [&](auto tag) { using S = typename decltype(tag)::type; ... },
//            "schedule");
// and configure_schedule<S>(settings): one schedule of any type from the settings every program has
// (a learning rate, warm-up steps, the last step), for code that picks S at compile or run time.

#include <lnformer/core/error.hpp>
#include <lnformer/core/type_list.hpp>
#include <lnformer/schedule/concept.hpp>
#include <lnformer/schedule/constant.hpp>
#include <lnformer/schedule/cosine.hpp>
#include <lnformer/schedule/inverse_sqrt.hpp>
#include <lnformer/schedule/linear_warmup.hpp>
#include <lnformer/schedule/no_warmup_linear_decay.hpp>
#include <lnformer/schedule/warmup_linear_decay.hpp>

#include <cstdint>
#include <type_traits>

namespace lnformer {

using Schedules =
    TypeList<Constant, LinearWarmup, InverseSqrt, WarmupLinearDecay, NoWarmupLinearDecay, Cosine>;

/// The settings a command line or a benchmark gives for "some schedule".
struct ScheduleSettings {
  float lr = 5e-4f;          ///< the constant rate, or the peak of a schedule with a warm-up
  std::int64_t warmup = 0;   ///< warm-up steps (schedules that have one)
  std::int64_t total = 0;    ///< the step a decaying schedule ends at (schedules that have one)
};

/// S with the fields it has set from `s` (lr or peak, warmup, total), validated: a decaying schedule
/// without `total`, or an inverse-sqrt one without a warm-up, is a ValueError naming the schedule.
template <Schedule S>
[[nodiscard]] S configure_schedule(ScheduleSettings const& s) {
  S out{};
  if constexpr (requires { out.lr; }) out.lr = s.lr;
  if constexpr (requires { out.peak; }) out.peak = s.lr;
  if constexpr (requires { out.warmup; }) out.warmup = s.warmup;
  if constexpr (requires { out.total; }) {
    LNF_EXPECTS_AS(ValueError, s.total > 0, "schedule {} decays to a last step: give it (total {})", S::name, s.total);
    out.total = s.total;
  }
  if constexpr (std::is_same_v<S, InverseSqrt>)
    LNF_EXPECTS_AS(ValueError, s.warmup >= 1, "schedule inverse_sqrt needs a warm-up of at least 1 step (got {})",
                   s.warmup);
  out.validate();
  return out;
}

}  // namespace lnformer
