#pragma once
// CPU GEMMs: every op is one or more oneDNN matmul primitives reading the caller's views through
// their real strides (a transposed or per-head operand is never copied), with alpha as the output
// scale, beta as a sum post-op, and the linear bias (and a ReLU epilogue, an eltwise post-op) fused.
// Contract in ops/matmul.hpp.
//
// The parts: backend/cpu/gemm_math.hpp (f32 or bf16 math, what this CPU's oneDNN offers),
// backend/cpu/gemm_entry.hpp (the cached problems and their layout decisions),
// backend/cpu/gemm_run.hpp (feeding, executing, reductions).

#include <lnformer/backend/cpu/cpu.hpp>
#include <lnformer/backend/cpu/gemm_math.hpp>
#include <lnformer/backend/cpu/gemm_run.hpp>
#include <lnformer/ops/matmul.hpp>

namespace lnformer::ops {

inline void matmul(Cpu, View<Cpu> c, CView<Cpu> a, CView<Cpu> b, float alpha = 1.f, float beta = 0.f) {
  check::matmul<Cpu>(c, a, b, alpha, beta);
  cpu::detail::gemm::run(c, a, b, {}, alpha, beta);
}

inline void matmul_backward(Cpu, View<Cpu> da, View<Cpu> db, CView<Cpu> dc, CView<Cpu> a, CView<Cpu> b,
                            float alpha = 1.f) {
  check::matmul_backward<Cpu>(da, db, dc, a, b, alpha);
  namespace gm = cpu::detail::gemm;
  if (!da.empty()) gm::run_reduce(da, dc, gm::swap_last2(b), alpha);  // [.., m, n] @ [.., n, k]
  if (!db.empty()) gm::run_reduce(db, gm::swap_last2(a), dc, alpha);  // [.., k, m] @ [.., m, n]
}

inline void linear_forward(Cpu, View<Cpu> y, CView<Cpu> x, CView<Cpu> w, CView<Cpu> bias,
                           Epilogue ep = Epilogue::none) {
  check::linear_forward<Cpu>(y, x, w, bias);
  namespace gm = cpu::detail::gemm;
  // y [N, out] = x [N, in] @ w^T [in, out]: w read through transposed strides, bias (and relu) fused.
  gm::run(gm::rows_of(y), gm::rows_of(x), gm::swap_last2(w), bias, 1.f, 0.f, ep == Epilogue::relu);
}

inline void linear_backward(Cpu, View<Cpu> dx, View<Cpu> dw, View<Cpu> dbias, CView<Cpu> dy, CView<Cpu> x,
                            CView<Cpu> w) {
  check::linear_backward<Cpu>(dx, dw, dbias, dy, x, w);
  namespace gm = cpu::detail::gemm;
  auto const dy2 = gm::rows_of(dy);
  if (!dx.empty()) gm::run(gm::rows_of(dx), dy2, w, {}, 1.f, 0.f);                  // [N, out] @ [out, in]
  if (!dw.empty()) gm::run(dw, gm::swap_last2(dy2), gm::rows_of(x), {}, 1.f, 1.f);  // [out, N] @ [N, in]
  if (!dbias.empty()) gm::column_sums_add(dbias, dy2);
}

}  // namespace lnformer::ops
