#pragma once
// Reference GEMMs: each 2-D slice an Eigen product formed in double (backend/reference/eigen.hpp), over
// explicit strides and broadcast batch dims. Contract in ops/matmul.hpp.

#include <lnformer/backend/reference/eigen.hpp>
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
  /// Slice (i0, i1) as a matrix (no copy).
  template <class T>
  [[nodiscard]] auto slice(T* p, std::int64_t i0, std::int64_t i1) const {
    return eigen::matrix(p + at(i0, i1, 0, 0), d[2], d[3], s[2], s[3]);
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
  for (std::int64_t i0 = 0; i0 < C.d[0]; ++i0)
    for (std::int64_t i1 = 0; i1 < C.d[1]; ++i1) {
      auto out = C.slice(c.data(), i0, i1);
      reference::detail::eigen::MatD const s =
          static_cast<double>(alpha) * (A.slice(a.data(), i0, i1).cast<double>() * Bm.slice(b.data(), i0, i1).cast<double>());
      if (beta == 0.f)
        out = s.cast<float>();  // c is not read: NaN there does not survive beta = 0
      else
        out = (s + static_cast<double>(beta) * out.cast<double>()).cast<float>();
    }
}

inline void matmul_backward(Reference, View<Reference> da, View<Reference> db, CView<Reference> dc,
                            CView<Reference> a, CView<Reference> b, float alpha = 1.f) {
  check::matmul_backward<Reference>(da, db, dc, a, b, alpha);
  using reference::detail::gemm::Mat4;
  using reference::detail::eigen::MatD;
  Mat4 const A(a), Bm(b), DC(dc);
  // Sums over every batch index of dc, so a broadcast operand's gradient collects all its uses: one
  // dense double accumulator per operand, a broadcast slice shared by the batch indices it serves.
  std::vector<double> ga(static_cast<std::size_t>(da.empty() ? 0 : a.numel()));
  std::vector<double> gb(static_cast<std::size_t>(db.empty() ? 0 : b.numel()));
  auto acc = [](std::vector<double>& g, Mat4 const& m, std::int64_t i0, std::int64_t i1) {
    return Eigen::Map<MatD>(g.data() + m.dense(i0, i1, 0, 0), m.d[2], m.d[3]);
  };
  for (std::int64_t i0 = 0; i0 < DC.d[0]; ++i0)
    for (std::int64_t i1 = 0; i1 < DC.d[1]; ++i1) {
      MatD const g = DC.slice(dc.data(), i0, i1).cast<double>();
      if (!ga.empty()) acc(ga, A, i0, i1).noalias() += g * Bm.slice(b.data(), i0, i1).cast<double>().transpose();
      if (!gb.empty()) acc(gb, Bm, i0, i1).noalias() += A.slice(a.data(), i0, i1).cast<double>().transpose() * g;
    }
  auto write = [alpha, &acc](View<Reference> g, std::vector<double>& sum) {
    Mat4 const G(g);
    for (std::int64_t i0 = 0; i0 < G.d[0]; ++i0)
      for (std::int64_t i1 = 0; i1 < G.d[1]; ++i1)
        G.slice(g.data(), i0, i1) = (static_cast<double>(alpha) * acc(sum, G, i0, i1)).cast<float>();  // assign
  };
  if (!ga.empty()) write(da, ga);
  if (!gb.empty()) write(db, gb);
}

inline void linear_forward(Reference, View<Reference> y, CView<Reference> x, CView<Reference> w,
                           CView<Reference> bias, Epilogue ep = Epilogue::none) {
  check::linear_forward<Reference>(y, x, w, bias);
  namespace eg = reference::detail::eigen;
  auto Y = eg::matrix(detail::gemm::rows_of(y));
  eg::MatD s = eg::matrix(detail::gemm::rows_of(x)).cast<double>() * eg::matrix(w).cast<double>().transpose();
  if (!bias.empty())
    s.rowwise() += eg::matrix(bias.data(), 1, bias.size(0), 0, bias.stride(0)).cast<double>().row(0);
  Y = s.cast<float>();
  if (ep == Epilogue::relu) Y = Y.unaryExpr([](float v) { return v <= 0.f ? 0.f : v; });  // NaN propagates
}

inline void linear_backward(Reference, View<Reference> dx, View<Reference> dw, View<Reference> dbias,
                            CView<Reference> dy, CView<Reference> x, CView<Reference> w) {
  check::linear_backward<Reference>(dx, dw, dbias, dy, x, w);
  namespace eg = reference::detail::eigen;
  eg::MatD const DY = eg::matrix(detail::gemm::rows_of(dy)).cast<double>();
  if (!dx.empty())  // assign
    eg::matrix(detail::gemm::rows_of(dx)) = (DY * eg::matrix(w).cast<double>()).cast<float>();
  if (!dw.empty()) {  // accumulate
    auto DW = eg::matrix(dw);
    DW = (DW.cast<double>() + DY.transpose() * eg::matrix(detail::gemm::rows_of(x)).cast<double>()).cast<float>();
  }
  if (!dbias.empty()) {  // accumulate
    auto DB = eg::matrix(dbias.data(), 1, dbias.size(0), 0, dbias.stride(0));
    DB = (DB.cast<double>() + DY.colwise().sum()).cast<float>();
  }
}

}  // namespace lnformer::ops
