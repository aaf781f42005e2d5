#pragma once
// Reference layer norm: plain loops in double, the test oracle. Contract in ops/layer_norm.hpp.

#include <lnformer/backend/reference/reference.hpp>
#include <lnformer/ops/layer_norm.hpp>

#include <cmath>
#include <cstdint>
#include <vector>

namespace lnformer::ops {

inline void layer_norm_forward(Reference, View<Reference> y, View<Reference> mean, View<Reference> rstd,
                               CView<Reference> x, CView<Reference> gamma, CView<Reference> beta, float eps) {
  auto const [rows, d] = check::layer_norm_forward<Reference>(y, mean, rstd, x, gamma, beta, eps);
  for (std::int64_t r = 0; r < rows; ++r) {
    float const* xr = x.data() + r * d;
    float* yr = y.data() + r * d;
    double m = 0;
    for (std::int64_t j = 0; j < d; ++j) m += xr[j];
    m /= static_cast<double>(d);
    double v = 0;
    for (std::int64_t j = 0; j < d; ++j) v += (xr[j] - m) * (xr[j] - m);
    v /= static_cast<double>(d);
    double const s = 1.0 / std::sqrt(v + static_cast<double>(eps));
    for (std::int64_t j = 0; j < d; ++j)
      yr[j] = static_cast<float>((xr[j] - m) * s * gamma.data()[j] + beta.data()[j]);
    if (!mean.empty()) mean.data()[r] = static_cast<float>(m);
    if (!rstd.empty()) rstd.data()[r] = static_cast<float>(s);
  }
}

inline void layer_norm_backward(Reference, View<Reference> dx, View<Reference> dgamma, View<Reference> dbeta,
                                CView<Reference> dy, CView<Reference> x, CView<Reference> mean,
                                CView<Reference> rstd, CView<Reference> gamma, CView<Reference> residual = {}) {
  auto const [rows, d] = check::layer_norm_backward<Reference>(dx, dgamma, dbeta, dy, x, mean, rstd, gamma, residual);
  std::vector<double> dg(static_cast<std::size_t>(d), 0.0), db(static_cast<std::size_t>(d), 0.0);
  std::vector<double> xhat(static_cast<std::size_t>(d)), g(static_cast<std::size_t>(d));
  for (std::int64_t r = 0; r < rows; ++r) {
    float const* xr = x.data() + r * d;
    float const* dyr = dy.data() + r * d;
    double const m = mean.data()[r], s = rstd.data()[r];
    double mean_g = 0, mean_gx = 0;
    for (std::int64_t j = 0; j < d; ++j) {
      auto const k = static_cast<std::size_t>(j);
      xhat[k] = (xr[j] - m) * s;
      g[k] = static_cast<double>(gamma.data()[j]) * dyr[j];
      mean_g += g[k];
      mean_gx += g[k] * xhat[k];
      dg[k] += dyr[j] * xhat[k];
      db[k] += dyr[j];
    }
    mean_g /= static_cast<double>(d);
    mean_gx /= static_cast<double>(d);
    if (!dx.empty()) {
      float* dxr = dx.data() + r * d;  // may be dyr or xr: each element is read (above) before written
      float const* rr = residual.empty() ? nullptr : residual.data() + r * d;  // may be dxr
      for (std::int64_t j = 0; j < d; ++j) {
        auto const k = static_cast<std::size_t>(j);
        auto const v = static_cast<float>(s * (g[k] - mean_g - xhat[k] * mean_gx));
        dxr[j] = rr != nullptr ? rr[j] + v : v;
      }
    }
  }
  for (std::int64_t j = 0; j < d; ++j) {
    auto const k = static_cast<std::size_t>(j);
    if (!dgamma.empty()) dgamma.data()[j] += static_cast<float>(dg[k]);
    if (!dbeta.empty()) dbeta.data()[j] += static_cast<float>(db[k]);
  }
}

}  // namespace lnformer::ops
