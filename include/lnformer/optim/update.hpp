#pragma once
// The fused optimizer updates: one pass over each parameter tensor that reads the gradient, updates
// the optimizer's buffers and the parameter in place. Free functions in lnformer::ops overloaded on
// the backend tag (found by argument-dependent lookup): the host implementation below serves Cpu and
// Reference; a device backend adds its own overloads with the same signatures.
//
//   sgd_update(B, View param, View momentum_buffer, CView grad, SgdCoefficients)
//   adam_update(B, View param, View exp_avg, View exp_avg_sq, CView grad, AdamCoefficients)
//   radam_update(B, View param, View exp_avg, View exp_avg_sq, CView grad, RAdamCoefficients)
//
// All views contiguous and of one element count; param and the buffers are read and written (in
// place), grad only read. The coefficients are the per-step scalars, computed in double by the
// optimizer (bias corrections, step sizes) and rounded to float once, as torch.optim does.
// The element-wise arithmetic follows torch 1.13's single-tensor code operation by operation
// (same operands, same order), so results agree with torch.optim to float rounding (the only
// differences: whether a multiply-add is fused, and division vs multiplication by a reciprocal).

#include <lnformer/core/error.hpp>
#include <lnformer/core/tensor.hpp>

#include <cmath>
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

}  // namespace lnformer::ops

