#pragma once
// The safetensors dtype table: the format's element types, their sizes and names, the C++ type
// each stores, and a file's per-tensor entry (TensorInfo). Shared by the reader and the writer.

#include <lnformer/core/error.hpp>
#include <lnformer/core/shape.hpp>

#include <array>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace lnformer::io {

/// Element types of the safetensors format, in the reference implementation's order (the writer
/// sorts by it, descending, to lay out tensors exactly as the reference does).
enum class StDType : std::uint8_t {
  boolean,
  u8,
  i8,
  f8_e5m2,
  f8_e4m3,
  i16,
  u16,
  f16,
  bf16,
  i32,
  u32,
  f32,
  f64,
  i64,
  u64
};

inline constexpr std::array<StDType, 15> kAllStDTypes{
    StDType::boolean, StDType::u8,  StDType::i8,  StDType::f8_e5m2, StDType::f8_e4m3,
    StDType::i16,     StDType::u16, StDType::f16, StDType::bf16,    StDType::i32,
    StDType::u32,     StDType::f32, StDType::f64, StDType::i64,     StDType::u64};

/// Bytes per element.
[[nodiscard]] constexpr std::size_t dtype_size(StDType t) {
  switch (t) {
    case StDType::boolean:
    case StDType::u8:
    case StDType::i8:
    case StDType::f8_e5m2:
    case StDType::f8_e4m3:
      return 1;
    case StDType::i16:
    case StDType::u16:
    case StDType::f16:
    case StDType::bf16:
      return 2;
    case StDType::i32:
    case StDType::u32:
    case StDType::f32:
      return 4;
    case StDType::f64:
    case StDType::i64:
    case StDType::u64:
      return 8;
  }
  return 0;
}

/// The name the format uses ("F32", "BF16", ...).
[[nodiscard]] constexpr std::string_view dtype_name(StDType t) {
  switch (t) {
    case StDType::boolean:
      return "BOOL";
    case StDType::u8:
      return "U8";
    case StDType::i8:
      return "I8";
    case StDType::f8_e5m2:
      return "F8_E5M2";
    case StDType::f8_e4m3:
      return "F8_E4M3";
    case StDType::i16:
      return "I16";
    case StDType::u16:
      return "U16";
    case StDType::f16:
      return "F16";
    case StDType::bf16:
      return "BF16";
    case StDType::i32:
      return "I32";
    case StDType::u32:
      return "U32";
    case StDType::f32:
      return "F32";
    case StDType::f64:
      return "F64";
    case StDType::i64:
      return "I64";
    case StDType::u64:
      return "U64";
  }
  return "?";
}

/// The dtype named `name` in a header, or nothing for a name the format does not define.
[[nodiscard]] constexpr std::optional<StDType> parse_dtype(std::string_view name) {
  for (StDType t : kAllStDTypes)
    if (dtype_name(t) == name) return t;
  return std::nullopt;
}

/// The dtype that stores C++ elements of type T (float -> F32, std::int32_t -> I32, ...).
template <class T>
[[nodiscard]] consteval StDType dtype_of() {
  using U = std::remove_const_t<T>;
  if constexpr (std::is_same_v<U, float>)
    return StDType::f32;
  else if constexpr (std::is_same_v<U, double>)
    return StDType::f64;
  else if constexpr (std::is_same_v<U, std::int8_t>)
    return StDType::i8;
  else if constexpr (std::is_same_v<U, std::uint8_t>)
    return StDType::u8;
  else if constexpr (std::is_same_v<U, std::int16_t>)
    return StDType::i16;
  else if constexpr (std::is_same_v<U, std::uint16_t>)
    return StDType::u16;
  else if constexpr (std::is_same_v<U, std::int32_t>)
    return StDType::i32;
  else if constexpr (std::is_same_v<U, std::uint32_t>)
    return StDType::u32;
  else if constexpr (std::is_same_v<U, std::int64_t>)
    return StDType::i64;
  else if constexpr (std::is_same_v<U, std::uint64_t>)
    return StDType::u64;
  else
    static_assert(sizeof(U) == 0,
                  "no safetensors dtype stores this element type: use float, double or a "
                  "fixed-width integer (F16/BF16/F8/BOOL data: read raw bytes with bytes_of)");
}

/// One tensor of a file: [begin, end) are byte offsets into the data buffer (after the header).
struct TensorInfo {
  std::string name;
  StDType dtype = StDType::f32;
  Shape shape;
  std::uint64_t begin = 0;
  std::uint64_t end = 0;

  [[nodiscard]] std::uint64_t bytes() const { return end - begin; }
};

}  // namespace lnformer::io
