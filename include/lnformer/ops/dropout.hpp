#pragma once
// Dropout with a counter-based mask: nothing is stored between forward and backward, the mask is
// regenerated from the RngKey (seed, stream, offset), identically on every backend.
//
//   dropout_forward(B, View y, CView x, float p, RngKey key)
//     y[i] = key.uniform(i) < p ? 0 : x[i] / (1 - p)         y, x: same shape; y may alias x
//   dropout_backward(B, View dx, CView dy, float p, RngKey key)
//     dx[i] = key.uniform(i) < p ? 0 : dy[i] / (1 - p)  (ASSIGN)   dx, dy: same shape; dx may alias dy
//   dropout_add(B, View y, CView x, CView h, float p, RngKey key)
//     y[i] = x[i] + (key.uniform(i) < p ? 0 : h[i] / (1 - p))           y, x, h: same shape; y may alias
//     x or h. The residual connection x + drop(h) in one pass: equal, bit for bit, to dropout_forward
//     into a buffer and an add. Its gradient is dy for x and dropout_backward(dy) for h.
//
// i is the flat (row-major) index into the contiguous tensor. p must be in [0, 1) (ValueError
// otherwise); p == 0 copies. The caller advances key.offset (or uses a new stream) per use so
// that different calls draw different masks; forward and backward of one call use the same key.

#include <lnformer/core/error.hpp>
#include <lnformer/core/rng.hpp>
#include <lnformer/core/tensor.hpp>

#include <string_view>

namespace lnformer::ops::check {

namespace dropout_detail {
inline void dropout_probability(std::string_view op, float p) {
  // Written so that NaN fails too.
  LNF_EXPECTS_AS(ValueError, p >= 0.f && p < 1.f, "{}: dropout probability p = {} must be in [0, 1)", op, p);
}
}  // namespace dropout_detail

template <class B>
void dropout_forward(View<B> y, CView<B> x, float p) {
  LNF_EXPECTS(y.shape() == x.shape(), "dropout_forward: y has shape {} but x has shape {}; they must match",
              y.shape(), x.shape());
  LNF_EXPECTS(y.is_contiguous() && x.is_contiguous(),
              "dropout_forward: y (shape {}) and x (shape {}) must be contiguous", y.shape(), x.shape());
  dropout_detail::dropout_probability("dropout_forward", p);
}

template <class B>
void dropout_backward(View<B> dx, CView<B> dy, float p) {
  LNF_EXPECTS(dx.shape() == dy.shape(),
              "dropout_backward: dx has shape {} but dy has shape {}; they must match", dx.shape(),
              dy.shape());
  LNF_EXPECTS(dx.is_contiguous() && dy.is_contiguous(),
              "dropout_backward: dx (shape {}) and dy (shape {}) must be contiguous", dx.shape(), dy.shape());
  dropout_detail::dropout_probability("dropout_backward", p);
}

template <class B>
void dropout_add(View<B> y, CView<B> x, CView<B> h, float p) {
  LNF_EXPECTS(y.shape() == x.shape() && h.shape() == x.shape(),
              "dropout_add: y has shape {}, x {} and h {}; they must match", y.shape(), x.shape(), h.shape());
  LNF_EXPECTS(y.is_contiguous() && x.is_contiguous() && h.is_contiguous(),
              "dropout_add: y (shape {}), x (shape {}) and h (shape {}) must be contiguous", y.shape(), x.shape(),
              h.shape());
  dropout_detail::dropout_probability("dropout_add", p);
}

}  // namespace lnformer::ops::check
