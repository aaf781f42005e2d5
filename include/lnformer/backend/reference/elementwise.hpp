#pragma once
// Reference element-wise ops: plain loops, arithmetic and sums in double. Contract in ops/elementwise.hpp.

#include <lnformer/backend/reference/reference.hpp>
#include <lnformer/ops/elementwise.hpp>

#include <cmath>
#include <cstdint>
#include <span>
#include <vector>

namespace lnformer::ops {

inline void add(Reference, View<Reference> y, CView<Reference> a, CView<Reference> b) {
  check::add<Reference>(y, a, b);
  for (std::int64_t i = 0; i < y.numel(); ++i)
    y.data()[i] = static_cast<float>(static_cast<double>(a.data()[i]) + b.data()[i]);
}

inline void scale_add(Reference, View<Reference> y, CView<Reference> x, CView<Reference> w, float alpha,
                      CView<Reference> f) {
  check::scale_add<Reference>(y, x, w, f);
  std::int64_t const n = x.numel();
  std::int64_t const d = w.empty() ? 1 : w.numel();  // w: absent, [1] or [d]; x viewed as [n / d, d]
  for (std::int64_t i = 0; i < n; ++i) {
    double const g = w.empty() ? 1.0 : static_cast<double>(w.data()[i % d]);
    y.data()[i] = static_cast<float>(static_cast<double>(alpha) * x.data()[i] * g + f.data()[i]);
  }
}

inline void scale_add_backward(Reference, View<Reference> dx, View<Reference> dw, CView<Reference> dy,
                               CView<Reference> x, CView<Reference> w, float alpha) {
  check::scale_add_backward<Reference>(dx, dw, dy, x, w);
  std::int64_t const n = dy.numel();
  std::int64_t const d = w.empty() ? 1 : w.numel();
  // dw first: dx may alias dy, which dw reads.
  if (!dw.empty()) {
    std::vector<double> s(static_cast<std::size_t>(d), 0.0);
    for (std::int64_t i = 0; i < n; ++i)
      s[static_cast<std::size_t>(i % d)] += static_cast<double>(dy.data()[i]) * x.data()[i];
    for (std::int64_t c = 0; c < d; ++c)
      dw.data()[c] =
          static_cast<float>(dw.data()[c] + static_cast<double>(alpha) * s[static_cast<std::size_t>(c)]);
  }
  if (!dx.empty()) {
    for (std::int64_t i = 0; i < n; ++i) {
      double const g = w.empty() ? 1.0 : static_cast<double>(w.data()[i % d]);
      dx.data()[i] = static_cast<float>(static_cast<double>(alpha) * dy.data()[i] * g);
    }
  }
}

inline void scale(Reference, View<Reference> y, float s) {
  check::scale<Reference>(y);
  for (std::int64_t i = 0; i < y.numel(); ++i)
    y.data()[i] = static_cast<float>(static_cast<double>(y.data()[i]) * s);
}

inline void axpy(Reference, View<Reference> y, float a, CView<Reference> x) {
  check::axpy<Reference>(y, x);
  for (std::int64_t i = 0; i < y.numel(); ++i)
    y.data()[i] = static_cast<float>(y.data()[i] + static_cast<double>(a) * x.data()[i]);
}

inline void fill(Reference, View<Reference> y, float v) {
  check::fill<Reference>(y);
  for (std::int64_t i = 0; i < y.numel(); ++i) y.data()[i] = v;
}

inline void copy(Reference, View<Reference> y, CView<Reference> x) {
  check::copy<Reference>(y, x);
  // Walk x in row-major order with an index odometer; y is contiguous.
  std::vector<std::int64_t> idx(static_cast<std::size_t>(x.rank()), 0);
  for (std::int64_t n = 0; n < x.numel(); ++n) {
    std::int64_t off = 0;
    for (int i = 0; i < x.rank(); ++i) off += idx[static_cast<std::size_t>(i)] * x.strides()[i];
    y.data()[n] = x.data()[off];
    for (int i = x.rank() - 1; i >= 0; --i) {
      if (++idx[static_cast<std::size_t>(i)] < x.size(i)) break;
      idx[static_cast<std::size_t>(i)] = 0;
    }
  }
}

inline double sum_squares(Reference, CView<Reference> x) {
  check::sum_squares<Reference>(x);
  if (x.empty()) return 0.0;  // an absent tensor (default view) contributes nothing
  double s = 0;
  for (std::int64_t i = 0; i < x.numel(); ++i) s += static_cast<double>(x.data()[i]) * x.data()[i];
  return s;
}

inline double global_l2_norm(Reference, std::span<CView<Reference> const> xs) {
  double s = 0;
  for (auto const& x : xs) s += sum_squares(Reference{}, x);
  return std::sqrt(s);
}

}  // namespace lnformer::ops
