#pragma once
// Global-norm gradient clipping, torch.nn.utils.clip_grad_norm_ (L2) semantics:
//
//   norm = sqrt(sum over every parameter's gradient of sum g^2)    (accumulated in double)
//   coef = max_norm / (norm + 1e-6);  if coef < 1: every gradient *= coef
//
// Returns the norm before clipping. max_norm <= 0 only computes the norm (fairseq's --clip-norm 0).
// A non-finite norm (a NaN or infinite gradient element) is returned as is and the gradients are left
// untouched: the caller checks it and skips the update (fairseq's overflow handling); torch would
// multiply every gradient by NaN.

#include <lnformer/backend/backends.hpp>
#include <lnformer/core/error.hpp>
#include <lnformer/nn/parameter.hpp>
#include <lnformer/ops/elementwise.hpp>

#include <cmath>
#include <span>
#include <vector>

namespace lnformer {

/// The L2 norm over all gradients of `params`, as clip_grad_norm computes it (no clipping).
template <class B>
[[nodiscard]] double grad_norm(ParameterList<B> const& params) {
  std::vector<CView<B>> grads;
  grads.reserve(params.size());
  for (auto const& p : params) {
    LNF_EXPECTS_AS(ValueError, p.param != nullptr, "grad_norm: parameter '{}' is a null pointer", p.name);
    grads.push_back(p.param->grad.cview());
  }
  return global_l2_norm(B{}, std::span<CView<B> const>(grads));  // ADL: the backend's ops, whatever the include order
}

/// Scales the gradients of `params` so that their global L2 norm is at most max_norm (see above);
/// returns the norm before clipping.
template <class B>
float clip_grad_norm(ParameterList<B> const& params, float max_norm) {
  LNF_EXPECTS_AS(ValueError, !std::isnan(max_norm), "clip_grad_norm: max_norm is NaN");
  double const norm = grad_norm(params);
  if (max_norm > 0.f && std::isfinite(norm)) {
    // torch computes the coefficient in float: max_norm / (norm + 1e-6) as reciprocal() * max_norm
    float const coef = 1.f / (static_cast<float>(norm) + 1e-6f) * max_norm;
    if (coef < 1.f)
      for (auto const& p : params) scale(B{}, p.param->grad.view(), coef);
  }
  return static_cast<float>(norm);
}

}  // namespace lnformer
