#pragma once
// GPU label-smoothed cross-entropy. Contract in ops/cross_entropy.hpp; float arithmetic with the
// CPU backend's formulas (differences to the row max, so logits of magnitude 1e4 lose nothing).
//
// Targets are validated first, on the device: check_targets_kernel records the first row whose
// target is neither padding_idx nor in [0, V) (an integer atomicMin into a flag in workspace slot 2),
// the flag is copied back (this synchronises the stream, once per call) and a bad row throws the
// CPU backend's ValueError, naming the op, row, target and V, before any output is written.
//
// forward:  one thread block per row (a grid-stride loop over rows): m = max_v x (NaN skipped), then
//           es = sum exp(x - m) and gap = sum (m - x) in one sweep (a NaN logit makes gap NaN), by
//           block reductions (cuda/reduce.cuh: warp shuffles, then across warps through shared
//           memory); thread 0 writes lse = m + log es, nll = (m - x_t) + log es and loss =
//           target * nll + uniform * (gap + V log es) (double), or 0 and 0 for a padding row.
// backward: element-wise over the N * V logits (grid-stride, 64-bit): dlogits = g exp(x - lse) -
//           g uniform, minus g target at the target column; 0 in padding rows; NaN where lse is NaN.
//           Each element is read before it is written by the same thread, so dlogits may be logits.
//
// The kernels are templates (instantiated for float only): a non-template __global__ function
// defined in a header is a duplicate symbol once two translation units include the header.

#include <lnformer/backend/cuda/gpu.cuh>
#include <lnformer/backend/cuda/reduce.cuh>
#include <lnformer/ops/cross_entropy.hpp>

#include <cstdint>

namespace lnformer::cuda::detail::xent {

/// Device scratch slot of the bad-target flag (see cuda::Context::workspace).
inline constexpr int kWorkspaceSlot = 2;
/// The flag's value when every target is valid.
inline constexpr unsigned long long kNoBadRow = ~0ull;

/// *first_bad = min(*first_bad, n) for every row n whose target is neither padding_idx nor in [0, V).
template <class I>
__global__ void check_targets_kernel(unsigned long long* first_bad, I const* targets, std::int64_t N,
                                     std::int64_t V, std::int32_t padding_idx) {
  std::int64_t const step = static_cast<std::int64_t>(gridDim.x) * blockDim.x;
  for (std::int64_t n = static_cast<std::int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; n < N; n += step) {
    I const t = targets[n];
    if (t != padding_idx && (t < 0 || t >= V)) atomicMin(first_bad, static_cast<unsigned long long>(n));
  }
}

template <class T>
__global__ void __launch_bounds__(kMaxRowThreads)
    forward_kernel(T* loss, T* nll, T* lse, T const* logits, std::int32_t const* targets, std::int64_t N,
                   std::int64_t V, double w_target, double w_uniform, std::int32_t padding_idx) {
  __shared__ float shared[64];  // block_sum2's size (block_max uses 32)
  for (std::int64_t n = blockIdx.x; n < N; n += gridDim.x) {
    T const* x = logits + n * V;
    float m = neg_inf();
    for (std::int64_t v = threadIdx.x; v < V; v += blockDim.x) m = fmaxf(m, x[v]);
    m = block_max(m, shared);
    float es = 0.f, gap = 0.f;  // sum exp(x - m), sum (m - x)
    for (std::int64_t v = threadIdx.x; v < V; v += blockDim.x) {
      float const z = x[v] - m;
      es += expf(z);
      gap -= z;
    }
    block_sum2(es, gap, shared);
    if (threadIdx.x == 0) {
      float const log_s = isnan(gap) ? quiet_nan() : logf(es);
      lse[n] = m + log_s;
      std::int32_t const t = targets[n];
      float row_nll = 0.f, row_loss = 0.f;
      if (t != padding_idx) {  // t in [0, V): checked before the launch
        row_nll = (m - x[t]) + log_s;
        double const smooth = static_cast<double>(gap) + static_cast<double>(V) * log_s;
        row_loss = static_cast<float>(w_target * row_nll + w_uniform * smooth);
      }
      loss[n] = row_loss;
      if (nll != nullptr) nll[n] = row_nll;
    }
  }
}

template <class T>
__global__ void backward_kernel(T* dlogits, T const* dloss, T const* logits, T const* lse,
                                std::int32_t const* targets, std::int64_t N, std::int64_t V, double w_target,
                                double w_uniform, std::int32_t padding_idx) {
  std::int64_t const total = N * V;
  std::int64_t const step = static_cast<std::int64_t>(gridDim.x) * blockDim.x;
  for (std::int64_t i = static_cast<std::int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < total; i += step) {
    std::int64_t const n = i / V;
    std::int64_t const v = i - n * V;
    std::int32_t const t = targets[n];
    float const l = lse[n];
    float out;
    if (t == padding_idx) {
      out = 0.f;
    } else if (isnan(l)) {
      out = l;
    } else {
      float const g = dloss[n];
      out = g * expf(logits[i] - l) - static_cast<float>(g * w_uniform);
      if (v == t) out -= static_cast<float>(g * w_target);
    }
    dlogits[i] = out;  // may alias logits[i], read above by this thread only
  }
}

/// Throws the CPU backend's ValueError when a target is neither padding_idx nor in [0, V).
inline void check_targets(char const* op, ops::IView<Gpu> targets, std::int64_t V, std::int32_t padding_idx) {
  std::int64_t const N = targets.numel();
  if (N == 0) return;
  auto& ctx = cuda::context();
  auto* flag = static_cast<unsigned long long*>(ctx.workspace(kWorkspaceSlot, sizeof(unsigned long long)));
  LNF_CUDA_CHECK(cudaMemsetAsync(flag, 0xff, sizeof(unsigned long long), ctx.stream()));  // kNoBadRow
  check_targets_kernel<<<cuda::blocks_for(N), cuda::kThreads, 0, ctx.stream()>>>(flag, targets.data(), N, V,
                                                                                 padding_idx);
  LNF_CUDA_LAUNCH_CHECK(cross_entropy_check_targets_kernel);
  unsigned long long first_bad = kNoBadRow;
  LNF_CUDA_CHECK(
      cudaMemcpyAsync(&first_bad, flag, sizeof(first_bad), cudaMemcpyDeviceToHost, ctx.stream()));
  ctx.synchronize();
  if (first_bad == kNoBadRow) return;
  auto const row = static_cast<std::int64_t>(first_bad);
  std::int32_t t = 0;
  LNF_CUDA_CHECK(cudaMemcpyAsync(&t, targets.data() + row, sizeof(t), cudaMemcpyDeviceToHost, ctx.stream()));
  ctx.synchronize();
  LNF_EXPECTS_AS(ValueError, t == padding_idx || (t >= 0 && t < V),
                 "{}: target {} in row {} is out of range [0, V = {}) and is not padding_idx {}", op, t, row, V,
                 padding_idx);
  throw BackendError(fmt::format("{}: the device flagged target {} in row {} as out of range [0, {}), but it is in "
                                 "range",
                                 op, t, row, V));  // unreachable unless the targets changed under us
}

/// What both passes need once the shapes are checked: logits is [N, V]; w, the label-smoothing weights.
struct Problem {
  std::int64_t N = 0, V = 0;
  ops::detail::LabelSmoothing w;
};

/// The Problem of logits and eps; when there are rows, after check_targets has validated the targets.
inline Problem prepare(char const* op, CView<Gpu> logits, ops::IView<Gpu> targets, float eps,
                       std::int32_t padding_idx) {
  Problem p{logits.size(0), logits.size(1), {}};
  if (p.N == 0) return p;
  check_targets(op, targets, p.V, padding_idx);
  p.w = ops::detail::label_smoothing(eps, p.V);
  return p;
}

}  // namespace lnformer::cuda::detail::xent

