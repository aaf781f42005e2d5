#pragma once
// Element-wise arithmetic, residual connections, copies and norms. All views contiguous unless stated;
// "same shape" means equal shapes (no broadcasting except where stated).
//
//   add(B, View y, CView a, CView b)                      y = a + b; y may alias a or b
//   scale_add(B, View y, CView x, CView w, float alpha, CView f)
//     y = alpha * x ⊙ w + f                               x, f, y: [..., d]; y may alias x or f
//     w: empty (absent, = 1), [d] (broadcast over rows) or [1] (a scalar)
//     The residual connections: DeepNorm y = alpha * x + f (w empty); Admin y = x ⊙ w + f(x);
//     ReZero y = x + r * f(x) = scale_add(y, f(x), r, 1, x) (roles of x and f swapped, r: [1]).
//   scale_add_backward(B, View dx, View dw, CView dy, CView x, CView w, float alpha)
//     dx  = alpha * dy ⊙ w                    (ASSIGN; empty = not wanted; may alias dy)
//     dw += alpha * sum over rows of dy ⊙ x   (ACCUMULATE, reduced to w's shape [d] or [1]; empty =
//                                              not wanted; needs w and x)
//     The gradient of f is dy itself: that is the caller's business.
//   scale(B, View y, float s)                             y *= s (in place)
//   axpy(B, View y, float a, CView x)                     y += a * x; same shape
//   fill(B, View y, float v)                              y = v
//   copy(B, View y, CView x)                              y = x; same shape; x may have ANY strides
//     (a transposed or permuted view), y contiguous; y must not overlap x. Makes a permuted view
//     contiguous, e.g. [B, H, T, dh] viewed as [B, T, H, dh].
//   sum_squares(B, CView x) -> double                     sum of x², accumulated in double
//   global_l2_norm(B, span<CView const> xs) -> double     sqrt(sum over all xs of sum_squares)
//     A NaN or infinite element makes both results non-finite, so divergence is detectable.
//     An empty (absent) view contributes 0.

#include <lnformer/core/error.hpp>
#include <lnformer/core/tensor.hpp>

#include <fmt/format.h>

#include <cstdint>
#include <span>
#include <string_view>

namespace lnformer::ops::detail {

/// The layout a copy from x walks, outermost dimension first: x's dimensions with the size-1 ones
/// dropped and each one merged into the one outside it when that one steps over all of it (stride =
/// inner stride * inner size), so a permuted view such as [B, H, T, dh] -> [B, T, H, dh] becomes
/// rows of dh contiguous elements. Writes the merged sizes and strides to size[0, r) and stride[0, r)
/// and returns r: 0 when x is one element, 1 with stride 1 when x is one contiguous run.
template <class B, class T>
int merge_dims(TensorView<B, T> const& x, std::span<std::int64_t, kMaxRank> size,
               std::span<std::int64_t, kMaxRank> stride) {
  int r = 0;
  for (int i = 0; i < x.rank(); ++i) {
    if (x.size(i) == 1) continue;
    if (r > 0 && stride[r - 1] == x.strides()[i] * x.size(i)) {  // dimension r-1 steps over all of i
      size[r - 1] *= x.size(i);
      stride[r - 1] = x.strides()[i];
    } else {
      size[r] = x.size(i);
      stride[r] = x.strides()[i];
      ++r;
    }
  }
  return r;
}

}  // namespace lnformer::ops::detail