namespace lnformer::detail {

// The Adam/RAdam loops take a square root. With errno semantics (the C default) sqrt of a negative
// number may set errno, a side effect that keeps a scalar library call in the loop, so neither GCC
// nor clang vectorises them, and there is no per-function way to lift it (GCC's optimize attribute
// does not reach the OpenMP-outlined body). Built with -fno-math-errno (__NO_MATH_ERRNO__) they are
// `simd` loops; otherwise they stay parallel but scalar (requesting simd would make clang warn that
// it could not). sqrtps rounds exactly as sqrtss, so the results are the same bits either way.
#if defined(__NO_MATH_ERRNO__)
#define LNF_OPTIM_SQRT_LOOP _Pragma("omp parallel for simd schedule(static) if (n >= kOptimParallelMin)")
#else
#define LNF_OPTIM_SQRT_LOOP _Pragma("omp parallel for schedule(static) if (n >= kOptimParallelMin)")
#endif

/// Below this many elements a tensor is updated by one thread (a parallel region costs more).
inline constexpr std::int64_t kOptimParallelMin = std::int64_t{1} << 15;

template <class B, class T>
void check_optim_operand(std::string_view op, std::string_view arg, TensorView<B, T> v, std::int64_t n) {
  LNF_EXPECTS(v.numel() == n && v.is_contiguous(),
              "{}: {} has shape {} ({} elements{}) but the parameter has {} elements; all operands must be "
              "contiguous and of one size",
              op, arg, v.shape(), v.numel(), v.is_contiguous() ? "" : ", not contiguous", n);
}

/// sgd_update's operand checks, for every backend (momentum_buffer is needed only with momentum);
/// returns the element count.
template <class B>
std::int64_t check_sgd_operands(View<B> param, View<B> momentum_buffer, CView<B> grad,
                                ops::SgdCoefficients const& c) {
  std::int64_t const n = param.numel();
  check_optim_operand("sgd_update", "param", param, n);
  check_optim_operand("sgd_update", "grad", grad, n);
  if (c.momentum != 0.f) check_optim_operand("sgd_update", "momentum_buffer", momentum_buffer, n);
  return n;
}

/// adam_update's and radam_update's (`op`) operand checks, for every backend; returns the element count.
template <class B>
std::int64_t check_adam_operands(std::string_view op, View<B> param, View<B> exp_avg, View<B> exp_avg_sq,
                                 CView<B> grad) {
  std::int64_t const n = param.numel();
  check_optim_operand(op, "param", param, n);
  check_optim_operand(op, "exp_avg", exp_avg, n);
  check_optim_operand(op, "exp_avg_sq", exp_avg_sq, n);
  check_optim_operand(op, "grad", grad, n);
  return n;
}

// The variant of an update that its coefficients select, as template arguments: each with_*_variant
// calls f.template operator()<...>() once, so that a backend's loop or kernel is compiled per variant
// with the unused steps left out.

/// sgd: <Decay, Momentum, Nesterov>; Nesterov only with momentum.
template <class F>
void with_sgd_variant(ops::SgdCoefficients const& c, F&& f) {
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
void with_adam_variant(ops::AdamCoefficients const& c, F&& f) {
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
void with_radam_variant(ops::RAdamCoefficients const& c, F&& f) {
  bool const coupled = c.weight_decay != 0.f;
  if (c.rectify)
    coupled ? f.template operator()<true, true>() : f.template operator()<false, true>();
  else
    coupled ? f.template operator()<true, false>() : f.template operator()<false, false>();
}

template <bool Decay, bool Momentum, bool Nesterov>
void sgd_update_loop(float* p, float* buf, float const* g, std::int64_t n, ops::SgdCoefficients const c) {
#pragma omp parallel for simd schedule(static) if (n >= kOptimParallelMin)
  for (std::int64_t i = 0; i < n; ++i) {
    float const pi = p[i];
    float d = g[i];
    if constexpr (Decay) d = d + c.weight_decay * pi;
    if constexpr (Momentum) {
      float const b = c.first ? d : buf[i] * c.momentum + c.one_minus_dampening * d;
      buf[i] = b;
      if constexpr (Nesterov)
        d = d + c.momentum * b;
      else
        d = b;
    }
    p[i] = pi + c.neg_lr * d;
  }
}

template <bool Coupled, bool Decoupled>
void adam_update_loop(float* p, float* m, float* v, float const* g, std::int64_t n, ops::AdamCoefficients const c) {
  LNF_OPTIM_SQRT_LOOP
  for (std::int64_t i = 0; i < n; ++i) {
    float pi = p[i];
    float gi = g[i];
    if constexpr (Decoupled) pi = pi * c.param_scale;
    if constexpr (Coupled) gi = gi + c.weight_decay * pi;
    float const mi = m[i] * c.beta1 + c.one_minus_beta1 * gi;
    float const vi = v[i] * c.beta2 + c.one_minus_beta2 * gi * gi;
    float const denom = std::sqrt(vi) / c.bias_correction2_sqrt + c.eps;
    m[i] = mi;
    v[i] = vi;
    p[i] = pi + c.neg_step_size * mi / denom;
  }
}

template <bool Coupled, bool Rectify>
void radam_update_loop(float* p, float* m, float* v, float const* g, std::int64_t n, ops::RAdamCoefficients const c) {
  LNF_OPTIM_SQRT_LOOP
  for (std::int64_t i = 0; i < n; ++i) {
    float const pi = p[i];
    float gi = g[i];
    if constexpr (Coupled) gi = gi + c.weight_decay * pi;
    float const mi = m[i] * c.beta1 + c.one_minus_beta1 * gi;
    float const vi = v[i] * c.beta2 + c.one_minus_beta2 * gi * gi;
    m[i] = mi;
    v[i] = vi;
    float const step = mi / c.bias_correction1 * c.lr;
    if constexpr (Rectify) {
      // torch: sqrt(bc2) / (sqrt(v) + eps) is a Python scalar divided by a tensor, i.e. reciprocal() * scalar
      float const adaptive = 1.f / (std::sqrt(vi) + c.eps) * c.bias_correction2_sqrt;
      p[i] = pi - step * adaptive * c.rect;
    } else {
      p[i] = pi - step;
    }
  }
}

}  // namespace lnformer::detail

namespace lnformer::ops {

template <class B>
  requires(BackendTraits<B>::host_accessible)
void sgd_update(B, View<B> param, View<B> momentum_buffer, CView<B> grad, SgdCoefficients const& c) {
  std::int64_t const n = ::lnformer::detail::check_sgd_operands(param, momentum_buffer, grad, c);
  ::lnformer::detail::with_sgd_variant(c, [&]<bool Decay, bool Momentum, bool Nesterov>() {
    ::lnformer::detail::sgd_update_loop<Decay, Momentum, Nesterov>(param.data(), momentum_buffer.data(), grad.data(),
                                                                   n, c);
  });
}

template <class B>
  requires(BackendTraits<B>::host_accessible)
void adam_update(B, View<B> param, View<B> exp_avg, View<B> exp_avg_sq, CView<B> grad, AdamCoefficients const& c) {
  std::int64_t const n = ::lnformer::detail::check_adam_operands("adam_update", param, exp_avg, exp_avg_sq, grad);
  ::lnformer::detail::with_adam_variant(c, [&]<bool Coupled, bool Decoupled>() {
    ::lnformer::detail::adam_update_loop<Coupled, Decoupled>(param.data(), exp_avg.data(), exp_avg_sq.data(),
                                                             grad.data(), n, c);
  });
}

template <class B>
  requires(BackendTraits<B>::host_accessible)
void radam_update(B, View<B> param, View<B> exp_avg, View<B> exp_avg_sq, CView<B> grad, RAdamCoefficients const& c) {
  std::int64_t const n = ::lnformer::detail::check_adam_operands("radam_update", param, exp_avg, exp_avg_sq, grad);
  ::lnformer::detail::with_radam_variant(c, [&]<bool Coupled, bool Rectify>() {
    ::lnformer::detail::radam_update_loop<Coupled, Rectify>(param.data(), exp_avg.data(), exp_avg_sq.data(),
                                                            grad.data(), n, c);
  });
}

}  // namespace lnformer::ops
