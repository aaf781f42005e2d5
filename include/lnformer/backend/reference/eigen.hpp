#pragma once
// Eigen for the reference backend: strided host views as Eigen matrices (no copy), products formed in
// double. The oracle stays obvious (`C = alpha * A * B + beta * C` reads as the contract does) and is
// no longer a triple loop: the tests that compare every backend against it at model size spend their
// time in the backend under test, not in the oracle.
//
// The reference backend is host code, also in .cu units (the GPU tests compare against it). Eigen's
// own CUDA support is switched off for that include (EIGEN_NO_CUDA), which nvcc would otherwise
// compile with dozens of host/device warnings; a .cu unit that wants Eigen in device code includes
// Eigen before lnformer, and then this header changes nothing.

#if defined(__CUDACC__) && !defined(EIGEN_CORE_H) && !defined(EIGEN_NO_CUDA)
#define EIGEN_NO_CUDA
#define LNF_UNDEF_EIGEN_NO_CUDA
#endif
#include <Eigen/Core>
#ifdef LNF_UNDEF_EIGEN_NO_CUDA
#undef EIGEN_NO_CUDA
#undef LNF_UNDEF_EIGEN_NO_CUDA
#endif

#include <lnformer/backend/reference/reference.hpp>

#include <cstdint>

namespace lnformer::reference::detail::eigen {

using Strides = Eigen::Stride<Eigen::Dynamic, Eigen::Dynamic>;
using MatF = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
using MatD = Eigen::Matrix<double, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
using Map = Eigen::Map<MatF, Eigen::Unaligned, Strides>;
using CMap = Eigen::Map<MatF const, Eigen::Unaligned, Strides>;

/// rows x cols at p, element (r, c) at p[r * row_stride + c * col_stride].
inline Map matrix(float* p, std::int64_t rows, std::int64_t cols, std::int64_t row_stride, std::int64_t col_stride) {
  return {p, rows, cols, Strides(row_stride, col_stride)};
}
inline CMap matrix(float const* p, std::int64_t rows, std::int64_t cols, std::int64_t row_stride,
                   std::int64_t col_stride) {
  return {p, rows, cols, Strides(row_stride, col_stride)};
}
/// A rank-2 view as a matrix.
template <class T>
auto matrix(TensorView<Reference, T> v) {
  return matrix(v.data(), v.size(0), v.size(1), v.stride(0), v.stride(1));
}

}  // namespace lnformer::reference::detail::eigen
