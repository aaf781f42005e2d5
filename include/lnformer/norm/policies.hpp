#pragma once
// Every normalization policy of the library. A new policy is one header and one entry here.

#include <lnformer/core/type_list.hpp>
#include <lnformer/norm/admin_ln.hpp>
#include <lnformer/norm/deep_norm.hpp>
#include <lnformer/norm/post_ln.hpp>
#include <lnformer/norm/pre_ln.hpp>
#include <lnformer/norm/rezero.hpp>

namespace lnformer {

using NormPolicies = TypeList<PostLN, PreLN, AdminLN, DeepNorm, ReZero>;

static_assert(check_norm_policy<PostLN, Cpu>());
static_assert(check_norm_policy<PreLN, Cpu>());
static_assert(check_norm_policy<AdminLN, Cpu>());
static_assert(check_norm_policy<DeepNorm, Cpu>());
static_assert(check_norm_policy<ReZero, Cpu>());

}  // namespace lnformer
