#pragma once
// The Schedule concept: a learning-rate schedule is an aggregate of its configuration with
//
//   struct MySchedule {
//     static constexpr std::string_view name = "mine";
//     float peak = 5e-4f;                                 // configuration: plain fields
//     constexpr void validate() const;                    // ValueError naming the bad field
//     constexpr float operator()(std::int64_t step) const;  // the learning rate of update `step`
//   };
//
// Step convention (all schedules): `step` is the number of the update the rate is used for,
// counting from 1 for the first update, i.e. fairseq's num_updates after that update. A linear
// warm-up of W steps therefore reaches the peak at step W exactly, and InverseSqrt decays as
// peak * sqrt(W / step) from there, as written in fairseq's docstring and in Xiong et al.
// fairseq itself applies the value for num_updates = t - 1 to update t (its first update runs at
// warmup_init_lr, 0 by default); to reproduce a fairseq run bit for bit, call schedule(t - 1).
// step = 0 is allowed (the value "before the first update"); a negative step is a ValueError.
//
// operator() validates the configuration first, so an invalid schedule evaluated in a constant
// expression is a compile error and at run time a ValueError; the arithmetic is in double and the
// result is rounded to float once.

#include <lnformer/core/error.hpp>
#include <lnformer/schedule/constexpr_math.hpp>

#include <concepts>
#include <cstdint>
#include <string_view>
#include <type_traits>

namespace lnformer {

template <class S>
concept Schedule = requires { { S::name } -> std::convertible_to<std::string_view>; } &&
                   std::default_initializable<S> && std::copyable<S> &&
                   requires(S const& s, std::int64_t step) {
                     { s(step) } -> std::same_as<float>;
                     s.validate();
                   };

/// Checks a schedule member by member, so that a user-written schedule that misses one fails with
/// a message naming it: `static_assert(check_schedule<MySchedule>());`.
template <class S>
consteval bool check_schedule() {
  static_assert(requires { { S::name } -> std::convertible_to<std::string_view>; },
                "Schedule: missing `static constexpr std::string_view name` (see schedule/concept.hpp)");
  static_assert(std::default_initializable<S> && std::copyable<S>,
                "Schedule: a schedule is a copyable aggregate of its configuration with defaults for every field");
  static_assert(requires(S const& s, std::int64_t step) { { s(step) } -> std::same_as<float>; },
                "Schedule: missing `constexpr float operator()(std::int64_t step) const` (the learning rate of "
                "update `step`, counted from 1; see schedule/concept.hpp)");
  static_assert(requires(S const& s) { s.validate(); },
                "Schedule: missing `constexpr void validate() const` (throws ValueError for a bad configuration)");
  return true;
}

namespace detail {

constexpr void check_schedule_step(std::string_view schedule, std::int64_t step) {
  LNF_EXPECTS_AS(ValueError, step >= 0,
                 "{} schedule: step {} is negative; steps count updates from 1 (step 0 is before the first)",
                 schedule, step);
}

/// A learning-rate field must be finite and >= 0.
constexpr void check_schedule_rate(std::string_view schedule, std::string_view field, float v) {
  LNF_EXPECTS_AS(ValueError, constexpr_isfinite(v) && v >= 0, "{} schedule: {} = {} must be finite and >= 0",
                 schedule, field, v);
}

constexpr void check_schedule_steps(std::string_view schedule, std::string_view field, std::int64_t v,
                                    std::int64_t min) {
  LNF_EXPECTS_AS(ValueError, v >= min, "{} schedule: {} = {} must be >= {}", schedule, field, v, min);
}

/// Linear from `from` at step 0 to `to` at step `steps` (steps > 0), fairseq's arithmetic:
/// from + step * ((to - from) / steps).
constexpr double linear_ramp(double from, double to, std::int64_t step, std::int64_t steps) {
  return from + static_cast<double>(step) * ((to - from) / static_cast<double>(steps));
}

}  // namespace detail
}  // namespace lnformer