namespace lnformer::ops {

inline void cross_entropy_forward(Gpu, View<Gpu> loss, View<Gpu> nll, View<Gpu> lse, CView<Gpu> logits,
                                  IView<Gpu> targets, float eps, std::int32_t padding_idx) {
  namespace xe = cuda::detail::xent;
  check::cross_entropy_forward<Gpu>(loss, nll, lse, logits, targets, eps, padding_idx);
  auto const p = xe::prepare("cross_entropy_forward", logits, targets, eps, padding_idx);
  if (p.N == 0) return;
  cuda::detail::launch_rows(xe::forward_kernel<float>, p.N, p.V, loss.data(), nll.empty() ? nullptr : nll.data(),
                            lse.data(), logits.data(), targets.data(), p.N, p.V, p.w.target, p.w.uniform,
                            padding_idx);
  LNF_CUDA_LAUNCH_CHECK(cross_entropy_forward_kernel);
}

inline void cross_entropy_backward(Gpu, View<Gpu> dlogits, CView<Gpu> dloss, CView<Gpu> logits, CView<Gpu> lse,
                                   IView<Gpu> targets, float eps, std::int32_t padding_idx) {
  namespace xe = cuda::detail::xent;
  check::cross_entropy_backward<Gpu>(dlogits, dloss, logits, lse, targets, eps, padding_idx);
  auto const p = xe::prepare("cross_entropy_backward", logits, targets, eps, padding_idx);
  if (p.N == 0) return;
  xe::backward_kernel<<<cuda::blocks_for(p.N * p.V), cuda::kThreads, 0, cuda::context().stream()>>>(
      dlogits.data(), dloss.data(), logits.data(), lse.data(), targets.data(), p.N, p.V, p.w.target, p.w.uniform,
      padding_idx);
  LNF_CUDA_LAUNCH_CHECK(cross_entropy_backward_kernel);
}

}  // namespace lnformer::ops
