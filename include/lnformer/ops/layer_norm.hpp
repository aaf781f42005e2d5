#pragma once
// Layer normalisation over the last dimension (Ba et al. 2016), as PyTorch's nn.LayerNorm.
//
// x is contiguous with d = x.size(-1) >= 1 and rows = x.numel() / d (any leading shape).
//
//   layer_norm_forward(B, View y, View mean, View rstd, CView x, CView gamma, CView beta, float eps)
//     mean[r] = sum_j x[r, j] / d
//     rstd[r] = 1 / sqrt(sum_j (x[r, j] - mean[r])^2 / d + eps)      (population variance)
//     y[r, j] = (x[r, j] - mean[r]) * rstd[r] * gamma[j] + beta[j]   (ASSIGN)
//     y: shape of x, may alias x (in place). gamma, beta: [d]. eps >= 0, finite (eps = 0 and a
//     constant row give rstd = inf and y = NaN, as in PyTorch).
//     mean, rstd: the cache for the backward pass, `rows` elements each, contiguous ([rows] or the
//     leading dims of x); either may be empty (absent) when no backward will follow.
//
//   layer_norm_backward(B, View dx, View dgamma, View dbeta, CView dy, CView x, CView mean, CView rstd,
//                       CView gamma, CView residual = {})
//     with xhat = (x - mean) * rstd, g = gamma * dy:
//     dx[r, j]   = residual[r, j]                                   (only where residual is given)
//                + rstd[r] * (g[r, j] - mean_j g[r, .] - xhat[r, j] * mean_j (g * xhat)[r, .])   (ASSIGN)
//     dgamma[j] += sum_r dy[r, j] * xhat[r, j]                                          (ACCUMULATE)
//     dbeta[j]  += sum_r dy[r, j]                                                       (ACCUMULATE)
//     dx, dy: shape of x; dx may alias dy or x. mean, rstd: as saved by layer_norm_forward.
//     Any of dx, dgamma, dbeta may be empty (that gradient is not wanted).
//     residual: empty, or the shape of x, contiguous, dx itself or disjoint from it (then dx must be
//     given): a gradient that reaches x by another path, added in the same pass. Pre-LN's
//     x + f(LN(x)) passes the skip path's dy here.
//     The result is the norm's gradient followed by add(dx, residual, dx), to the last bit or so (a
//     compiler may fuse the final multiply-add).
//
// Rule (llm.c): parameter gradients accumulate (+=), activation gradients assign (=).
// Implementations: ops::layer_norm_*(Cpu, ...) in backend/cpu/layer_norm.hpp,
// ops::layer_norm_*(Reference, ...) in backend/reference/layer_norm.hpp.

#include <lnformer/core/error.hpp>
#include <lnformer/core/tensor.hpp>

#include <cmath>
#include <cstdint>

