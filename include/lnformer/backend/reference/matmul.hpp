#pragma once
// Reference GEMMs: per batch index, an Eigen product of the operands read in place through their
// strides (Eigen::Map with run-time strides), in double: float products are exact in double, so only
// the sums round, far below float precision. Eigen rather than a triple loop because it states each
// op as the formula of its contract and keeps the oracle fast enough for the tests' larger shapes.
// Contract in ops/matmul.hpp.

#include <lnformer/backend/reference/reference.hpp>
#include <lnformer/ops/matmul.hpp>

#include <Eigen/Core>

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

/// Eigen's view of a row-major float matrix with arbitrary (non-negative) element strides.
using FloatMap = Eigen::Map<Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor> const, Eigen::Unaligned,
                            Eigen::Stride<Eigen::Dynamic, Eigen::Dynamic>>;
using FloatMapMut = Eigen::Map<Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>, Eigen::Unaligned,
                               Eigen::Stride<Eigen::Dynamic, Eigen::Dynamic>>;
using DoubleMatrix = Eigen::Matrix<double, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
using DoubleMap = Eigen::Map<DoubleMatrix>;

/// Eigen's strides for a [rows, cols] matrix with element strides rs, cs (a stride of a size-1 dim
/// addresses nothing; Eigen is given 1 there).
inline Eigen::Stride<Eigen::Dynamic, Eigen::Dynamic> stride_of(std::int64_t rows, std::int64_t cols, std::int64_t rs,
                                                               std::int64_t cs) {
  return {rows == 1 ? 1 : rs, cols == 1 ? 1 : cs};
}

/// The [rows, cols] matrix at batch index (i0, i1) of m, read through its strides.
inline FloatMap matrix(float const* data, Mat4 const& m, std::int64_t i0, std::int64_t i1) {
  return {data + m.at(i0, i1, 0, 0), m.d[2], m.d[3], stride_of(m.d[2], m.d[3], m.s[2], m.s[3])};
}
inline FloatMapMut matrix(float* data, Mat4 const& m, std::int64_t i0, std::int64_t i1) {
  return {data + m.at(i0, i1, 0, 0), m.d[2], m.d[3], stride_of(m.d[2], m.d[3], m.s[2], m.s[3])};
}
/// A rank-2 view as an Eigen matrix.
inline FloatMap matrix2(CView<Reference> v) {
  return {v.data(), v.size(0), v.size(1), stride_of(v.size(0), v.size(1), v.stride(0), v.stride(1))};
}
inline FloatMapMut matrix2(View<Reference> v) {
  return {v.data(), v.size(0), v.size(1), stride_of(v.size(0), v.size(1), v.stride(0), v.stride(1))};
}

}  // namespace lnformer::reference::detail::gemm

