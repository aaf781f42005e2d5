#pragma once
// Reference optimizer updates: one plain scalar loop each, no variants, no threads. Unlike the other
// reference ops they compute in float, not double: the oracle for an update is torch.optim's float
// arithmetic itself (tests/optim compares with its numbers), and the GPU kernels are checked against
// these loops bit for bit. Contract in ops/optimizer.hpp.

#include <lnformer/backend/reference/reference.hpp>
#include <lnformer/ops/optimizer.hpp>

#include <cmath>
#include <cstdint>

namespace lnformer::ops {

inline void sgd_update(Reference, View<Reference> param, View<Reference> momentum_buffer, CView<Reference> grad,
                       SgdCoefficients const& c) {
  std::int64_t const n = detail::optimizer::check_sgd_operands(param, momentum_buffer, grad, c);
  float* p = param.data();
  float* buf = momentum_buffer.data();
  float const* g = grad.data();
  for (std::int64_t i = 0; i < n; ++i) {
    float d = g[i];
    if (c.weight_decay != 0.f) d = d + c.weight_decay * p[i];
    if (c.momentum != 0.f) {
      buf[i] = c.first ? d : buf[i] * c.momentum + c.one_minus_dampening * d;
      d = c.nesterov ? d + c.momentum * buf[i] : buf[i];
    }
    p[i] = p[i] + c.neg_lr * d;
  }
}

inline void adam_update(Reference, View<Reference> param, View<Reference> exp_avg, View<Reference> exp_avg_sq,
                        CView<Reference> grad, AdamCoefficients const& c) {
  std::int64_t const n = detail::optimizer::check_adam_operands("adam_update", param, exp_avg, exp_avg_sq, grad);
  float* p = param.data();
  float* m = exp_avg.data();
  float* v = exp_avg_sq.data();
  float const* g = grad.data();
  for (std::int64_t i = 0; i < n; ++i) {
    float pi = p[i];
    float gi = g[i];
    if (c.param_scale != 1.f) pi = pi * c.param_scale;       // AdamW: p *= 1 - lr * wd
    if (c.weight_decay != 0.f) gi = gi + c.weight_decay * pi;  // Adam: g += wd * p
    m[i] = m[i] * c.beta1 + c.one_minus_beta1 * gi;
    v[i] = v[i] * c.beta2 + c.one_minus_beta2 * gi * gi;
    float const denom = std::sqrt(v[i]) / c.bias_correction2_sqrt + c.eps;
    p[i] = pi + c.neg_step_size * m[i] / denom;
  }
}

inline void radam_update(Reference, View<Reference> param, View<Reference> exp_avg, View<Reference> exp_avg_sq,
                         CView<Reference> grad, RAdamCoefficients const& c) {
  std::int64_t const n = detail::optimizer::check_adam_operands("radam_update", param, exp_avg, exp_avg_sq, grad);
  float* p = param.data();
  float* m = exp_avg.data();
  float* v = exp_avg_sq.data();
  float const* g = grad.data();
  for (std::int64_t i = 0; i < n; ++i) {
    float gi = g[i];
    if (c.weight_decay != 0.f) gi = gi + c.weight_decay * p[i];
    m[i] = m[i] * c.beta1 + c.one_minus_beta1 * gi;
    v[i] = v[i] * c.beta2 + c.one_minus_beta2 * gi * gi;
    float const step = m[i] / c.bias_correction1 * c.lr;
    if (c.rectify) {
      // torch: sqrt(bc2) / (sqrt(v) + eps) is a Python scalar divided by a tensor, i.e. reciprocal() * scalar
      float const adaptive = 1.f / (std::sqrt(v[i]) + c.eps) * c.bias_correction2_sqrt;
      p[i] = p[i] - step * adaptive * c.rect;
    } else {
      p[i] = p[i] - step;
    }
  }
}

}  // namespace lnformer::ops
