#pragma once
// Byte-level helpers the safetensors reader and writer share: the header size limit, UTF-8
// validation, little-endian loads, byte swaps for big-endian hosts, and the row-major walk over a
// strided view.

#include <lnformer/core/shape.hpp>
#include <lnformer/core/tensor.hpp>

#include <algorithm>
#include <array>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string_view>

namespace lnformer::io::detail {

inline constexpr std::uint64_t kMaxHeaderBytes = 100'000'000;  // the reference's limit

/// Offset of the first byte that is not well-formed UTF-8 (no overlongs, no surrogates, nothing past
/// U+10FFFF), or nothing when all of `s` is.
[[nodiscard]] inline std::optional<std::size_t> invalid_utf8_at(std::string_view s) {
  auto const* p = reinterpret_cast<unsigned char const*>(s.data());
  std::size_t const n = s.size();
  std::size_t i = 0;
  while (i < n) {
    unsigned const c = p[i];
    if (c < 0x80) {
      ++i;
      continue;
    }
    std::size_t len = 0;
    unsigned lo = 0x80, hi = 0xBF;  // allowed range of the second byte
    if (c >= 0xC2 && c <= 0xDF)
      len = 2;
    else if (c == 0xE0)
      len = 3, lo = 0xA0;
    else if (c >= 0xE1 && c <= 0xEC)
      len = 3;
    else if (c == 0xED)
      len = 3, hi = 0x9F;  // excludes the surrogates U+D800..U+DFFF
    else if (c >= 0xEE && c <= 0xEF)
      len = 3;
    else if (c == 0xF0)
      len = 4, lo = 0x90;
    else if (c >= 0xF1 && c <= 0xF3)
      len = 4;
    else if (c == 0xF4)
      len = 4, hi = 0x8F;  // nothing past U+10FFFF
    else
      return i;
    if (n - i < len || p[i + 1] < lo || p[i + 1] > hi) return i;
    for (std::size_t k = 2; k < len; ++k)
      if (p[i + k] < 0x80 || p[i + k] > 0xBF) return i;
    i += len;
  }
  return std::nullopt;
}

[[nodiscard]] inline std::uint64_t load_u64_le(std::byte const* p) {
  std::uint64_t v = 0;
  for (int i = 7; i >= 0; --i) v = (v << 8) | static_cast<std::uint64_t>(p[i]);
  return v;
}

/// Reverse the bytes of each of `count` elements of `size` bytes (big-endian hosts only).
inline void byteswap_elements(std::byte* p, std::size_t count, std::size_t size) {
  for (std::size_t i = 0; i < count; ++i) std::reverse(p + i * size, p + (i + 1) * size);
}

/// Call f(offset) for the element offset (in elements) of every element of a strided view, in
/// row-major order. Shapes up to kMaxRank.
template <class F>
void for_each_offset(Shape const& s, Strides const& st, F&& f) {
  if (s.numel() == 0) return;
  int const r = s.rank();
  if (r == 0) {
    f(std::int64_t{0});
    return;
  }
  std::array<std::int64_t, kMaxRank> idx{};
  std::int64_t const inner = s[r - 1], inner_stride = st[r - 1];
  std::int64_t off = 0;
  while (true) {
    for (std::int64_t j = 0; j < inner; ++j) f(off + j * inner_stride);
    int d = r - 2;
    for (; d >= 0; --d) {
      off += st[d];
      if (++idx[d] < s[d]) break;
      off -= st[d] * s[d];
      idx[d] = 0;
    }
    if (d < 0) return;
  }
}

}  // namespace lnformer::io::detail
