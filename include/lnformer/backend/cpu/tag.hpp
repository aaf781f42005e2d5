#pragma once
// The CPU backend's tag `Cpu` and its memory traits (host memory, 64-byte aligned), without oneDNN:
// host staging of other backends' tensors (checkpoints, optimizer state, the trainer) needs
// Tensor<Cpu> everywhere, including translation units built by nvcc, which cannot parse oneDNN's
// dnnl.hpp (nvcc 13 in C++20 mode stops with an internal error in it). The ops are in cpu/all.hpp.

#include <lnformer/backend/tag.hpp>
#include <lnformer/core/tensor.hpp>

#include <cstddef>
#include <cstdlib>
#include <cstring>
#include <new>
#include <string_view>

namespace lnformer {

namespace cpu {
/// Backend tag: host memory, oneDNN for GEMMs and element-wise primitives, OpenMP loops elsewhere.
struct Cpu : ops::BackendTag {
  static constexpr std::string_view name = "cpu";
};
}  // namespace cpu
using cpu::Cpu;

template <>
struct BackendTraits<Cpu> {
  static constexpr bool host_accessible = true;
  static constexpr std::string_view name = "cpu";
  static constexpr std::size_t alignment = 64;  // one cache line, one AVX-512 vector

  static void* allocate(std::size_t bytes) {
    std::size_t const rounded = (bytes + alignment - 1) / alignment * alignment;
    void* p = std::aligned_alloc(alignment, rounded);
    if (p == nullptr) throw std::bad_alloc();
    return p;
  }
  static void deallocate(void* p) noexcept { std::free(p); }
  static void copy(void* dst, void const* src, std::size_t bytes) { std::memcpy(dst, src, bytes); }
  static void to_host(void* dst, void const* src, std::size_t bytes) { std::memcpy(dst, src, bytes); }
  static void from_host(void* dst, void const* src, std::size_t bytes) { std::memcpy(dst, src, bytes); }
  static void fill_zero(void* dst, std::size_t bytes) { std::memset(dst, 0, bytes); }
};

}  // namespace lnformer
