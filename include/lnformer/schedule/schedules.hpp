#pragma once
// Every learning-rate schedule, and the list that turns a runtime name into one:
//   dispatch(Schedules{}, "inverse_sqrt", [&](auto tag) { using S = typename decltype(tag)::type; ... },
//            "schedule");

#include <lnformer/core/type_list.hpp>
#include <lnformer/schedule/concept.hpp>
#include <lnformer/schedule/constant.hpp>
#include <lnformer/schedule/cosine.hpp>
#include <lnformer/schedule/inverse_sqrt.hpp>
#include <lnformer/schedule/linear_warmup.hpp>
#include <lnformer/schedule/no_warmup_linear_decay.hpp>
#include <lnformer/schedule/warmup_linear_decay.hpp>

namespace lnformer {

using Schedules =
    TypeList<Constant, LinearWarmup, InverseSqrt, WarmupLinearDecay, NoWarmupLinearDecay, Cosine>;

}  // namespace lnformer
