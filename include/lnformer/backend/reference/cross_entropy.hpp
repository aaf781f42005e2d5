#pragma once
// Reference label-smoothed cross-entropy: plain loops in double. Contract in ops/cross_entropy.hpp.

#include <lnformer/backend/reference/reference.hpp>
#include <lnformer/ops/cross_entropy.hpp>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>

namespace lnformer::ops {

inline void cross_entropy_forward(Reference, View<Reference> loss, View<Reference> nll, View<Reference> lse,
                                  CView<Reference> logits, IView<Reference> targets, float eps,
                                  std::int32_t padding_idx) {
  check::cross_entropy_forward<Reference>(loss, nll, lse, logits, targets, eps, padding_idx);
  std::int64_t const N = logits.size(0), V = logits.size(1);
  auto const w = detail::label_smoothing(eps, V);
  for (std::int64_t n = 0; n < N; ++n) {
    float const* x = logits.data() + n * V;
    double m = -std::numeric_limits<double>::infinity();
    for (std::int64_t v = 0; v < V; ++v) m = std::max(m, static_cast<double>(x[v]));
    double s = 0;
    for (std::int64_t v = 0; v < V; ++v) s += std::exp(x[v] - m);
    double const l = m + std::log(s);
    lse.data()[n] = static_cast<float>(l);
    std::int32_t const t = targets.data()[n];
    double row_nll = 0, row_loss = 0;
    if (t != padding_idx) {
      row_nll = l - x[t];
      double smooth = 0;
      for (std::int64_t v = 0; v < V; ++v) smooth += l - x[v];
      row_loss = w.target * row_nll + w.uniform * smooth;
    }
    loss.data()[n] = static_cast<float>(row_loss);
    if (!nll.empty()) nll.data()[n] = static_cast<float>(row_nll);
  }
}

inline void cross_entropy_backward(Reference, View<Reference> dlogits, CView<Reference> dloss,
                                   CView<Reference> logits, CView<Reference> lse, IView<Reference> targets,
                                   float eps, std::int32_t padding_idx) {
  check::cross_entropy_backward<Reference>(dlogits, dloss, logits, lse, targets, eps, padding_idx);
  std::int64_t const N = logits.size(0), V = logits.size(1);
  auto const w = detail::label_smoothing(eps, V);
  for (std::int64_t n = 0; n < N; ++n) {
    float const* x = logits.data() + n * V;
    float* dx = dlogits.data() + n * V;  // may alias x: each element is read before it is written
    std::int32_t const t = targets.data()[n];
    double const g = dloss.data()[n], l = lse.data()[n];
    for (std::int64_t v = 0; v < V; ++v) {
      double const p = std::exp(x[v] - l);
      dx[v] = t == padding_idx ? 0.f : static_cast<float>(g * (p - (v == t ? w.target : 0.0) - w.uniform));
    }
  }
}

}  // namespace lnformer::ops
