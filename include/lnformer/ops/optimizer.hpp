#pragma once
// The fused optimizer updates: one pass over each parameter tensor that reads the gradient and updates
// the optimizer's buffers and the parameter in place. Free functions in lnformer::ops overloaded on
// the backend tag; the optimizers (optim/) call them unqualified, so argument-dependent lookup finds
// the backend's overloads at instantiation.
//
//   sgd_update(B, View param, View momentum_buffer, CView grad, SgdCoefficients)
//   adam_update(B, View param, View exp_avg, View exp_avg_sq, CView grad, AdamCoefficients)
//   radam_update(B, View param, View exp_avg, View exp_avg_sq, CView grad, RAdamCoefficients)
//
//     param, exp_avg, exp_avg_sq, momentum_buffer: any shape, n elements, contiguous; read and
//       written in place (ASSIGN: the new value replaces the old one). momentum_buffer may be empty
//       when momentum = 0 (it is neither read nor written then).
//     grad: n elements, contiguous; only read.
//     n = 0 is allowed (nothing happens).
//   The coefficients are the per-step scalars, computed in double by the optimizer (bias corrections,
//   step sizes) and rounded to float once, as torch.optim does; each struct below gives the formula.
//   The element-wise arithmetic follows torch 1.13's single-tensor code operation by operation (same
//   operands, same order), so results agree with torch.optim to float rounding (the only differences:
//   whether a multiply-add is fused, and division vs multiplication by a reciprocal).
//
// Every backend calls the shared operand checks below first (detail::optimizer::check_*_operands)
// and compiles its loop or kernel per variant (detail::optimizer::with_*_variant).
// Implementations: ops::*_update(Cpu, ...) in backend/cpu/optimizer.hpp,
// ops::*_update(Reference, ...) in backend/reference/optimizer.hpp,
// ops::*_update(Gpu, ...) in backend/cuda/optimizer.cuh.

#include <lnformer/core/error.hpp>
#include <lnformer/core/tensor.hpp>

#include <cstdint>
#include <string_view>

namespace lnformer::ops {

/// torch.optim.SGD: d = g + wd * p; buf = first ? d : momentum * buf + (1 - dampening) * d;
/// d = nesterov ? d + momentum * buf : buf; p -= lr * d. momentum = 0: no buffer, d used directly.
struct SgdCoefficients {
  float neg_lr = 0.f;               ///< -lr
  float weight_decay = 0.f;         ///< coupled: added to the gradient; 0 skips
  float momentum = 0.f;             ///< 0: plain SGD (momentum_buffer may be empty)
  float one_minus_dampening = 1.f;  ///< 1 - dampening
  bool nesterov = false;
  bool first = false;  ///< the first update: the buffer starts as d (torch's `buf is None`)
};

/// torch.optim.Adam / AdamW:
///   p *= param_scale (AdamW: 1 - lr * wd); g += weight_decay * p (Adam);
///   m = beta1 * m + (1 - beta1) * g;  v = beta2 * v + (1 - beta2) * g * g;
///   p += neg_step_size * m / (sqrt(v) / sqrt(bias_correction2) + eps),  neg_step_size = -lr / bias_correction1
struct AdamCoefficients {
  float beta1 = 0.f, one_minus_beta1 = 1.f;
  float beta2 = 0.f, one_minus_beta2 = 1.f;
  float weight_decay = 0.f;  ///< coupled (Adam); 0 skips
  float param_scale = 1.f;   ///< decoupled (AdamW); 1 skips
  float bias_correction2_sqrt = 1.f;
  float eps = 1e-8f;
  float neg_step_size = 0.f;
};

/// torch.optim.RAdam (1.13): g += weight_decay * p; m, v as Adam; then
///   rectify:  p -= ((m / bias_correction1) * lr * (sqrt(bias_correction2) / (sqrt(v) + eps))) * rect
///   else:     p -= (m / bias_correction1) * lr
struct RAdamCoefficients {
  float beta1 = 0.f, one_minus_beta1 = 1.f;
  float beta2 = 0.f, one_minus_beta2 = 1.f;
  float weight_decay = 0.f;  ///< coupled; 0 skips
  float bias_correction1 = 1.f;
  float lr = 0.f;
  bool rectify = false;  ///< rho_t > 5
  float bias_correction2_sqrt = 1.f;
  float eps = 1e-8f;
  float rect = 1.f;
};

namespace detail::optimizer {

template <class B, class T>
void check_operand(std::string_view op, std::string_view arg, TensorView<B, T> v, std::int64_t n) {
  LNF_EXPECTS(v.numel() == n && v.is_contiguous(),
              "{}: {} has shape {} ({} elements{}) but the parameter has {} elements; all operands must be "
              "contiguous and of one size",
              op, arg, v.shape(), v.numel(), v.is_contiguous() ? "" : ", not contiguous", n);
}

/// sgd_update's operand checks, for every backend (momentum_buffer is needed only with momentum);
/// returns the element count.
template <class B>
std::int64_t check_sgd_operands(View<B> param, View<B> momentum_buffer, CView<B> grad,
                                SgdCoefficients const& c) {
  std::int64_t const n = param.numel();
  check_operand("sgd_update", "param", param, n);
  check_operand("sgd_update", "grad", grad, n);
  if (c.momentum != 0.f) check_operand("sgd_update", "momentum_buffer", momentum_buffer, n);
  return n;
}

/// adam_update's and radam_update's (`op`) operand checks, for every backend; returns the element count.
template <class B>
std::int64_t check_adam_operands(std::string_view op, View<B> param, View<B> exp_avg, View<B> exp_avg_sq,
                                 CView<B> grad) {
  std::int64_t const n = param.numel();
  check_operand(op, "param", param, n);
  check_operand(op, "exp_avg", exp_avg, n);
  check_operand(op, "exp_avg_sq", exp_avg_sq, n);
  check_operand(op, "grad", grad, n);
  return n;
}

// The variant of an update that its coefficients select, as template arguments: each with_*_variant
// calls f.template operator()<...>() once, so that a backend's loop or kernel is compiled per variant
// with the unused steps left out.

/// sgd: <Decay, Momentum, Nesterov>; Nesterov only with momentum.
template <class F>
void with_sgd_variant(SgdCoefficients const& c, F&& f) {
  bool const decay = c.weight_decay != 0.f;
  if (c.momentum == 0.f)
    decay ? f.template operator()<true, false, false>() : f.template operator()<false, false, false>();
  else if (c.nesterov)
    decay ? f.template operator()<true, true, true>() : f.template operator()<false, true, true>();
  else
    decay ? f.template operator()<true, true, false>() : f.template operator()<false, true, false>();
}

/// adam: <Coupled, Decoupled> (weight_decay != 0, param_scale != 1).
template <class F>
void with_adam_variant(AdamCoefficients const& c, F&& f) {
  bool const coupled = c.weight_decay != 0.f, decoupled = c.param_scale != 1.f;
  if (coupled && decoupled)
    f.template operator()<true, true>();
  else if (coupled)
    f.template operator()<true, false>();
  else if (decoupled)
    f.template operator()<false, true>();
  else
    f.template operator()<false, false>();
}

/// radam: <Coupled, Rectify> (weight_decay != 0, rectify).
template <class F>
void with_radam_variant(RAdamCoefficients const& c, F&& f) {
  bool const coupled = c.weight_decay != 0.f;
  if (c.rectify)
    coupled ? f.template operator()<true, true>() : f.template operator()<false, true>();
  else
    coupled ? f.template operator()<true, false>() : f.template operator()<false, false>();
}

}  // namespace detail::optimizer

}  // namespace lnformer::ops