namespace lnformer::ops {

inline void matmul(Reference, View<Reference> c, CView<Reference> a, CView<Reference> b, float alpha = 1.f,
                   float beta = 0.f) {
  check::matmul<Reference>(c, a, b, alpha, beta);
  namespace rg = reference::detail::gemm;
  rg::Mat4 const A(a), Bm(b), C(c);
  for (std::int64_t i0 = 0; i0 < C.d[0]; ++i0)
    for (std::int64_t i1 = 0; i1 < C.d[1]; ++i1) {
      // [m, k] @ [k, n] in double: float products are exact in double, so only the sums round.
      rg::DoubleMatrix const s = rg::matrix(a.data(), A, i0, i1).cast<double>() * rg::matrix(b.data(), Bm, i0, i1).cast<double>();
      auto out = rg::matrix(c.data(), C, i0, i1);
      if (beta == 0.f)
        out = (static_cast<double>(alpha) * s).cast<float>();
      else
        out = (static_cast<double>(alpha) * s + static_cast<double>(beta) * out.cast<double>()).cast<float>();
    }
}

inline void matmul_backward(Reference, View<Reference> da, View<Reference> db, CView<Reference> dc,
                            CView<Reference> a, CView<Reference> b, float alpha = 1.f) {
  check::matmul_backward<Reference>(da, db, dc, a, b, alpha);
  namespace rg = reference::detail::gemm;
  rg::Mat4 const A(a), Bm(b), DC(dc);
  std::int64_t const m = DC.d[2], n = DC.d[3], k = A.d[3];
  // Sums over every batch index of dc, so a broadcast operand's gradient collects all its uses.
  std::vector<double> ga(static_cast<std::size_t>(da.empty() ? 0 : a.numel()));
  std::vector<double> gb(static_cast<std::size_t>(db.empty() ? 0 : b.numel()));
  for (std::int64_t i0 = 0; i0 < DC.d[0]; ++i0)
    for (std::int64_t i1 = 0; i1 < DC.d[1]; ++i1) {
      auto const dcm = rg::matrix(dc.data(), DC, i0, i1).cast<double>();
      if (!ga.empty())  // da [m, k] += dc [m, n] @ b^T [n, k]
        rg::DoubleMap(ga.data() + A.dense(i0, i1, 0, 0), m, k).noalias() +=
            dcm * rg::matrix(b.data(), Bm, i0, i1).cast<double>().transpose();
      if (!gb.empty())  // db [k, n] += a^T [k, m] @ dc [m, n]
        rg::DoubleMap(gb.data() + Bm.dense(i0, i1, 0, 0), k, n).noalias() +=
            rg::matrix(a.data(), A, i0, i1).cast<double>().transpose() * dcm;
    }
  auto write = [alpha](View<Reference> g, std::vector<double> const& acc) {
    rg::Mat4 const G(g);
    for (std::int64_t i0 = 0; i0 < G.d[0]; ++i0)
      for (std::int64_t i1 = 0; i1 < G.d[1]; ++i1)
        rg::matrix(g.data(), G, i0, i1) =
            (static_cast<double>(alpha) * rg::DoubleMap(const_cast<double*>(acc.data()) + G.dense(i0, i1, 0, 0),
                                                        G.d[2], G.d[3]))
                .cast<float>();
  };
  if (!ga.empty()) write(da, ga);
  if (!gb.empty()) write(db, gb);
}

inline void linear_forward(Reference, View<Reference> y, CView<Reference> x, CView<Reference> w,
                           CView<Reference> bias, Epilogue ep = Epilogue::none) {
  check::linear_forward<Reference>(y, x, w, bias);
  namespace rg = reference::detail::gemm;
  auto const x2 = detail::gemm::rows_of(x);
  auto const y2 = detail::gemm::rows_of(y);
  // y [N, out] = x [N, in] @ w^T [in, out] (+ bias), in double
  rg::DoubleMatrix s = rg::matrix2(x2).cast<double>() * rg::matrix2(w).cast<double>().transpose();
  if (!bias.empty())
    for (std::int64_t o = 0; o < w.size(0); ++o) s.col(o).array() += static_cast<double>(bias.data()[o * bias.stride(0)]);
  auto out = rg::matrix2(y2);
  for (std::int64_t i = 0; i < s.rows(); ++i)
    for (std::int64_t o = 0; o < s.cols(); ++o) {
      auto const v = static_cast<float>(s(i, o));
      out(i, o) = ep == Epilogue::relu && v <= 0.f ? 0.f : v;  // NaN propagates
    }
}

inline void linear_backward(Reference, View<Reference> dx, View<Reference> dw, View<Reference> dbias,
                            CView<Reference> dy, CView<Reference> x, CView<Reference> w) {
  check::linear_backward<Reference>(dx, dw, dbias, dy, x, w);
  namespace rg = reference::detail::gemm;
  auto const x2 = detail::gemm::rows_of(x);
  auto const dy2 = detail::gemm::rows_of(dy);
  rg::DoubleMatrix const DY = rg::matrix2(dy2).cast<double>();  // [N, out]
  if (!dx.empty())                                               // dx [N, in] = dy @ w (assign)
    rg::matrix2(detail::gemm::rows_of(dx)) = (DY * rg::matrix2(w).cast<double>()).cast<float>();
  if (!dw.empty()) {  // dw [out, in] += dy^T @ x (accumulate)
    auto g = rg::matrix2(dw);
    g = (g.cast<double>() + DY.transpose() * rg::matrix2(x2).cast<double>()).cast<float>();
  }
  if (!dbias.empty()) {  // dbias [out] += column sums of dy (accumulate)
    Eigen::VectorXd const sums = DY.colwise().sum().transpose();
    for (std::int64_t o = 0; o < DY.cols(); ++o) {
      float& g = dbias.data()[o * dbias.stride(0)];
      g = static_cast<float>(g + sums(o));
    }
  }
}

}  // namespace lnformer::ops
