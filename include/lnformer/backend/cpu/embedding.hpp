#pragma once
// CPU embedding. Contract in ops/embedding.hpp.
//
// forward: rows are independent copies, OpenMP over tokens.
// backward: a scatter-add where repeated ids collide, so the threads split the d columns instead of the
// tokens: thread i owns columns [c0, c1) of every table row (boundaries on 16-float cache lines), walks
// all tokens in order and never races. No allocation, and the summation order per element is the token
// order, so the result does not depend on the number of threads.

#include <lnformer/backend/cpu/cpu.hpp>
#include <lnformer/ops/embedding.hpp>

#include <omp.h>

#include <algorithm>
#include <cstdint>

namespace lnformer::cpu::detail {
/// Below this many floats moved, a parallel region costs more than it saves.
inline constexpr std::int64_t kEmbeddingParallelMin = std::int64_t{1} << 15;
}  // namespace lnformer::cpu::detail

namespace lnformer::ops {

inline void embedding_forward(Cpu, View<Cpu> y, CView<Cpu> table, IView<Cpu> ids, float scale) {
  check::embedding_forward<Cpu>(y, table, ids);
  std::int64_t const N = ids.numel(), d = table.size(1);
  float* out = y.data();
  float const* tab = table.data();
  std::int32_t const* id = ids.data();
#pragma omp parallel for schedule(static) if (N * d >= cpu::detail::kEmbeddingParallelMin)
  for (std::int64_t n = 0; n < N; ++n) {
    float const* src = tab + static_cast<std::int64_t>(id[n]) * d;
    float* dst = out + n * d;
#pragma omp simd
    for (std::int64_t c = 0; c < d; ++c) dst[c] = scale * src[c];
  }
}

inline void embedding_backward(Cpu, View<Cpu> dtable, CView<Cpu> dy, IView<Cpu> ids, float scale,
                               std::int32_t padding_idx = -1) {
  check::embedding_backward<Cpu>(dtable, dy, ids, padding_idx);
  std::int64_t const N = ids.numel(), d = dtable.size(1);
  float* grad = dtable.data();
  float const* g = dy.data();
  std::int32_t const* id = ids.data();
  constexpr std::int64_t kLine = 16;  // floats per 64-byte cache line
#pragma omp parallel if (N * d >= cpu::detail::kEmbeddingParallelMin)
  {
    std::int64_t const nt = omp_get_num_threads(), tid = omp_get_thread_num();
    std::int64_t const lines = (d + kLine - 1) / kLine;
    std::int64_t const c0 = std::min(d, lines * tid / nt * kLine);
    std::int64_t const c1 = std::min(d, lines * (tid + 1) / nt * kLine);
    for (std::int64_t n = 0; n < N && c0 < c1; ++n) {
      if (id[n] == padding_idx) continue;
      float* dst = grad + static_cast<std::int64_t>(id[n]) * d;
      float const* src = g + n * d;
#pragma omp simd
      for (std::int64_t c = c0; c < c1; ++c) dst[c] += scale * src[c];
    }
  }
}

}  // namespace lnformer::ops
