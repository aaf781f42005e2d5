#pragma once
// Constant: the same learning rate for every update.

#include <lnformer/schedule/concept.hpp>

namespace lnformer {

struct Constant {
  static constexpr std::string_view name = "constant";
  float lr = 5e-4f;

  constexpr void validate() const { detail::check_schedule_rate(name, "lr", lr); }
  constexpr float operator()(std::int64_t step) const {
    validate();
    detail::check_schedule_step(name, step);
    return lr;
  }
};
static_assert(check_schedule<Constant>() && Schedule<Constant>);

}  // namespace lnformer
