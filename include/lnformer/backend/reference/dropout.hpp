#pragma once
// Reference dropout: one key.uniform(i) per element, the definition itself. Contract in ops/dropout.hpp.

#include <lnformer/backend/reference/reference.hpp>
#include <lnformer/core/rng.hpp>
#include <lnformer/ops/dropout.hpp>

#include <cstdint>

namespace lnformer::reference::detail {
// out[i] = in[i] / (1 - p) where kept, 0 where dropped (uniform(i) < p), plus res[i] where res is
// given; out may alias in or res.
inline void dropout_apply(float* out, float const* in, std::int64_t n, float p, RngKey key,
                          float const* res = nullptr) {
  double const keep = 1.0 - static_cast<double>(p);
  for (std::int64_t i = 0; i < n; ++i) {
    bool const dropped = key.uniform(static_cast<std::uint64_t>(i)) < p;
    float const v = dropped ? 0.f : static_cast<float>(static_cast<double>(in[i]) / keep);
    out[i] = res != nullptr ? res[i] + v : v;
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

inline void dropout_add(Reference, View<Reference> y, CView<Reference> x, CView<Reference> h, float p, RngKey key) {
  check::dropout_add<Reference>(y, x, h, p);
  reference::detail::dropout_apply(y.data(), h.data(), h.numel(), p, key, x.data());
}

}  // namespace lnformer::ops
