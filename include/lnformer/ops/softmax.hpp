#pragma once
// Softmax over the last dimension with an optional additive, broadcast mask.
//
// x is contiguous of any rank >= 1 (attention scores are [B, H, Tq, Tk]); it is viewed as
// rows = x.numel() / n rows of n = x.size(-1) columns.
//
//   softmax_forward(B, View y, CView x, CView mask, float scale)
//     v[r, j] = scale * x[r, j] + mask[r, j]
//     y[r, j] = exp(v[r, j] - max_j v[r, .]) / sum_k exp(v[r, k] - max_j v[r, .])   (ASSIGN)
//     y: shape of x, may alias x. scale: finite.
//     mask: optional (an empty view = none), ADDITIVE (0 / -inf, or any finite values), broadcastable
//       to x numpy-style: aligned to the trailing dims, rank <= x's, every dim equal to x's or 1 (a
//       size-1 or missing dim broadcasts). E.g. for x [B, H, Tq, Tk]: [Tk], [Tq, Tk] (causal),
//       [B, 1, 1, Tk] (key padding), [B, H, Tq, Tk]. Leading dims may have any strides (0 included);
//       a last dim of size > 1 must have stride 1. The mask must not overlap y.
//     A row whose every v is -inf (fully masked) gives y = 0 for the whole row, not NaN; its gradient
//     is 0 too. Entries with v = -inf get exactly 0. Logits of any finite magnitude (1e4) are exact
//     up to float rounding: the row max is subtracted before exp. Logits of +inf or NaN are not
//     supported (they give NaN in the row, or zeros where the rest of the row is -inf).
//
//   softmax_backward(B, View dx, CView dy, CView y, float scale)
//     dx[r, j] = scale * y[r, j] * (dy[r, j] - sum_k dy[r, k] * y[r, k])            (ASSIGN)
//     dx, dy, y: same shape, contiguous; y as produced by softmax_forward (with the same scale);
//     dx may alias dy or y. The mask has no gradient (it is a constant).
//
// Implementations: ops::softmax_*(Cpu, ...) in backend/cpu/softmax.hpp,
// ops::softmax_*(Reference, ...) in backend/reference/softmax.hpp.

#include <lnformer/core/error.hpp>
#include <lnformer/core/shape.hpp>
#include <lnformer/core/tensor.hpp>

#include <array>
#include <cmath>
#include <cstdint>

namespace lnformer::ops {

/// x viewed as [rows, cols], and where each row's mask lives.
struct SoftmaxLayout {
  std::int64_t rows = 0;
  std::int64_t cols = 0;
  bool masked = false;
  /// Mask element (row, j) is mask.data()[mask_row_offset(row) + j * mask_col_stride].
  std::int64_t mask_col_stride = 0;                // 1, or 0 when the mask's last dim is 1 (broadcast)
  int lead_rank = 0;                               // x.rank() - 1: the dims that index rows
  std::array<std::int64_t, kMaxRank> lead_size{};  // x's leading dims
  std::array<std::int64_t, kMaxRank>
      mask_lead_stride{};  // the mask's stride per leading dim of x; 0 broadcasts

