#pragma once
// GPU fused optimizer updates: sgd_update, adam_update, radam_update for Gpu, one grid-stride kernel
// each, with the signatures of the contract in ops/optimizer.hpp, whose operand checks
// (check_sgd_operands, check_adam_operands) and variant dispatch (with_*_variant) every backend shares.
//
// The kernels follow the host loops operation by operation (same operands, same order), and each
// operation is one IEEE single-precision operation rounded to nearest (__fmul_rn, __fadd_rn, __fdiv_rn,
// __fsqrt_rn): nvcc may not contract them into fused multiply-adds, and the division and the square root
// are the correctly rounded ones whatever -use_fast_math / -prec-div / -prec-sqrt say. So a Gpu update equals
// the host (Cpu, Reference) update bit for bit when the host loops are compiled without FMA contraction (x86-64 without
// -mfma, or -ffp-contract=off).

#include <lnformer/backend/cuda/gpu.cuh>
#include <lnformer/ops/optimizer.hpp>

#include <cstdint>

namespace lnformer::cuda::detail::optimizer {

__device__ __forceinline__ float rn_mul(float a, float b) { return __fmul_rn(a, b); }
__device__ __forceinline__ float rn_add(float a, float b) { return __fadd_rn(a, b); }
__device__ __forceinline__ float rn_sub(float a, float b) { return __fsub_rn(a, b); }
__device__ __forceinline__ float rn_div(float a, float b) { return __fdiv_rn(a, b); }
__device__ __forceinline__ float rn_sqrt(float a) { return __fsqrt_rn(a); }

/// cpu::detail::sgd_update_loop (backend/cpu/optimizer.hpp) on the device.
template <bool Decay, bool Momentum, bool Nesterov>
__global__ void sgd_kernel(float* p, float* buf, float const* g, std::int64_t n, ops::SgdCoefficients const c) {
  std::int64_t const stride = static_cast<std::int64_t>(gridDim.x) * blockDim.x;
  for (std::int64_t i = static_cast<std::int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += stride) {
    float const pi = p[i];
    float d = g[i];
    if constexpr (Decay) d = rn_add(d, rn_mul(c.weight_decay, pi));
    if constexpr (Momentum) {
      float const b = c.first ? d : rn_add(rn_mul(buf[i], c.momentum), rn_mul(c.one_minus_dampening, d));
      buf[i] = b;
      if constexpr (Nesterov)
        d = rn_add(d, rn_mul(c.momentum, b));
      else
        d = b;
    }
    p[i] = rn_add(pi, rn_mul(c.neg_lr, d));
  }
}

/// cpu::detail::adam_update_loop on the device.
template <bool Coupled, bool Decoupled>
__global__ void adam_kernel(float* p, float* m, float* v, float const* g, std::int64_t n,
                            ops::AdamCoefficients const c) {
  std::int64_t const stride = static_cast<std::int64_t>(gridDim.x) * blockDim.x;
  for (std::int64_t i = static_cast<std::int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += stride) {
    float pi = p[i];
    float gi = g[i];
    if constexpr (Decoupled) pi = rn_mul(pi, c.param_scale);
    if constexpr (Coupled) gi = rn_add(gi, rn_mul(c.weight_decay, pi));
    float const mi = rn_add(rn_mul(m[i], c.beta1), rn_mul(c.one_minus_beta1, gi));
    float const vi = rn_add(rn_mul(v[i], c.beta2), rn_mul(rn_mul(c.one_minus_beta2, gi), gi));
    float const denom = rn_add(rn_div(rn_sqrt(vi), c.bias_correction2_sqrt), c.eps);
    m[i] = mi;
    v[i] = vi;
    p[i] = rn_add(pi, rn_div(rn_mul(c.neg_step_size, mi), denom));
  }
}

/// cpu::detail::radam_update_loop on the device.
template <bool Coupled, bool Rectify>
__global__ void radam_kernel(float* p, float* m, float* v, float const* g, std::int64_t n,
                             ops::RAdamCoefficients const c) {
  std::int64_t const stride = static_cast<std::int64_t>(gridDim.x) * blockDim.x;
  for (std::int64_t i = static_cast<std::int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += stride) {
    float const pi = p[i];
    float gi = g[i];
    if constexpr (Coupled) gi = rn_add(gi, rn_mul(c.weight_decay, pi));
    float const mi = rn_add(rn_mul(m[i], c.beta1), rn_mul(c.one_minus_beta1, gi));
    float const vi = rn_add(rn_mul(v[i], c.beta2), rn_mul(rn_mul(c.one_minus_beta2, gi), gi));
    m[i] = mi;
    v[i] = vi;
    float const step = rn_mul(rn_div(mi, c.bias_correction1), c.lr);
    if constexpr (Rectify) {
      // host: 1.f / (sqrt(v) + eps) * bias_correction2_sqrt, then pi - step * adaptive * rect
      float const adaptive = rn_mul(rn_div(1.f, rn_add(rn_sqrt(vi), c.eps)), c.bias_correction2_sqrt);
      p[i] = rn_sub(pi, rn_mul(rn_mul(step, adaptive), c.rect));
    } else {
      p[i] = rn_sub(pi, step);
    }
  }
}

template <bool Decay, bool Momentum, bool Nesterov>
void launch_sgd(float* p, float* buf, float const* g, std::int64_t n, ops::SgdCoefficients const& c) {
  sgd_kernel<Decay, Momentum, Nesterov><<<blocks_for(n), kThreads, 0, context().stream()>>>(p, buf, g, n, c);
  LNF_CUDA_LAUNCH_CHECK(sgd_kernel);
}

template <bool Coupled, bool Decoupled>
void launch_adam(float* p, float* m, float* v, float const* g, std::int64_t n, ops::AdamCoefficients const& c) {
  adam_kernel<Coupled, Decoupled><<<blocks_for(n), kThreads, 0, context().stream()>>>(p, m, v, g, n, c);
  LNF_CUDA_LAUNCH_CHECK(adam_kernel);
}

template <bool Coupled, bool Rectify>
void launch_radam(float* p, float* m, float* v, float const* g, std::int64_t n, ops::RAdamCoefficients const& c) {
  radam_kernel<Coupled, Rectify><<<blocks_for(n), kThreads, 0, context().stream()>>>(p, m, v, g, n, c);
  LNF_CUDA_LAUNCH_CHECK(radam_kernel);
}

}  // namespace lnformer::cuda::detail::optimizer

