#pragma once
// The reference backend: plain loops over host memory, accumulating in double. Slow and obvious on
// purpose; it is the oracle the tests compare every other backend against.

#include <lnformer/backend/tag.hpp>
#include <lnformer/core/tensor.hpp>

#include <cstdlib>
#include <cstring>
#include <new>
#include <string_view>

namespace lnformer {

namespace reference {
struct Reference : ops::BackendTag {
  static constexpr std::string_view name = "reference";
};
}  // namespace reference
using reference::Reference;

template <>
struct BackendTraits<Reference> {
  static constexpr bool host_accessible = true;
  static constexpr std::string_view name = "reference";
  static void* allocate(std::size_t bytes) {
    void* p = std::malloc(bytes == 0 ? 1 : bytes);
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