  [[nodiscard]] std::int64_t mask_row_offset(std::int64_t row) const {
    std::int64_t off = 0;
    for (int i = lead_rank - 1; i >= 0; --i) {
      off += row % lead_size[i] * mask_lead_stride[i];
      row /= lead_size[i];
    }
    return off;
  }
};

namespace detail::softmax {

/// Bytes spanned by a view with non-negative strides: [data, data + extent).
template <class B, class T>
std::int64_t extent_bytes(TensorView<B, T> v) {
  if (v.numel() == 0) return 0;
  std::int64_t last = 0;
  for (int i = 0; i < v.rank(); ++i) last += (v.size(i) - 1) * v.strides()[i];
  return (last + 1) * static_cast<std::int64_t>(sizeof(T));
}

/// True when the memory of a and b intersects.
template <class B, class T, class U>
bool overlap(TensorView<B, T> a, TensorView<B, U> b) {
  auto const* pa = reinterpret_cast<char const*>(a.data());
  auto const* pb = reinterpret_cast<char const*>(b.data());
  std::int64_t const na = extent_bytes(a), nb = extent_bytes(b);
  return na != 0 && nb != 0 && pa < pb + nb && pb < pa + na;
}

/// Overlap that is neither "the same contiguous tensor" nor "disjoint".
template <class B, class T, class U>
bool partial_overlap(TensorView<B, T> a, TensorView<B, U> b) {
  return overlap(a, b) && static_cast<void const*>(a.data()) != static_cast<void const*>(b.data());
}

template <class B>
void check_rows(char const* op, char const* name, CView<B> x) {
  LNF_EXPECTS(x.rank() >= 1, "{}: {} has shape {}; it must have rank >= 1 (softmax over the last dim)", op,
              name, x.shape());
  LNF_EXPECTS(x.is_contiguous(), "{}: {} (shape {}) must be contiguous", op, name, x.shape());
}

}  // namespace detail::softmax

namespace check {

template <class B>
SoftmaxLayout softmax_forward(View<B> y, CView<B> x, CView<B> mask, float scale) {
  namespace sm = ::lnformer::ops::detail::softmax;
  char const* op = "softmax_forward";
  sm::check_rows<B>(op, "x", x);
  LNF_EXPECTS(y.shape() == x.shape(), "{}: x has shape {} but y has shape {}; they must match", op, x.shape(),
              y.shape());
  LNF_EXPECTS(y.is_contiguous(), "{}: y (shape {}) must be contiguous", op, y.shape());
  LNF_EXPECTS(!sm::partial_overlap(y, x),
              "{}: y (shape {}) partially overlaps x; y must be x itself or disjoint", op, y.shape());
  LNF_EXPECTS_AS(ValueError, std::isfinite(scale), "{}: scale = {} must be finite", op, scale);

  SoftmaxLayout l;
  l.cols = x.size(-1);
  l.rows = l.cols == 0 ? 0 : x.numel() / l.cols;
  l.lead_rank = x.rank() - 1;
  for (int i = 0; i < l.lead_rank; ++i) l.lead_size[i] = x.size(i);
  l.masked = mask.data() != nullptr;
  if (!l.masked) return l;

  int const off = x.rank() - mask.rank();
  bool fits = mask.rank() >= 1 && off >= 0;
  for (int i = 0; fits && i < mask.rank(); ++i) fits = mask.size(i) == 1 || mask.size(i) == x.size(off + i);
  LNF_EXPECTS(fits,
              "{}: mask has shape {} which does not broadcast to x's shape {} (aligned to the trailing dims, "
              "the mask's rank must be 1..{} and each mask dim must equal x's or be 1)",
              op, mask.shape(), x.shape(), x.rank());
  LNF_EXPECTS(mask.size(-1) == 1 || mask.stride(-1) == 1,
              "{}: mask (shape {}) must have stride 1 in its last dim, got {}", op, mask.shape(),
              mask.stride(-1));
  for (int i = 0; i < mask.rank(); ++i)
    LNF_EXPECTS(mask.strides()[i] >= 0, "{}: mask (shape {}) has a negative stride in dim {}", op,
                mask.shape(), i);
  LNF_EXPECTS(!sm::overlap(TensorView<B, float const>(y), mask), "{}: mask (shape {}) overlaps y (shape {})",
              op, mask.shape(), y.shape());
  l.mask_col_stride = mask.size(-1) == 1 ? 0 : 1;
  for (int i = 0; i < l.lead_rank; ++i) {
    int const mi = i - off;  // the mask dim aligned with x's dim i, if any
    l.mask_lead_stride[i] = (mi < 0 || mask.size(mi) == 1) ? 0 : mask.strides()[mi];
  }
  return l;
}

template <class B>
SoftmaxLayout softmax_backward(View<B> dx, CView<B> dy, CView<B> y, float scale) {
  namespace sm = ::lnformer::ops::detail::softmax;
  char const* op = "softmax_backward";
  sm::check_rows<B>(op, "y", y);
  LNF_EXPECTS(dy.shape() == y.shape() && dx.shape() == y.shape(),
              "{}: dx has shape {}, dy has shape {} and y has shape {}; all must match", op, dx.shape(),
              dy.shape(), y.shape());
  LNF_EXPECTS(dx.is_contiguous() && dy.is_contiguous(), "{}: dx and dy (shape {}) must be contiguous", op,
              y.shape());
  LNF_EXPECTS(!sm::partial_overlap(dx, dy) && !sm::partial_overlap(dx, y),
              "{}: dx (shape {}) partially overlaps dy or y; dx must be dy, y, or disjoint from both", op,
              dx.shape());
  LNF_EXPECTS_AS(ValueError, std::isfinite(scale), "{}: scale = {} must be finite", op, scale);
  SoftmaxLayout l;
  l.cols = y.size(-1);
  l.rows = l.cols == 0 ? 0 : y.numel() / l.cols;
  l.lead_rank = y.rank() - 1;
  for (int i = 0; i < l.lead_rank; ++i) l.lead_size[i] = y.size(i);
  return l;
}

}  // namespace check
}  // namespace lnformer::ops
