#pragma once
// GEMMs: batched matmul with broadcast batch dims and arbitrary operand strides, and the dense layer
// in PyTorch's weight layout.
//
//   matmul(B, View c, CView a, CView b, float alpha = 1, float beta = 0)
//     c = alpha * a @ b + beta * c        beta = 0 ASSIGNS (c's old values, even NaN, are ignored);
//                                         beta = 1 accumulates
//     a: [..., m, k]   b: [..., k, n]   c: [..., m, n]; rank 2, 3 or 4, the same for all three.
//     Each batch dim of a and of b is either c's or 1 (broadcast). a and b may have any strides
//     (a transposed operand is x.transposed(), a per-head operand a permuted view); c must have unit
//     stride in its last dim (its other strides are free: a head slice of a larger buffer is fine)
//     and must not overlap a or b.
//
//   matmul_backward(B, View da, View db, CView dc, CView a, CView b, float alpha = 1)
//     for c = alpha * a @ b:  da = alpha * dc @ b^T,  db = alpha * a^T @ dc   (both ASSIGN: they are
//     activation gradients, e.g. of attention). Either may be empty to skip it. da has a's shape, db
//     b's; where a (or b) was broadcast over a batch dim, its gradient is summed over that dim.
//
//   linear_forward(B, View y, CView x, CView w, CView bias, Epilogue ep = Epilogue::none)
//     y = x @ w^T + bias                  x: [..., in]  w: [out, in] (PyTorch layout)  bias: [out] or empty
//                                         y: [..., out]. Rank > 2: leading dims are flattened, so x
//                                         and y must then be contiguous.
//     Epilogue::relu: y = relu(x @ w^T + bias) in the same pass (the CPU's GEMM applies it as it
//     writes y). relu'(h) = [h > 0] = [y > 0], so activation_backward(dh, dy, y, relu) gives the
//     gradient from y alone and the pre-activation need not be kept.
//
//   linear_backward(B, View dx, View dw, View dbias, CView dy, CView x, CView w)
//     dx = dy @ w          (ASSIGN, activation gradient; empty to skip)
//     dw += dy^T @ x       (ACCUMULATE, parameter gradient; empty to skip)
//     dbias += sum_rows dy (ACCUMULATE, parameter gradient; empty to skip)
//
// Implementations: ops::matmul(Cpu, ...) in backend/cpu/matmul.hpp (oneDNN matmul),
// ops::matmul(Gpu, ...) in backend/cuda/matmul.cuh (cuBLAS), ops::matmul(Reference, ...) in
// backend/reference/matmul.hpp. detail::gemm below also holds the backend-generic view helpers they
// share (swap_last2, rows_of, for_each_reduced).

#include <lnformer/core/error.hpp>
#include <lnformer/core/shape.hpp>
#include <lnformer/core/tensor.hpp>

#include <fmt/format.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <string>
#include <utility>

