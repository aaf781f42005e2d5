#pragma once
// GPU activations: one grid-stride kernel per direction and kind, element-wise on the flat array.
// Contract in ops/activation.hpp; the CPU (oneDNN eltwise_relu with alpha 0, eltwise_gelu_erf) and the
// Reference define the values:
//   relu(x) = x > 0 ? x : 0 (NaN propagates),      relu'(x) = x > 0 ? 1 : 0 (relu'(0) = 0)
//   gelu(x) = x Phi(x),                             gelu'(x) = Phi(x) + x phi(x)
// with Phi the standard normal CDF, 0.5 (1 + erf(x / sqrt 2)), evaluated as normcdff(x) (the same
// function written as 0.5 erfc(-x / sqrt 2), which keeps its relative accuracy for negative x where
// 1 + erf(...) cancels), and phi(x) = exp(-x^2 / 2) / sqrt(2 pi). Single precision throughout.
// Each element is read before it is written by the same thread, so y may alias x and dx may alias dy.

#include <lnformer/backend/cuda/gpu.cuh>
#include <lnformer/ops/activation.hpp>

#include <cstdint>

namespace lnformer::cuda::detail::activation {

inline constexpr float kInvSqrt2Pi = 0.398942280401432677940f;  // 1 / sqrt(2 pi)

template <ops::Activation Act>
__device__ inline float value(float x) {
  if constexpr (Act == ops::Activation::relu) {
    return (x > 0.f || isnan(x)) ? x : 0.f;
  } else {
    return x * normcdff(x);
  }
}

/// act'(x) * dy.
template <ops::Activation Act>
__device__ inline float gradient(float x, float dy) {
  if constexpr (Act == ops::Activation::relu) {
    return x > 0.f ? dy : 0.f * dy;  // 0 * dy as the Reference (a NaN or inf dy stays NaN)
  } else {
    float const derivative = normcdff(x) + x * (kInvSqrt2Pi * expf(-0.5f * x * x));
    return derivative * dy;
  }
}

template <ops::Activation Act>
__global__ void forward_kernel(float* y, float const* x, std::int64_t n) {
  std::int64_t const stride = static_cast<std::int64_t>(gridDim.x) * blockDim.x;
  for (std::int64_t i = static_cast<std::int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += stride)
    y[i] = value<Act>(x[i]);
}

template <ops::Activation Act>
__global__ void backward_kernel(float* dx, float const* dy, float const* x, std::int64_t n) {
  std::int64_t const stride = static_cast<std::int64_t>(gridDim.x) * blockDim.x;
  for (std::int64_t i = static_cast<std::int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += stride)
    dx[i] = gradient<Act>(x[i], dy[i]);
}

template <ops::Activation Act>
void launch_forward(float* y, float const* x, std::int64_t n) {
  forward_kernel<Act><<<blocks_for(n), kThreads, 0, context().stream()>>>(y, x, n);
  LNF_CUDA_LAUNCH_CHECK(activation_forward_kernel);
}

template <ops::Activation Act>
void launch_backward(float* dx, float const* dy, float const* x, std::int64_t n) {
  backward_kernel<Act><<<blocks_for(n), kThreads, 0, context().stream()>>>(dx, dy, x, n);
  LNF_CUDA_LAUNCH_CHECK(activation_backward_kernel);
}

}  // namespace lnformer::cuda::detail::activation

namespace lnformer::ops {

inline void activation_forward(Gpu, View<Gpu> y, CView<Gpu> x, Activation act) {
  check::activation_forward<Gpu>(y, x, act);
  std::int64_t const n = x.numel();
  if (n == 0) return;
  namespace k = cuda::detail::activation;
  if (act == Activation::relu)
    k::launch_forward<Activation::relu>(y.data(), x.data(), n);
  else
    k::launch_forward<Activation::gelu>(y.data(), x.data(), n);
}

inline void activation_backward(Gpu, View<Gpu> dx, CView<Gpu> dy, CView<Gpu> x, Activation act) {
  check::activation_backward<Gpu>(dx, dy, x, act);
  std::int64_t const n = x.numel();
  if (n == 0) return;
  namespace k = cuda::detail::activation;
  if (act == Activation::relu)
    k::launch_backward<Activation::relu>(dx.data(), dy.data(), x.data(), n);
  else
    k::launch_backward<Activation::gelu>(dx.data(), dy.data(), x.data(), n);
}

}  // namespace lnformer::ops