namespace lnformer::ops::check {

// Named per family so that other families' check helpers cannot collide with these.
namespace elementwise_detail {
template <class B, class T>
void contiguous(std::string_view op, std::string_view arg, TensorView<B, T> v) {
  LNF_EXPECTS(v.is_contiguous(), "{}: {} (shape {}, strides [{}]) must be contiguous", op, arg, v.shape(),
              fmt::join(v.strides().begin(), v.strides().begin() + v.rank(), ", "));
}
template <class B, class T1, class T2>
void same_shape(std::string_view op, std::string_view arg1, TensorView<B, T1> v1, std::string_view arg2,
                TensorView<B, T2> v2) {
  LNF_EXPECTS(v1.shape() == v2.shape(), "{}: {} has shape {} but {} has shape {}; they must match", op, arg1,
              v1.shape(), arg2, v2.shape());
}
/// w is absent, [1] or [d] with d the last dimension of x.
template <class B>
void residual_gate(std::string_view op, CView<B> x, std::string_view x_name, CView<B> w) {
  if (w.empty()) return;
  bool const scalar = w.shape() == Shape{1};
  bool const per_feature = x.rank() >= 1 && w.shape() == Shape{x.size(-1)};
  LNF_EXPECTS(scalar || per_feature,
              "{}: {} has shape {} but w has shape {}; w must be [{}] (the last dim of {}) or [1]",
              op, x_name, x.shape(), w.shape(), x.rank() >= 1 ? x.size(-1) : 1, x_name);
  contiguous(op, "w", w);
}
}  // namespace elementwise_detail

template <class B>
void add(View<B> y, CView<B> a, CView<B> b) {
  elementwise_detail::same_shape<B>("add", "a", a, "b", b);
  elementwise_detail::same_shape<B>("add", "y", y, "a", a);
  elementwise_detail::contiguous<B>("add", "y", y);
  elementwise_detail::contiguous<B>("add", "a", a);
  elementwise_detail::contiguous<B>("add", "b", b);
}

template <class B>
void scale_add(View<B> y, CView<B> x, CView<B> w, CView<B> f) {
  elementwise_detail::same_shape<B>("scale_add", "f", f, "x", x);
  elementwise_detail::same_shape<B>("scale_add", "y", y, "x", x);
  elementwise_detail::residual_gate<B>("scale_add", x, "x", w);
  elementwise_detail::contiguous<B>("scale_add", "y", y);
  elementwise_detail::contiguous<B>("scale_add", "x", x);
  elementwise_detail::contiguous<B>("scale_add", "f", f);
}

template <class B>
void scale_add_backward(View<B> dx, View<B> dw, CView<B> dy, CView<B> x, CView<B> w) {
  elementwise_detail::contiguous<B>("scale_add_backward", "dy", dy);
  elementwise_detail::residual_gate<B>("scale_add_backward", dy, "dy", w);
  if (!dx.empty()) {
    elementwise_detail::same_shape<B>("scale_add_backward", "dx", dx, "dy", dy);
    elementwise_detail::contiguous<B>("scale_add_backward", "dx", dx);
  }
  if (!dw.empty()) {
    LNF_EXPECTS(!w.empty(), "scale_add_backward: dw has shape {} but w is absent; dw needs w", dw.shape());
    elementwise_detail::same_shape<B>("scale_add_backward", "dw", dw, "w", w);
    elementwise_detail::same_shape<B>("scale_add_backward", "x", x, "dy", dy);
    elementwise_detail::contiguous<B>("scale_add_backward", "dw", dw);
    elementwise_detail::contiguous<B>("scale_add_backward", "x", x);
  }
}

template <class B>
void scale(View<B> y) {
  elementwise_detail::contiguous<B>("scale", "y", y);
}

template <class B>
void axpy(View<B> y, CView<B> x) {
  elementwise_detail::same_shape<B>("axpy", "y", y, "x", x);
  elementwise_detail::contiguous<B>("axpy", "y", y);
  elementwise_detail::contiguous<B>("axpy", "x", x);
}

template <class B>
void fill(View<B> y) {
  elementwise_detail::contiguous<B>("fill", "y", y);
}

template <class B>
void copy(View<B> y, CView<B> x) {
  elementwise_detail::same_shape<B>("copy", "y", y, "x", x);
  elementwise_detail::contiguous<B>("copy", "y", y);
}

template <class B>
void sum_squares(CView<B> x) {
  elementwise_detail::contiguous<B>("sum_squares", "x", x);
}

}  // namespace lnformer::ops::check
