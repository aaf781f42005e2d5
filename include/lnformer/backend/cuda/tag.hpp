#pragma once
// The GPU backend's tag, visible in every translation unit so that code can name it, but usable only
// in translation units compiled by nvcc. In a plain C++ unit, using `Gpu` (a Tensor<Gpu>, an
// Encoder<PreLN, Gpu>, ...) stops at the static_assert below with a message that says how to build it;
// under nvcc, backend/cuda/gpu.cuh specialises BackendTraits<Gpu> instead.

#include <lnformer/backend/tag.hpp>
#include <lnformer/core/tensor.hpp>

#include <concepts>
#include <string_view>

namespace lnformer {

namespace cuda {
/// Backend tag: CUDA device memory, cuBLAS/cuBLASLt for GEMMs, lnformer's own kernels elsewhere.
struct Gpu : ops::BackendTag {
  static constexpr std::string_view name = "gpu";
};
}  // namespace cuda
using cuda::Gpu;

#if !defined(__CUDACC__)
namespace detail {
template <class>
inline constexpr bool gpu_needs_nvcc = false;
}  // namespace detail

template <class B>
  requires std::same_as<B, Gpu>
struct BackendTraits<B> {
  static_assert(detail::gpu_needs_nvcc<B>,
                "lnformer: the Gpu backend is CUDA code. Put the code that uses Gpu in a .cu file compiled "
                "by nvcc and link it to lnformer::cuda (CMake: enable_language(CUDA)); plain C++ "
                "translation units can use Cpu, and Reference.");
};
#endif

}  // namespace lnformer
