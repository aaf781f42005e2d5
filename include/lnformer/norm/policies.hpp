#pragma once
// Every normalization policy of the library. A new policy is one header and one entry here; the
// programs (--norm), the tests, the parity checks and the policy-matrix benchmark read this list
// (CMake reads it too: cmake/LnfNormPolicies.cmake), and the contract is checked for each entry below.

#include <lnformer/core/type_list.hpp>
#include <lnformer/norm/admin_ln.hpp>
#include <lnformer/norm/deep_norm.hpp>
#include <lnformer/norm/peri_ln.hpp>
#include <lnformer/norm/post_ln.hpp>
#include <lnformer/norm/pre_ln.hpp>
#include <lnformer/norm/rezero.hpp>

namespace lnformer {

using NormPolicies = TypeList<PostLN, PreLN, AdminLN, DeepNorm, ReZero, PeriLN>;

static_assert([]<class... Ns>(TypeList<Ns...>) { return (check_norm_policy<Ns, Cpu>() && ...); }(NormPolicies{}));

}  // namespace lnformer
