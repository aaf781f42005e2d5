#pragma once
// Reference dropout: one key.uniform(i) per element, the definition itself. Contract in ops/dropout.hpp.

#include <lnformer/backend/reference/reference.hpp>
#include <lnformer/core/rng.hpp>
#include <lnformer/ops/dropout.hpp>

#include <cstdint>

namespace lnformer::reference::detail {
// out[i] = in[i] / (1 - p) where kept, 0 where dropped (uniform(i) < p); out may alias in.
inline void dropout_apply(float* out, float const* in, std::int64_t n, float p, RngKey key) {
  double const keep = 1.0 - static_cast<double>(p);
  for (std::int64_t i = 0; i < n; ++i) {
    bool const dropped = key.uniform(static_cast<std::uint64_t>(i)) < p;
    out[i] = dropped ? 0.f : static_cast<float>(static_cast<double>(in[i]) / keep);
  }
}
}  // namespace lnformer::reference::detail

namespace lnformer::ops {

inline void dropout_forward(Reference, View<Reference> y, CView<Reference> x, float p, RngKey key) {
  check::dropout_forward<Reference>(y, x, p);
  reference::detail::dropout_apply(y.data(), x.data(), x.numel(), p, key);
}

inline void dropout_backward(Reference, View<Reference> dx, CView<Reference> dy, float p, RngKey key) {
  check::dropout_backward<Reference>(dx, dy, p);
  reference::detail::dropout_apply(dx.data(), dy.data(), dy.numel(), p, key);
}

}  // namespace lnformer::ops
