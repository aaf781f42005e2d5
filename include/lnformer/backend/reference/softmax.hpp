#pragma once
// Reference softmax: plain loops in double, the test oracle. Contract in ops/softmax.hpp.
// The mask is broadcast here from first principles (a multi-index per element, numpy alignment),
// independently of SoftmaxLayout, so the tests check the CPU path's broadcasting too.

#include <lnformer/backend/reference/reference.hpp>
#include <lnformer/ops/softmax.hpp>

#include <cmath>
#include <cstdint>
#include <limits>
#include <vector>

namespace lnformer::ops {

inline void softmax_forward(Reference, View<Reference> y, CView<Reference> x, CView<Reference> mask,
                            float scale) {
  auto const l = check::softmax_forward<Reference>(y, x, mask, scale);
  int const rank = x.rank();
  std::vector<std::int64_t> idx(static_cast<std::size_t>(rank), 0);  // multi-index of x
  std::vector<double> v(static_cast<std::size_t>(l.cols));
  auto const mask_at = [&] {
    int const off = rank - mask.rank();
    std::int64_t o = 0;
    for (int i = 0; i < mask.rank(); ++i)
      o += (mask.size(i) == 1 ? 0 : idx[static_cast<std::size_t>(off + i)]) * mask.strides()[i];
    return static_cast<double>(mask.data()[o]);
  };
  double const ninf = -std::numeric_limits<double>::infinity();
  for (std::int64_t r = 0; r < l.rows; ++r) {
    // idx[0 .. rank-2] is row r's multi-index.
    std::int64_t rem = r;
    for (int i = rank - 2; i >= 0; --i) {
      idx[static_cast<std::size_t>(i)] = rem % x.size(i);
      rem /= x.size(i);
    }
    double mx = ninf;
    for (std::int64_t j = 0; j < l.cols; ++j) {
      idx[static_cast<std::size_t>(rank - 1)] = j;
      double vj = static_cast<double>(scale) * x.data()[r * l.cols + j];
      if (l.masked) vj += mask_at();
      v[static_cast<std::size_t>(j)] = vj;
      if (vj > mx) mx = vj;
    }
    float* yr = y.data() + r * l.cols;
    if (mx == ninf) {  // fully masked row: zeros by contract
      for (std::int64_t j = 0; j < l.cols; ++j) yr[j] = 0.f;
      continue;
    }
    double s = 0;
    for (std::int64_t j = 0; j < l.cols; ++j) s += std::exp(v[static_cast<std::size_t>(j)] - mx);
    for (std::int64_t j = 0; j < l.cols; ++j)
      yr[j] = static_cast<float>(std::exp(v[static_cast<std::size_t>(j)] - mx) / s);
  }
}

inline void softmax_backward(Reference, View<Reference> dx, CView<Reference> dy, CView<Reference> y,
                             float scale) {
  auto const l = check::softmax_backward<Reference>(dx, dy, y, scale);
  for (std::int64_t r = 0; r < l.rows; ++r) {
    float const* yr = y.data() + r * l.cols;
    float const* dyr = dy.data() + r * l.cols;
    float* dxr = dx.data() + r * l.cols;  // may be dyr or yr: read fully (the sum) before, then element-wise
    double s = 0;
    for (std::int64_t j = 0; j < l.cols; ++j) s += static_cast<double>(dyr[j]) * yr[j];
    for (std::int64_t j = 0; j < l.cols; ++j)
      dxr[j] = static_cast<float>(static_cast<double>(scale) * yr[j] * (dyr[j] - s));
  }
}

}  // namespace lnformer::ops
