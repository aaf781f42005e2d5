#pragma once
// Label-smoothed cross-entropy over logits, row-wise, as fairseq's label_smoothed_cross_entropy
// defines it (Szegedy et al. 2016 with fairseq's eps_i = eps / (V - 1)).
//
//   cross_entropy_forward(B, View loss, View nll, View lse, CView logits, IView targets, float eps,
//                         int32 padding_idx)
//     lse[n]  = log sum_v exp(logits[n, v])                     (the cache for backward)
//     nll[n]  = lse[n] - logits[n, t_n]                         (-log p_t)
//     smooth  = sum_v (lse[n] - logits[n, v])                   (-sum_v log p_v)
//     loss[n] = (1 - eps - eps_i) * nll[n] + eps_i * smooth      with eps_i = eps / (V - 1)
//     All ASSIGN. Rows with t_n == padding_idx get loss = nll = 0 (lse is still written).
//     nll may be empty (not wanted); loss and lse are required.
//   cross_entropy_backward(B, View dlogits, CView dloss, CView logits, CView lse, IView targets,
//                          float eps, int32 padding_idx)
//     dlogits[n, k] = dloss[n] * (p_k - (1 - eps - eps_i) [k == t_n] - eps_i),  p = softmax(logits[n])
//     (ASSIGN; padding rows get 0). The coefficient of p_k is (1 - eps - eps_i) + V eps_i = 1.
//     dlogits may alias logits (in place: the [N, V] logits buffer is the largest activation).
//
// Shapes: logits, dlogits [N, V]; targets, loss, nll, lse, dloss [N]; all contiguous.
// Values: eps in [0, 1); V >= 1, and V >= 2 when eps > 0 (eps_i is undefined for V = 1); every target
// other than padding_idx in [0, V) (ValueError naming row, target and V; checked before writing).
// padding_idx is a target value, in [0, V) (fairseq's pad id 1) or not (PyTorch's ignore_index -100).
// A NaN logit makes its row's lse, nll, loss and gradient NaN (a divergence is never hidden).
// The summed (or token-averaged) loss is the caller's reduction: backward of sum(loss) is dloss = 1.
// Implementations: backend/cpu/cross_entropy.hpp, backend/reference/cross_entropy.hpp.

#include <lnformer/core/error.hpp>
#include <lnformer/core/tensor.hpp>
#include <lnformer/ops/embedding.hpp>

#include <cstdint>

namespace lnformer::ops {

namespace detail {
/// loss = target * nll + uniform * smooth, with uniform = eps_i = eps / (V - 1), target = 1 - eps - eps_i.
struct LabelSmoothing {
  double target = 1;
  double uniform = 0;
};
inline LabelSmoothing label_smoothing(float eps, std::int64_t V) {
  double const eps_i = eps > 0 ? static_cast<double>(eps) / static_cast<double>(V - 1) : 0.0;
  return {1.0 - eps - eps_i, eps_i};
}
}  // namespace detail

namespace check {

template <class B>
void targets_in_range(char const* op, IView<B> targets, std::int64_t V, std::int32_t padding_idx) {
  static_assert(BackendTraits<B>::host_accessible, "targets_in_range reads targets on the host");
  std::int32_t const* t = targets.data();
  for (std::int64_t n = 0; n < targets.numel(); ++n) {
    LNF_EXPECTS_AS(ValueError, t[n] == padding_idx || (t[n] >= 0 && t[n] < V),
                   "{}: target {} in row {} is out of range [0, V = {}) and is not padding_idx {}", op, t[n],
                   n, V, padding_idx);
  }
}

/// logits [N, V], targets [N], eps valid for V; returns nothing, throws ShapeError / ValueError.
template <class B>
void cross_entropy_common(char const* op, CView<B> logits, IView<B> targets, float eps) {
  LNF_EXPECTS(logits.rank() == 2 && logits.size(1) >= 1,
              "{}: logits has shape {}; it must be [N, V] with V >= 1", op, logits.shape());
  LNF_EXPECTS(targets.rank() == 1 && targets.size(0) == logits.size(0),
              "{}: targets has shape {} but logits has shape {}; targets must be [{}]", op, targets.shape(),
              logits.shape(), logits.size(0));
  LNF_EXPECTS(logits.is_contiguous() && targets.is_contiguous(),
              "{}: logits (shape {}) and targets (shape {}) must be contiguous", op, logits.shape(),
              targets.shape());
  LNF_EXPECTS_AS(ValueError, eps >= 0.f && eps < 1.f, "{}: label smoothing eps = {} must be in [0, 1)", op,
                 eps);
  LNF_EXPECTS_AS(
      ValueError, eps == 0.f || logits.size(1) >= 2,
      "{}: label smoothing eps = {} > 0 needs V >= 2 classes (eps_i = eps / (V - 1)), but logits has "
      "shape {}",
      op, eps, logits.shape());
}

/// A per-row vector named `name` must be [N] and contiguous.
template <class B, class T>
void cross_entropy_row_vector(char const* op, char const* name, TensorView<B, T> v, CView<B> logits) {
  LNF_EXPECTS(v.rank() == 1 && v.size(0) == logits.size(0) && v.is_contiguous(),
              "{}: {} has shape {} but logits has shape {}; {} must be a contiguous [{}]", op, name,
              v.shape(), logits.shape(), name, logits.size(0));
}

template <class B>
void cross_entropy_forward(View<B> loss, View<B> nll, View<B> lse, CView<B> logits, IView<B> targets,
                           float eps, std::int32_t padding_idx) {
  char const* op = "cross_entropy_forward";
  cross_entropy_common<B>(op, logits, targets, eps);
  cross_entropy_row_vector<B>(op, "loss", loss, logits);
  if (!nll.empty()) cross_entropy_row_vector<B>(op, "nll", nll, logits);
  cross_entropy_row_vector<B>(op, "lse", lse, logits);
  if constexpr (BackendTraits<B>::host_accessible)
    targets_in_range<B>(op, targets, logits.size(1), padding_idx);
}

template <class B>
void cross_entropy_backward(View<B> dlogits, CView<B> dloss, CView<B> logits, CView<B> lse, IView<B> targets,
                            float eps, std::int32_t padding_idx) {
  char const* op = "cross_entropy_backward";
  cross_entropy_common<B>(op, logits, targets, eps);
  LNF_EXPECTS(
      dlogits.shape() == logits.shape() && dlogits.is_contiguous(),
      "{}: dlogits has shape {} but logits has shape {}; dlogits must be a contiguous [N, V] like logits", op,
      dlogits.shape(), logits.shape());
  cross_entropy_row_vector<B>(op, "dloss", dloss, logits);
  cross_entropy_row_vector<B>(op, "lse", lse, logits);
  if constexpr (BackendTraits<B>::host_accessible)
    targets_in_range<B>(op, targets, logits.size(1), padding_idx);
}

}  // namespace check
}  // namespace lnformer::ops
