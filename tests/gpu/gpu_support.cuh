#pragma once
// GPU test helpers. Every GPU test case is declared with LNF_GPU_TEST_CASE: without a usable CUDA
// device it is skipped (doctest reports it as skipped) and the reason is printed once, so a CI
// machine without a GPU builds and runs the GPU tests and says why they did not run.
//
// GPU results are compared with the Reference backend (plain loops in double, the oracle the CPU
// backend is tested against too): f32 ops to a relative error of 1e-4.

#include <lnformer/backend/cuda/gpu.cuh>
#include <lnformer/backend/reference/all.hpp>

#include "support.hpp"

#include <doctest/doctest.h>
#include <fmt/format.h>

#include <cstdio>
#include <span>
#include <string>
#include <vector>

namespace lnformer::test {

/// True (and says why, once, on stderr) when there is no CUDA device to run on.
inline bool gpu_missing() {
  static bool const missing = [] {
    std::string const why = cuda::device_unavailable_reason();
    if (!why.empty()) std::fprintf(stderr, "lnformer GPU tests SKIPPED: %s\n", why.c_str());
    return !why.empty();
  }();
  return missing;
}

/// A Gpu tensor holding the values of a host-accessible one (Reference, Cpu), and back.
template <class From, class T>
Tensor<Gpu, T> to_gpu(Tensor<From, T> const& t) {
  auto const h = t.to_host();
  return Tensor<Gpu, T>(t.shape(), std::span<T const>(h));
}
template <class T>
Tensor<Reference, T> to_reference(Tensor<Gpu, T> const& t) {
  auto const h = t.to_host();
  return Tensor<Reference, T>(t.shape(), std::span<T const>(h));
}

/// CHECK that a Gpu result agrees with the reference one (|a - b| <= atol + rtol |b| everywhere),
/// naming the first mismatch.
template <class T>
void check_gpu_close(Tensor<Gpu, T> const& gpu, Tensor<Reference, T> const& ref, double rtol, double atol,
                     std::string const& what) {
  auto const back = to_reference(gpu);
  check_close(back.cview(), ref.cview(), rtol, atol, what);
}

}  // namespace lnformer::test

/// A test case that needs a CUDA device: skipped, with the reason printed, when there is none.
#define LNF_GPU_TEST_CASE(name) TEST_CASE(name* doctest::skip(::lnformer::test::gpu_missing()))
