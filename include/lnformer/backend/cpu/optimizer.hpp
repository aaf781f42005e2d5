#pragma once
// CPU optimizer updates: one OpenMP-parallel, vectorisable loop per variant (tensors below
// kOptimParallelMin elements stay on one thread). Contract in ops/optimizer.hpp.
//
// Needs only the Cpu tag, not oneDNN, so that translation units built by nvcc (which step optimizers
// over host-staged state too) can include it; backend/backends.hpp includes it in both.

#include <lnformer/backend/cpu/tag.hpp>
#include <lnformer/ops/optimizer.hpp>

#include <cmath>
#include <cstdint>

namespace lnformer::cpu::detail {

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

}  // namespace lnformer::cpu::detail

namespace lnformer::ops {

inline void sgd_update(Cpu, View<Cpu> param, View<Cpu> momentum_buffer, CView<Cpu> grad, SgdCoefficients const& c) {
  std::int64_t const n = detail::optimizer::check_sgd_operands(param, momentum_buffer, grad, c);
  detail::optimizer::with_sgd_variant(c, [&]<bool Decay, bool Momentum, bool Nesterov>() {
    cpu::detail::sgd_update_loop<Decay, Momentum, Nesterov>(param.data(), momentum_buffer.data(), grad.data(), n, c);
  });
}

inline void adam_update(Cpu, View<Cpu> param, View<Cpu> exp_avg, View<Cpu> exp_avg_sq, CView<Cpu> grad,
                        AdamCoefficients const& c) {
  std::int64_t const n = detail::optimizer::check_adam_operands("adam_update", param, exp_avg, exp_avg_sq, grad);
  detail::optimizer::with_adam_variant(c, [&]<bool Coupled, bool Decoupled>() {
    cpu::detail::adam_update_loop<Coupled, Decoupled>(param.data(), exp_avg.data(), exp_avg_sq.data(), grad.data(),
                                                      n, c);
  });
}

inline void radam_update(Cpu, View<Cpu> param, View<Cpu> exp_avg, View<Cpu> exp_avg_sq, CView<Cpu> grad,
                         RAdamCoefficients const& c) {
  std::int64_t const n = detail::optimizer::check_adam_operands("radam_update", param, exp_avg, exp_avg_sq, grad);
  detail::optimizer::with_radam_variant(c, [&]<bool Coupled, bool Rectify>() {
    cpu::detail::radam_update_loop<Coupled, Rectify>(param.data(), exp_avg.data(), exp_avg_sq.data(), grad.data(), n,
                                                     c);
  });
}

}  // namespace lnformer::ops
