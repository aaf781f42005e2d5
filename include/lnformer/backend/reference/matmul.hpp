#pragma once
// Reference GEMMs: the triple loop over explicit strides, summing in double. Contract in ops/matmul.hpp.

#include <lnformer/backend/reference/reference.hpp>
#include <lnformer/ops/matmul.hpp>

#include <array>
#include <cstdint>
#include <vector>

namespace lnformer::reference::detail::gemm {

/// A rank 2..4 view seen as rank 4 [d0, d1, rows, cols]: missing leading dims have size 1.
struct Mat4 {
  std::array<std::int64_t, 4> d{1, 1, 1, 1}, s{0, 0, 0, 0};

  template <class T>
  explicit Mat4(TensorView<Reference, T> const& v) {
    int const off = 4 - v.rank();
    for (int i = 0; i < v.rank(); ++i) d[off + i] = v.size(i), s[off + i] = v.strides()[i];
  }
  /// Offset of element (i0, i1, r, c); a size-1 batch dim is broadcast (index ignored).
  [[nodiscard]] std::int64_t at(std::int64_t i0, std::int64_t i1, std::int64_t r, std::int64_t c) const {
    return (d[0] == 1 ? 0 : i0) * s[0] + (d[1] == 1 ? 0 : i1) * s[1] + r * s[2] + c * s[3];
  }
  /// Row-major position of the same element in a dense tensor of this shape.
  [[nodiscard]] std::int64_t dense(std::int64_t i0, std::int64_t i1, std::int64_t r, std::int64_t c) const {
    return (((d[0] == 1 ? 0 : i0) * d[1] + (d[1] == 1 ? 0 : i1)) * d[2] + r) * d[3] + c;
  }
};

}  // namespace lnformer::reference::detail::gemm