namespace lnformer::ops {

/// The problem size of a layer norm: `rows` independent rows of length `d`.
struct LayerNormDims {
  std::int64_t rows = 0;
  std::int64_t d = 0;
};

namespace detail::layer_norm {

/// True when [a, a + na) and [b, b + nb) share memory but do not start at the same element: aliasing
/// that is neither "the same tensor" nor "disjoint", which no row-wise kernel can honour.
template <class T, class U>
bool partial_overlap(T const* a, std::int64_t na, U const* b, std::int64_t nb) {
  auto const* pa = reinterpret_cast<char const*>(a);
  auto const* pb = reinterpret_cast<char const*>(b);
  if (na == 0 || nb == 0 || pa == pb) return false;
  return pa < pb + nb * static_cast<std::int64_t>(sizeof(U)) &&
         pb < pa + na * static_cast<std::int64_t>(sizeof(T));
}

/// x: contiguous, rank >= 1, last dim >= 1. Returns rows and d.
template <class B>
LayerNormDims input_dims(char const* op, CView<B> x) {
  LNF_EXPECTS(x.rank() >= 1, "{}: x has shape {}; it must have rank >= 1 (normalised over the last dim)", op,
              x.shape());
  LNF_EXPECTS(x.size(-1) >= 1, "{}: x has shape {}; the normalised (last) dim must be at least 1", op,
              x.shape());
  LNF_EXPECTS(x.is_contiguous(), "{}: x (shape {}) must be contiguous", op, x.shape());
  return {x.numel() / x.size(-1), x.size(-1)};
}

/// A per-feature vector (gamma, beta, dgamma, dbeta): shape [d], contiguous.
template <class B, class T>
void check_feature(char const* op, char const* name, TensorView<B, T> v, CView<B> x, LayerNormDims n) {
  LNF_EXPECTS(v.rank() == 1 && v.size(0) == n.d,
              "{}: x has shape {} but {} has shape {}; {} must be [{}] (the last dim of x)", op, x.shape(),
              name, v.shape(), name, n.d);
  LNF_EXPECTS(v.is_contiguous(), "{}: {} (shape {}) must be contiguous", op, name, v.shape());
}

/// A per-row statistic (mean, rstd): `rows` elements, contiguous.
template <class B, class T>
void check_stat(char const* op, char const* name, TensorView<B, T> v, CView<B> x, LayerNormDims n) {
  LNF_EXPECTS(
      v.numel() == n.rows && v.is_contiguous(),
      "{}: x has shape {} ({} rows of {}) but {} has shape {}; {} must be contiguous with {} elements "
      "([{}] or the leading dims of x)",
      op, x.shape(), n.rows, n.d, name, v.shape(), name, n.rows, n.rows);
}

/// An activation-shaped tensor (y, dy, dx): the shape of x, contiguous.
template <class B, class T>
void check_like_x(char const* op, char const* name, TensorView<B, T> v, CView<B> x) {
  LNF_EXPECTS(v.shape() == x.shape(), "{}: x has shape {} but {} has shape {}; they must match", op,
              x.shape(), name, v.shape());
  LNF_EXPECTS(v.is_contiguous(), "{}: {} (shape {}) must be contiguous", op, name, v.shape());
}

}  // namespace detail::layer_norm

namespace check {

template <class B>
LayerNormDims layer_norm_forward(View<B> y, View<B> mean, View<B> rstd, CView<B> x, CView<B> gamma,
                                 CView<B> beta, float eps) {
  namespace ln = ::lnformer::ops::detail::layer_norm;
  char const* op = "layer_norm_forward";
  auto const n = ln::input_dims<B>(op, x);
  ln::check_like_x<B>(op, "y", y, x);
  ln::check_feature<B>(op, "gamma", gamma, x, n);
  ln::check_feature<B>(op, "beta", beta, x, n);
  if (!mean.empty()) ln::check_stat<B>(op, "mean", mean, x, n);
  if (!rstd.empty()) ln::check_stat<B>(op, "rstd", rstd, x, n);
  LNF_EXPECTS_AS(ValueError, std::isfinite(eps) && eps >= 0.f, "{}: eps = {} must be finite and >= 0", op,
                 eps);
  LNF_EXPECTS(!ln::partial_overlap(y.data(), y.numel(), x.data(), x.numel()),
              "{}: y (shape {}) partially overlaps x (shape {}); y must be x itself or disjoint from it", op,
              y.shape(), x.shape());
  return n;
}

template <class B>
LayerNormDims layer_norm_backward(View<B> dx, View<B> dgamma, View<B> dbeta, CView<B> dy, CView<B> x,
                                  CView<B> mean, CView<B> rstd, CView<B> gamma, CView<B> residual = {}) {
  namespace ln = ::lnformer::ops::detail::layer_norm;
  char const* op = "layer_norm_backward";
  auto const n = ln::input_dims<B>(op, x);
  ln::check_like_x<B>(op, "dy", dy, x);
  if (!dx.empty()) ln::check_like_x<B>(op, "dx", dx, x);
  ln::check_stat<B>(op, "mean", mean, x, n);
  ln::check_stat<B>(op, "rstd", rstd, x, n);
  ln::check_feature<B>(op, "gamma", gamma, x, n);
  if (!dgamma.empty()) ln::check_feature<B>(op, "dgamma", dgamma, x, n);
  if (!dbeta.empty()) ln::check_feature<B>(op, "dbeta", dbeta, x, n);
  LNF_EXPECTS(
      !ln::partial_overlap(dx.data(), dx.numel(), dy.data(), dy.numel()) &&
          !ln::partial_overlap(dx.data(), dx.numel(), x.data(), x.numel()),
      "{}: dx (shape {}) partially overlaps dy or x (shape {}); dx must be dy, x, or disjoint from both", op,
      dx.shape(), x.shape());
  if (!residual.empty()) {
    LNF_EXPECTS(!dx.empty(), "{}: a residual (shape {}) is given but dx is not; the sum needs somewhere to go", op,
                residual.shape());
    ln::check_like_x<B>(op, "residual", residual, x);
    LNF_EXPECTS(!ln::partial_overlap(dx.data(), dx.numel(), residual.data(), residual.numel()),
                "{}: dx (shape {}) partially overlaps the residual (shape {}); dx must be the residual or disjoint "
                "from it",
                op, dx.shape(), residual.shape());
  }
  return n;
}

}  // namespace check
}  // namespace lnformer::ops