namespace lnformer::ops {

/// What linear_forward applies to x @ w^T + bias before writing y.
enum class Epilogue { none, relu };

namespace detail::gemm {

/// "[s0, s1, ...]": the strides of a view, for error messages.
template <class B, class T>
std::string strides_str(TensorView<B, T> const& v) {
  return fmt::format("[{}]", fmt::join(v.strides().begin(), v.strides().begin() + v.rank(), ", "));
}

/// Shapes shared by matmul and matmul_backward: a [..., m, k], b [..., k, n], c [..., m, n] of the same
/// rank 2..4, each batch dim of a and b 1 or c's. `op` and the names say which arguments these are.
template <class B>
void check_matmul_shapes(char const* op, char const* c_name, CView<B> c, CView<B> a, CView<B> b) {
  int const r = c.rank();
  LNF_EXPECTS(r >= 2 && r <= 4 && a.rank() == r && b.rank() == r,
              "{}: a has shape {}, b has shape {} and {} has shape {}; all three must have the same rank, "
              "2, 3 or 4",
              op, a.shape(), b.shape(), c_name, c.shape());
  LNF_EXPECTS(a.size(-1) == b.size(-2),
              "{}: inner dimensions mismatch: a has shape {} and b has shape {}; a's last dim ({}) must "
              "equal b's second-to-last dim ({})",
              op, a.shape(), b.shape(), a.size(-1), b.size(-2));
  LNF_EXPECTS(c.size(-2) == a.size(-2) && c.size(-1) == b.size(-1),
              "{}: {} has shape {} but a has shape {} and b has shape {}; {} must be [..., {}, {}]", op,
              c_name, c.shape(), a.shape(), b.shape(), c_name, a.size(-2), b.size(-1));
  for (int i = 0; i < r - 2; ++i) {
    LNF_EXPECTS((a.size(i) == c.size(i) || a.size(i) == 1) && (b.size(i) == c.size(i) || b.size(i) == 1),
                "{}: batch dim {} of a (shape {}) and b (shape {}) must each be 1 or equal {}'s (shape {})",
                op, i, a.shape(), b.shape(), c_name, c.shape());
  }
}

/// A view written as the c operand of a GEMM needs unit stride in its last dim.
template <class B>
void check_unit_last_stride(char const* op, char const* name, View<B> v) {
  LNF_EXPECTS(v.size(-1) <= 1 || v.stride(-1) == 1,
              "{}: {} (shape {}, strides {}) must have unit stride in its last dim", op, name, v.shape(),
              strides_str(v));
}

/// Rank >= 2 operands of linear_* whose leading dims are flattened into rows.
template <class B, class T>
void check_flattenable(char const* op, char const* name, TensorView<B, T> v) {
  LNF_EXPECTS(v.rank() >= 2, "{}: {} has shape {}; it must have rank >= 2 ([..., features])", op, name,
              v.shape());
  LNF_EXPECTS(v.rank() == 2 || v.is_contiguous(),
              "{}: {} (shape {}, strides {}) has rank > 2 and must be contiguous to flatten its leading dims",
              op, name, v.shape(), strides_str(v));
}

/// The same memory with the last two dims swapped (TensorView::transposed without its allocation).
template <class B, class T>
TensorView<B, T> swap_last2(TensorView<B, T> v) {
  std::array<std::int64_t, kMaxRank> d{};
  Strides s = v.strides();
  int const r = v.rank();
  for (int i = 0; i < r; ++i) d[i] = v.size(i);
  std::swap(d[r - 1], d[r - 2]);
  std::swap(s[r - 1], s[r - 2]);
  return TensorView<B, T>(v.data(), Shape::from(d.begin(), d.begin() + r), s);
}

/// [..., f] -> [rows, f]: the leading dims flattened. A rank > 2 view must be contiguous (the linear_*
/// checks make sure of it).
template <class B, class T>
TensorView<B, T> rows_of(TensorView<B, T> v) {
  if (v.rank() == 2) return v;
  std::int64_t rows = 1;
  for (int i = 0; i < v.rank() - 1; ++i) rows *= v.size(i);
  return TensorView<B, T>(v.data(), Shape{rows, v.size(-1)});
}

/// For c = x @ y (rank 2..4) where c is 1 in a batch dim where x or y is 0: the product is summed over
/// an empty batch dim, so it is zero. for_each_reduced does not treat such a dim as summed.
template <class B>
bool sums_over_empty(View<B> c, CView<B> x, CView<B> y) {
  for (int i = 0; i < c.rank() - 2; ++i)
    if (c.size(i) == 1 && std::max(x.size(i), y.size(i)) == 0) return true;
  return false;
}

/// c = x @ y (rank 2..4) where c may be 1 in batch dims where x or y is larger: the product summed over
/// those dims (the gradient of a broadcast operand), as a sequence of GEMMs. Calls run(c, xs, ys, beta)
/// once per index of the summed dims, xs and ys being x and y fixed at that index (size 1 there), with
/// beta 0 for the first call (assign) and 1 for the rest (accumulate). Without summed dims: one call
/// run(c, x, y, 0). An empty c: no call.
template <class B, class Run>
void for_each_reduced(View<B> c, CView<B> x, CView<B> y, Run&& run) {
  if (c.numel() == 0) return;
  int const r = c.rank();
  std::array<int, 2> red{};  // the summed dims, outermost first
  int n_red = 0;
  std::int64_t count = 1;  // GEMMs: the product of the summed dims' sizes
  for (int i = 0; i < r - 2; ++i) {
    std::int64_t const full = std::max(x.size(i), y.size(i));
    if (c.size(i) == 1 && full > 1) red[n_red++] = i, count *= full;
  }
  if (n_red == 0) {
    run(c, x, y, 0.f);
    return;
  }
  auto fix = [&](CView<B> v, std::array<std::int64_t, 2> const& idx) {
    std::array<std::int64_t, kMaxRank> d{};
    for (int i = 0; i < r; ++i) d[i] = v.size(i);
    float const* p = v.data();
    for (int t = 0; t < n_red; ++t) {
      int const i = red[t];
      if (v.size(i) > 1) p += idx[t] * v.strides()[i], d[i] = 1;
    }
    return CView<B>(p, Shape::from(d.begin(), d.begin() + r), v.strides());
  };
  for (std::int64_t t = 0; t < count; ++t) {
    std::array<std::int64_t, 2> idx{};
    std::int64_t rest = t;
    for (int u = n_red - 1; u >= 0; --u) {
      std::int64_t const full = std::max(x.size(red[u]), y.size(red[u]));
      idx[u] = rest % full;
      rest /= full;
    }
    run(c, fix(x, idx), fix(y, idx), t == 0 ? 0.f : 1.f);
  }
}

}  // namespace detail::gemm

namespace check {

template <class B>
void matmul(View<B> c, CView<B> a, CView<B> b, float alpha, float beta) {
  namespace gm = ::lnformer::ops::detail::gemm;  // ops::check::detail exists too
  gm::check_matmul_shapes<B>("matmul", "c", c, a, b);
  gm::check_unit_last_stride<B>("matmul", "c", c);
  LNF_EXPECTS_AS(ValueError, std::isfinite(alpha) && std::isfinite(beta),
                 "matmul: alpha ({}) and beta ({}) must be finite", alpha, beta);
}

template <class B>
void matmul_backward(View<B> da, View<B> db, CView<B> dc, CView<B> a, CView<B> b, float alpha) {
  namespace gm = ::lnformer::ops::detail::gemm;  // ops::check::detail exists too
  gm::check_matmul_shapes<B>("matmul_backward", "dc", dc, a, b);
  if (!da.empty()) {
    LNF_EXPECTS(da.shape() == a.shape(),
                "matmul_backward: da has shape {} but a has shape {}; they must match", da.shape(),
                a.shape());
    gm::check_unit_last_stride<B>("matmul_backward", "da", da);
  }
  if (!db.empty()) {
    LNF_EXPECTS(db.shape() == b.shape(),
                "matmul_backward: db has shape {} but b has shape {}; they must match", db.shape(),
                b.shape());
    gm::check_unit_last_stride<B>("matmul_backward", "db", db);
  }
  LNF_EXPECTS_AS(ValueError, std::isfinite(alpha), "matmul_backward: alpha ({}) must be finite", alpha);
}

template <class B>
void linear_forward(View<B> y, CView<B> x, CView<B> w, CView<B> bias) {
  namespace gm = ::lnformer::ops::detail::gemm;  // ops::check::detail exists too
  LNF_EXPECTS(w.rank() == 2, "linear_forward: w has shape {}; it must be [out, in]", w.shape());
  gm::check_flattenable("linear_forward", "x", x);
  LNF_EXPECTS(
      x.size(-1) == w.size(1),
      "linear_forward: inner dimensions mismatch: x has shape {} but w has shape {}; x's last dim ({}) "
      "must equal w's in dim ({}) (w is [out, in])",
      x.shape(), w.shape(), x.size(-1), w.size(1));
  Shape const ys = x.shape().with_last(w.size(0));
  LNF_EXPECTS(y.shape() == ys,
              "linear_forward: y has shape {} but x has shape {} and w has shape {}; y must be {}", y.shape(),
              x.shape(), w.shape(), ys);
  gm::check_flattenable("linear_forward", "y", y);
  gm::check_unit_last_stride<B>("linear_forward", "y", y);
  if (!bias.empty()) {
    LNF_EXPECTS(
        bias.rank() == 1 && bias.size(0) == w.size(0),
        "linear_forward: bias has shape {} but w has shape {}; bias must be [{}] (w's out dim) or empty",
        bias.shape(), w.shape(), w.size(0));
  }
}

template <class B>
void linear_backward(View<B> dx, View<B> dw, View<B> dbias, CView<B> dy, CView<B> x, CView<B> w) {
  namespace gm = ::lnformer::ops::detail::gemm;  // ops::check::detail exists too
  LNF_EXPECTS(w.rank() == 2, "linear_backward: w has shape {}; it must be [out, in]", w.shape());
  gm::check_flattenable("linear_backward", "x", x);
  gm::check_flattenable("linear_backward", "dy", dy);
  LNF_EXPECTS(
      x.size(-1) == w.size(1),
      "linear_backward: inner dimensions mismatch: x has shape {} but w has shape {}; x's last dim ({}) "
      "must equal w's in dim ({}) (w is [out, in])",
      x.shape(), w.shape(), x.size(-1), w.size(1));
  Shape const ys = x.shape().with_last(w.size(0));
  LNF_EXPECTS(dy.shape() == ys,
              "linear_backward: dy has shape {} but x has shape {} and w has shape {}; dy must be {}",
              dy.shape(), x.shape(), w.shape(), ys);
  if (!dx.empty()) {
    LNF_EXPECTS(dx.shape() == x.shape(),
                "linear_backward: dx has shape {} but x has shape {}; they must match", dx.shape(),
                x.shape());
    gm::check_flattenable("linear_backward", "dx", dx);
    gm::check_unit_last_stride<B>("linear_backward", "dx", dx);
  }
  if (!dw.empty()) {
    LNF_EXPECTS(dw.shape() == w.shape(),
                "linear_backward: dw has shape {} but w has shape {}; they must match", dw.shape(),
                w.shape());
    gm::check_unit_last_stride<B>("linear_backward", "dw", dw);
  }
  if (!dbias.empty()) {
    LNF_EXPECTS(
        dbias.rank() == 1 && dbias.size(0) == w.size(0),
        "linear_backward: dbias has shape {} but w has shape {}; dbias must be [{}] (w's out dim) or empty",
        dbias.shape(), w.shape(), w.size(0));
  }
}

}  // namespace check
}  // namespace lnformer::ops