namespace lnformer::ops {

inline void matmul(Reference, View<Reference> c, CView<Reference> a, CView<Reference> b, float alpha = 1.f,
                   float beta = 0.f) {
  check::matmul<Reference>(c, a, b, alpha, beta);
  using reference::detail::gemm::Mat4;
  Mat4 const A(a), Bm(b), C(c);
  std::int64_t const m = C.d[2], n = C.d[3], k = A.d[3];
  for (std::int64_t i0 = 0; i0 < C.d[0]; ++i0)
    for (std::int64_t i1 = 0; i1 < C.d[1]; ++i1)
      for (std::int64_t i = 0; i < m; ++i)
        for (std::int64_t j = 0; j < n; ++j) {
          double s = 0;
          for (std::int64_t p = 0; p < k; ++p)
            s += static_cast<double>(a.data()[A.at(i0, i1, i, p)]) * b.data()[Bm.at(i0, i1, p, j)];
          float& out = c.data()[C.at(i0, i1, i, j)];
          out = static_cast<float>(beta == 0.f ? alpha * s : alpha * s + static_cast<double>(beta) * out);
        }
}

inline void matmul_backward(Reference, View<Reference> da, View<Reference> db, CView<Reference> dc,
                            CView<Reference> a, CView<Reference> b, float alpha = 1.f) {
  check::matmul_backward<Reference>(da, db, dc, a, b, alpha);
  using reference::detail::gemm::Mat4;
  Mat4 const A(a), Bm(b), DC(dc);
  std::int64_t const m = DC.d[2], n = DC.d[3], k = A.d[3];
  // Sums over every batch index of dc, so a broadcast operand's gradient collects all its uses.
  std::vector<double> ga(static_cast<std::size_t>(da.empty() ? 0 : a.numel()));
  std::vector<double> gb(static_cast<std::size_t>(db.empty() ? 0 : b.numel()));
  for (std::int64_t i0 = 0; i0 < DC.d[0]; ++i0)
    for (std::int64_t i1 = 0; i1 < DC.d[1]; ++i1) {
      if (!ga.empty())
        for (std::int64_t i = 0; i < m; ++i)
          for (std::int64_t p = 0; p < k; ++p) {
            double s = 0;
            for (std::int64_t j = 0; j < n; ++j)
              s += static_cast<double>(dc.data()[DC.at(i0, i1, i, j)]) * b.data()[Bm.at(i0, i1, p, j)];
            ga[A.dense(i0, i1, i, p)] += s;
          }
      if (!gb.empty())
        for (std::int64_t p = 0; p < k; ++p)
          for (std::int64_t j = 0; j < n; ++j) {
            double s = 0;
            for (std::int64_t i = 0; i < m; ++i)
              s += static_cast<double>(a.data()[A.at(i0, i1, i, p)]) * dc.data()[DC.at(i0, i1, i, j)];
            gb[Bm.dense(i0, i1, p, j)] += s;
          }
    }
  auto write = [alpha](View<Reference> g, std::vector<double> const& acc) {
    Mat4 const G(g);
    for (std::int64_t i0 = 0; i0 < G.d[0]; ++i0)
      for (std::int64_t i1 = 0; i1 < G.d[1]; ++i1)
        for (std::int64_t r = 0; r < G.d[2]; ++r)
          for (std::int64_t c = 0; c < G.d[3]; ++c)
            g.data()[G.at(i0, i1, r, c)] = static_cast<float>(alpha * acc[G.dense(i0, i1, r, c)]);
  };
  if (!ga.empty()) write(da, ga);
  if (!gb.empty()) write(db, gb);
}

inline void linear_forward(Reference, View<Reference> y, CView<Reference> x, CView<Reference> w,
                           CView<Reference> bias, Epilogue ep = Epilogue::none) {
  check::linear_forward<Reference>(y, x, w, bias);
  auto const x2 = detail::gemm::rows_of(x);
  auto const y2 = detail::gemm::rows_of(y);
  for (std::int64_t i = 0; i < x2.size(0); ++i)
    for (std::int64_t o = 0; o < w.size(0); ++o) {
      double s = bias.empty() ? 0.0 : bias.data()[o * bias.stride(0)];
      for (std::int64_t p = 0; p < w.size(1); ++p)
        s += static_cast<double>(x2.data()[i * x2.stride(0) + p * x2.stride(1)]) *
             w.data()[o * w.stride(0) + p * w.stride(1)];
      auto const v = static_cast<float>(s);
      y2.data()[i * y2.stride(0) + o * y2.stride(1)] = ep == Epilogue::relu && v <= 0.f ? 0.f : v;  // NaN propagates
    }
}

inline void linear_backward(Reference, View<Reference> dx, View<Reference> dw, View<Reference> dbias,
                            CView<Reference> dy, CView<Reference> x, CView<Reference> w) {
  check::linear_backward<Reference>(dx, dw, dbias, dy, x, w);
  auto const x2 = detail::gemm::rows_of(x);
  auto const dy2 = detail::gemm::rows_of(dy);
  std::int64_t const rows = x2.size(0), in = w.size(1), out = w.size(0);
  auto DY = [&](std::int64_t i, std::int64_t o) -> double {
    return dy2.data()[i * dy2.stride(0) + o * dy2.stride(1)];
  };
  auto X = [&](std::int64_t i, std::int64_t p) -> double {
    return x2.data()[i * x2.stride(0) + p * x2.stride(1)];
  };
  auto W = [&](std::int64_t o, std::int64_t p) -> double {
    return w.data()[o * w.stride(0) + p * w.stride(1)];
  };
  if (!dx.empty()) {
    auto const dx2 = detail::gemm::rows_of(dx);
    for (std::int64_t i = 0; i < rows; ++i)
      for (std::int64_t p = 0; p < in; ++p) {
        double s = 0;
        for (std::int64_t o = 0; o < out; ++o) s += DY(i, o) * W(o, p);
        dx2.data()[i * dx2.stride(0) + p * dx2.stride(1)] = static_cast<float>(s);  // assign
      }
  }
  if (!dw.empty())
    for (std::int64_t o = 0; o < out; ++o)
      for (std::int64_t p = 0; p < in; ++p) {
        double s = 0;
        for (std::int64_t i = 0; i < rows; ++i) s += DY(i, o) * X(i, p);
        float& g = dw.data()[o * dw.stride(0) + p * dw.stride(1)];
        g = static_cast<float>(g + s);  // accumulate
      }
  if (!dbias.empty())
    for (std::int64_t o = 0; o < out; ++o) {
      double s = 0;
      for (std::int64_t i = 0; i < rows; ++i) s += DY(i, o);
      float& g = dbias.data()[o * dbias.stride(0)];
      g = static_cast<float>(g + s);  // accumulate
    }
}

}  // namespace lnformer::ops