namespace lnformer::ops {

inline void sgd_update(Gpu, View<Gpu> param, View<Gpu> momentum_buffer, CView<Gpu> grad, SgdCoefficients const& c) {
  std::int64_t const n = detail::optimizer::check_sgd_operands(param, momentum_buffer, grad, c);
  if (n == 0) return;
  detail::optimizer::with_sgd_variant(c, [&]<bool Decay, bool Momentum, bool Nesterov>() {
    cuda::detail::optimizer::launch_sgd<Decay, Momentum, Nesterov>(param.data(), momentum_buffer.data(), grad.data(),
                                                                   n, c);
  });
}

inline void adam_update(Gpu, View<Gpu> param, View<Gpu> exp_avg, View<Gpu> exp_avg_sq, CView<Gpu> grad,
                        AdamCoefficients const& c) {
  std::int64_t const n = detail::optimizer::check_adam_operands("adam_update", param, exp_avg, exp_avg_sq, grad);
  if (n == 0) return;
  detail::optimizer::with_adam_variant(c, [&]<bool Coupled, bool Decoupled>() {
    cuda::detail::optimizer::launch_adam<Coupled, Decoupled>(param.data(), exp_avg.data(), exp_avg_sq.data(),
                                                             grad.data(), n, c);
  });
}

inline void radam_update(Gpu, View<Gpu> param, View<Gpu> exp_avg, View<Gpu> exp_avg_sq, CView<Gpu> grad,
                         RAdamCoefficients const& c) {
  std::int64_t const n = detail::optimizer::check_adam_operands("radam_update", param, exp_avg, exp_avg_sq, grad);
  if (n == 0) return;
  detail::optimizer::with_radam_variant(c, [&]<bool Coupled, bool Rectify>() {
    cuda::detail::optimizer::launch_radam<Coupled, Rectify>(param.data(), exp_avg.data(), exp_avg_sq.data(),
                                                            grad.data(), n, c);
  });
}

}  // namespace lnformer::ops
