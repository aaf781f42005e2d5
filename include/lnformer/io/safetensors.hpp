#pragma once
// safetensors checkpoints: a strict reader and an atomic writer.
//
// File layout (https://github.com/huggingface/safetensors):
//   8 bytes   N, little-endian u64: the length of the header
//   N bytes   UTF-8 JSON object: name -> {"dtype": "F32", "shape": [2, 3], "data_offsets": [b, e]},
//             plus an optional "__metadata__": {string: string}
//   rest      the data buffer; a tensor's bytes are [b, e) of it, row-major, little-endian
//
// The reader treats the file as untrusted input: every rule of the format is checked (see
// SafetensorsFile::parse) and a violation throws lnformer::IoError naming the file, the tensor
// and the numbers involved. Nothing is read outside the buffer, whatever the bytes say.
//
// The writer lays tensors out as the reference implementation does (by dtype, widest kinds first,
// then by name; header padded with spaces to a multiple of 8 bytes), so a file it writes is
// byte-for-byte what `safetensors.torch.save_file` writes for the same tensors and (at most one
// key of) metadata. It writes `path + ".tmp"`, fsyncs it and renames it over `path`: a crash
// leaves either the old file or the new one, never half a checkpoint.

#include <lnformer/backend/cpu/tag.hpp>
#include <lnformer/core/error.hpp>
#include <lnformer/core/shape.hpp>
#include <lnformer/core/tensor.hpp>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <array>
#include <bit>
#include <cerrno>
#include <concepts>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <functional>
#include <limits>
#include <map>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <tuple>
#include <unordered_set>
#include <utility>
#include <vector>

#include <fcntl.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <unistd.h>

namespace lnformer::io {

// --- dtypes -------------------------------------------------------------------------------------

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

namespace detail {

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

/// A short list of names for messages ("a, b, c and 12 more").
inline std::string some_names(std::vector<TensorInfo> const& ts, std::size_t limit = 8) {
  std::string out;
  for (std::size_t i = 0; i < ts.size() && i < limit; ++i) out += (i ? ", '" : "'") + ts[i].name + "'";
  if (ts.size() > limit) out += fmt::format(" and {} more", ts.size() - limit);
  return ts.empty() ? std::string("none") : out;
}

}  // namespace detail

// --- reading ------------------------------------------------------------------------------------

/// A whole safetensors file held in memory, validated on construction.
class SafetensorsFile {
 public:
  /// Validate and index `bytes` (a whole file); `source_name` names it in error messages.
  ///
  /// Throws IoError when: the input is shorter than 8 bytes; N exceeds 100 MB or the bytes that
  /// follow; the header is not UTF-8, not JSON, not an object, or repeats a key anywhere; an entry
  /// is not an object or lacks "dtype" (a known dtype name), "shape" (at most kMaxRank non-negative
  /// integers whose product, times the element size, fits in 64 bits) or "data_offsets" (two
  /// ascending non-negative integers); end - begin differs from numel * element size; a tensor ends
  /// past the data buffer; tensors overlap, leave a hole, or do not reach the end of the buffer;
  /// "__metadata__" is not an object of strings. Unknown fields of an entry are ignored, as the
  /// reference implementation does.
  [[nodiscard]] static SafetensorsFile parse(std::vector<std::byte> bytes,
                                             std::string source_name = "<memory>");

  /// Read and parse the file at `path`. A missing or unreadable file throws IoError with the path
  /// and the system's reason.
  [[nodiscard]] static SafetensorsFile open(std::string const& path);

  /// The name given to parse() or the path given to open().
  [[nodiscard]] std::string const& source() const { return source_; }
  /// All tensors, ordered by offset (ties, i.e. empty tensors, by name).
  [[nodiscard]] std::vector<TensorInfo> const& tensors() const { return tensors_; }
  /// The tensor called `name`, or nullptr.
  [[nodiscard]] TensorInfo const* find(std::string_view name) const {
    auto it = index_.find(name);
    return it == index_.end() ? nullptr : &tensors_[it->second];
  }
  /// The tensor called `name`; IoError if there is none.
  [[nodiscard]] TensorInfo const& at(std::string_view name) const {
    TensorInfo const* t = find(name);
    LNF_EXPECTS_AS(IoError, t != nullptr,
                   "safetensors '{}': no tensor named '{}' (the file holds {} tensors: {})", source_, name,
                   tensors_.size(), detail::some_names(tensors_));
    return *t;
  }
  /// The "__metadata__" map (empty when the file has none).
  [[nodiscard]] std::map<std::string, std::string> const& metadata() const { return metadata_; }

  /// The raw little-endian bytes of tensor `name`.
  [[nodiscard]] std::span<std::byte const> bytes_of(std::string_view name) const {
    return bytes_of(at(name));
  }

  /// The values of tensor `name`, row-major. Its dtype must be the one that stores T (float: F32,
  /// std::int32_t: I32, std::int64_t: I64, ...); IoError otherwise.
  template <class T>
  [[nodiscard]] std::vector<T> read(std::string_view name) const {
    TensorInfo const& t = at(name);
    expect_dtype(t, dtype_of<T>(), "read");
    std::vector<T> out(static_cast<std::size_t>(t.shape.numel()));
    copy_out(t, reinterpret_cast<std::byte*>(out.data()));
    return out;
  }

  /// Tensor `name` as an owning CPU tensor of its shape (dtype checked as in read()).
  template <class T = float>
  [[nodiscard]] Tensor<Cpu, T> read_tensor(std::string_view name) const {
    TensorInfo const& t = at(name);
    expect_dtype(t, dtype_of<T>(), "read_tensor");
    Tensor<Cpu, T> out(t.shape);
    copy_out(t, reinterpret_cast<std::byte*>(out.data()));
    return out;
  }

  /// Copy tensor `name` into `dst`, which may be strided. The tensor must be F32 (I32 for the
  /// int32 overload) and of exactly dst's shape; IoError naming both otherwise.
  void read_into(std::string_view name, View<Cpu> dst) const { read_into_impl(name, dst); }
  void read_into(std::string_view name, TensorView<Cpu, std::int32_t> dst) const {
    read_into_impl(name, dst);
  }

 private:
  SafetensorsFile() = default;

  // t must be one of tensors_ (its offsets were validated against this buffer).
  [[nodiscard]] std::span<std::byte const> bytes_of(TensorInfo const& t) const {
    return {bytes_.data() + data_start_ + t.begin, static_cast<std::size_t>(t.bytes())};
  }

  void expect_dtype(TensorInfo const& t, StDType want, char const* what) const {
    LNF_EXPECTS_AS(IoError, t.dtype == want,
                   "safetensors '{}': {} of tensor '{}' as {} but the file stores it as {}", source_, what,
                   t.name, dtype_name(want), dtype_name(t.dtype));
  }

  // Contiguous copy of t's elements to dst (numel * element size bytes), in host byte order.
  void copy_out(TensorInfo const& t, std::byte* dst) const {
    auto const src = bytes_of(t);
    if (src.empty()) return;
    std::memcpy(dst, src.data(), src.size());
    if constexpr (std::endian::native == std::endian::big)
      detail::byteswap_elements(dst, src.size() / dtype_size(t.dtype), dtype_size(t.dtype));
  }

  template <class T>
  void read_into_impl(std::string_view name, TensorView<Cpu, T> dst) const {
    TensorInfo const& t = at(name);
    expect_dtype(t, dtype_of<T>(), "read_into");
    LNF_EXPECTS_AS(IoError, t.shape == dst.shape(),
                   "safetensors '{}': tensor '{}' has shape {} but the destination has shape {}", source_,
                   t.name, t.shape, dst.shape());
    if (dst.numel() == 0) return;
    LNF_EXPECTS_AS(ValueError, dst.data() != nullptr, "read_into: the destination of shape {} has no data",
                   dst.shape());
    if (dst.is_contiguous()) {
      copy_out(t, reinterpret_cast<std::byte*>(dst.data()));
      return;
    }
    std::byte const* src = bytes_of(t).data();
    detail::for_each_offset(dst.shape(), dst.strides(), [&](std::int64_t off) {
      T v;
      std::memcpy(&v, src, sizeof(T));
      if constexpr (std::endian::native == std::endian::big)
        detail::byteswap_elements(reinterpret_cast<std::byte*>(&v), 1, sizeof(T));
      dst.data()[off] = v;
      src += sizeof(T);
    });
  }

  std::string source_;
  std::vector<std::byte> bytes_;  // the whole file
  std::size_t data_start_ = 0;    // 8 + N
  std::vector<TensorInfo> tensors_;
  std::map<std::string, std::size_t, std::less<>> index_;
  std::map<std::string, std::string> metadata_;
};

namespace detail {

// The first key repeated within one JSON object, found while parsing (nlohmann keeps the last
// value of a repeated key silently). `where` is the key path of the object that repeats it.
struct DuplicateKeyFinder {
  std::vector<std::unordered_set<std::string>> seen;  // one set per open object
  std::vector<std::string> path;                      // the current key of each open object
  std::optional<std::string> duplicate;
  std::string where;

  bool operator()(int /*depth*/, nlohmann::json::parse_event_t ev, nlohmann::json& parsed) {
    using E = nlohmann::json::parse_event_t;
    if (ev == E::object_start) {
      seen.emplace_back();
      path.emplace_back();
    } else if (ev == E::object_end && !seen.empty()) {
      seen.pop_back();
      path.pop_back();
    } else if (ev == E::key && !seen.empty()) {
      auto const& key = parsed.get_ref<std::string const&>();
      if (!seen.back().insert(key).second && !duplicate) {
        duplicate = key;
        for (std::size_t i = 0; i + 1 < path.size(); ++i) where += (i ? "." : "") + path[i];
      }
      path.back() = key;
    }
    return true;
  }
};

inline std::string_view json_type(nlohmann::json const& j) { return j.type_name(); }

// A JSON number that is a non-negative integer, or an error text describing what it is instead.
inline std::optional<std::uint64_t> as_unsigned(nlohmann::json const& j) {
  if (j.is_number_unsigned()) return j.get<std::uint64_t>();
  if (j.is_number_integer() && j.get<std::int64_t>() >= 0)
    return static_cast<std::uint64_t>(j.get<std::int64_t>());
  return std::nullopt;
}
inline std::string describe_number(nlohmann::json const& j) {
  if (j.is_number_integer()) return fmt::format("the negative number {}", j.get<std::int64_t>());
  if (j.is_number_float()) return fmt::format("the non-integer {}", j.dump());
  return fmt::format("a {}", json_type(j));
}

}  // namespace detail

inline SafetensorsFile SafetensorsFile::parse(std::vector<std::byte> bytes, std::string source_name) {
  SafetensorsFile f;
  f.source_ = std::move(source_name);
  f.bytes_ = std::move(bytes);
  std::string const& src = f.source_;
  std::uint64_t const size = f.bytes_.size();

  LNF_EXPECTS_AS(IoError, size >= 8,
                 "safetensors '{}': the file has {} bytes, fewer than the 8 of the header length", src, size);
  std::uint64_t const n = detail::load_u64_le(f.bytes_.data());
  LNF_EXPECTS_AS(IoError, n <= detail::kMaxHeaderBytes,
                 "safetensors '{}': header length {} exceeds the limit of {} bytes (corrupt file?)", src, n,
                 detail::kMaxHeaderBytes);
  LNF_EXPECTS_AS(
      IoError, n <= size - 8,
      "safetensors '{}': header length {} but only {} bytes follow the 8-byte length (truncated file?)", src,
      n, size - 8);
  f.data_start_ = static_cast<std::size_t>(8 + n);
  std::uint64_t const data_size = size - 8 - n;

  std::string_view const text(reinterpret_cast<char const*>(f.bytes_.data() + 8),
                              static_cast<std::size_t>(n));
  auto const bad = detail::invalid_utf8_at(text);
  LNF_EXPECTS_AS(IoError, !bad,
                 "safetensors '{}': the header is not valid UTF-8 (byte 0x{:02x} at header offset {})", src,
                 bad ? static_cast<unsigned char>(text[*bad]) : 0u, bad.value_or(0));

  detail::DuplicateKeyFinder dups;
  nlohmann::json root;
  try {
    root = nlohmann::json::parse(text.begin(), text.end(), std::ref(dups), /*allow_exceptions=*/true,
                                 /*ignore_comments=*/false);
  } catch (nlohmann::json::exception const& e) {
    ::lnformer::detail::raise<IoError>(::lnformer::SourceLocation::current(), "header is valid JSON",
                                       "safetensors '{}': the {}-byte header is not valid JSON: {}", src, n,
                                       e.what());
  }
  LNF_EXPECTS_AS(IoError, root.is_object(), "safetensors '{}': the header is a JSON {}, not an object", src,
                 detail::json_type(root));
  LNF_EXPECTS_AS(IoError, !dups.duplicate, "safetensors '{}': the header repeats the key '{}'{}", src,
                 dups.duplicate.value_or(""),
                 dups.where.empty() ? std::string(" (a tensor name appears twice)")
                                    : fmt::format(" inside the entry '{}'", dups.where));

  for (auto it = root.cbegin(); it != root.cend(); ++it) {
    std::string const& name = it.key();  // not structured bindings: lambdas below capture these
    nlohmann::json const& entry = it.value();
    if (name == "__metadata__") {
      LNF_EXPECTS_AS(IoError, entry.is_object(),
                     "safetensors '{}': '__metadata__' is a JSON {}, not an object", src,
                     detail::json_type(entry));
      for (auto const& [k, v] : entry.items()) {
        LNF_EXPECTS_AS(IoError, v.is_string(),
                       "safetensors '{}': '__metadata__' value of key '{}' is a JSON {}, not a string", src,
                       k, detail::json_type(v));
        f.metadata_.emplace(k, v.get<std::string>());
      }
      continue;
    }
    LNF_EXPECTS_AS(IoError, entry.is_object(),
                   "safetensors '{}': the entry of tensor '{}' is a JSON {}, not an object", src, name,
                   detail::json_type(entry));
    auto field = [&](char const* key) -> nlohmann::json const& {
      auto const found = entry.find(key);
      LNF_EXPECTS_AS(IoError, found != entry.end(), "safetensors '{}': tensor '{}' has no \"{}\" field", src,
                     name, key);
      return *found;
    };

    TensorInfo t;
    t.name = name;
    auto const& jd = field("dtype");
    LNF_EXPECTS_AS(IoError, jd.is_string(),
                   "safetensors '{}': tensor '{}': \"dtype\" is a JSON {}, not a string", src, name,
                   detail::json_type(jd));
    auto const dt = parse_dtype(jd.get_ref<std::string const&>());
    LNF_EXPECTS_AS(
        IoError, dt.has_value(),
        "safetensors '{}': tensor '{}' has the unknown dtype \"{}\" (known: BOOL, U8, I8, F8_E5M2, "
        "F8_E4M3, I16, U16, F16, BF16, I32, U32, F32, F64, I64, U64)",
        src, name, jd.get_ref<std::string const&>());
    t.dtype = *dt;

    auto const& js = field("shape");
    LNF_EXPECTS_AS(IoError, js.is_array(),
                   "safetensors '{}': tensor '{}': \"shape\" is a JSON {}, not an array", src, name,
                   detail::json_type(js));
    LNF_EXPECTS_AS(IoError, js.size() <= static_cast<std::size_t>(kMaxRank),
                   "safetensors '{}': tensor '{}' has rank {}, more than the {} dimensions lnformer supports",
                   src, name, js.size(), kMaxRank);
    std::array<std::int64_t, kMaxRank> dims{};
    // The product of the non-zero dimensions must fit in int64 (so that numel and every stride of
    // the shape do, whatever the order they are multiplied in) and numel * element size in u64.
    std::uint64_t nonzero_product = 1;
    bool has_zero = false;
    for (std::size_t i = 0; i < js.size(); ++i) {
      auto const d = detail::as_unsigned(js[i]);
      LNF_EXPECTS_AS(IoError, d.has_value(),
                     "safetensors '{}': tensor '{}': shape dimension {} is {}, not a non-negative integer",
                     src, name, i, detail::describe_number(js[i]));
      LNF_EXPECTS_AS(IoError,
                     *d == 0 || nonzero_product <=
                                    static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max()) / *d,
                     "safetensors '{}': tensor '{}': shape {} has more elements than fit in 64 bits", src,
                     name, js.dump());
      if (*d == 0)
        has_zero = true;
      else
        nonzero_product *= *d;
      dims[i] = static_cast<std::int64_t>(*d);
    }
    t.shape = Shape::from(dims.begin(), dims.begin() + js.size());
    std::uint64_t const numel = has_zero ? 0 : nonzero_product;
    std::uint64_t const esize = dtype_size(t.dtype);
    LNF_EXPECTS_AS(IoError, numel <= std::numeric_limits<std::uint64_t>::max() / esize,
                   "safetensors '{}': tensor '{}': {} elements of {} bytes overflow 64 bits", src, name,
                   numel, esize);
    std::uint64_t const need = numel * esize;

    auto const& jo = field("data_offsets");
    LNF_EXPECTS_AS(IoError, jo.is_array() && jo.size() == 2,
                   "safetensors '{}': tensor '{}': \"data_offsets\" must be an array of two integers, got {}",
                   src, name,
                   jo.is_array() ? fmt::format("an array of {} elements", jo.size())
                                 : fmt::format("a JSON {}", detail::json_type(jo)));
    for (std::size_t i = 0; i < 2; ++i)
      LNF_EXPECTS_AS(IoError, detail::as_unsigned(jo[i]).has_value(),
                     "safetensors '{}': tensor '{}': data_offsets[{}] is {}, not a non-negative integer", src,
                     name, i, detail::describe_number(jo[i]));
    t.begin = *detail::as_unsigned(jo[0]);
    t.end = *detail::as_unsigned(jo[1]);
    LNF_EXPECTS_AS(IoError, t.begin <= t.end,
                   "safetensors '{}': tensor '{}': data_offsets [{}, {}] are not ascending", src, name,
                   t.begin, t.end);
    LNF_EXPECTS_AS(
        IoError, t.end - t.begin == need,
        "safetensors '{}': tensor '{}': data_offsets [{}, {}] span {} bytes but dtype {} and shape {} "
        "need {} bytes",
        src, name, t.begin, t.end, t.end - t.begin, dtype_name(t.dtype), t.shape, need);
    LNF_EXPECTS_AS(IoError, t.end <= data_size,
                   "safetensors '{}': tensor '{}': data_offsets [{}, {}] end past the {}-byte data buffer "
                   "(truncated file?)",
                   src, name, t.begin, t.end, data_size);
    f.tensors_.push_back(std::move(t));
  }

  // The spec: tensors tile the data buffer exactly, in offset order, without overlap or holes.
  std::sort(f.tensors_.begin(), f.tensors_.end(), [](TensorInfo const& a, TensorInfo const& b) {
    return std::tie(a.begin, a.end, a.name) < std::tie(b.begin, b.end, b.name);
  });
  std::uint64_t covered = 0;
  for (std::size_t i = 0; i < f.tensors_.size(); ++i) {
    TensorInfo const& t = f.tensors_[i];
    LNF_EXPECTS_AS(IoError, t.begin >= covered,
                   "safetensors '{}': tensor '{}' at [{}, {}] overlaps tensor '{}' at [{}, {}]", src, t.name,
                   t.begin, t.end, f.tensors_[i - 1].name, f.tensors_[i - 1].begin, f.tensors_[i - 1].end);
    LNF_EXPECTS_AS(
        IoError, t.begin == covered,
        "safetensors '{}': a hole of {} bytes at [{}, {}] before tensor '{}' (tensors must cover the data "
        "buffer contiguously)",
        src, t.begin - covered, covered, t.begin, t.name);
    covered = t.end;
  }
  LNF_EXPECTS_AS(
      IoError, covered == data_size,
      "safetensors '{}': the tensors cover {} bytes but the data buffer has {} ({} trailing bytes belong "
      "to no tensor)",
      src, covered, data_size, data_size - covered);

  for (std::size_t i = 0; i < f.tensors_.size(); ++i) f.index_.emplace(f.tensors_[i].name, i);
  return f;
}

inline SafetensorsFile SafetensorsFile::open(std::string const& path) {
  auto fail = [&](char const* what, ::lnformer::SourceLocation loc = ::lnformer::SourceLocation::current()) {
    int const err = errno;
    ::lnformer::detail::raise<IoError>(loc, what, "cannot read safetensors file '{}': {} ({})", path, what,
                                       std::strerror(err));
  };
  int const fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) fail("open failed");
  struct Closer {
    int fd;
    ~Closer() { ::close(fd); }
  } closer{fd};
  struct stat st {};
  if (::fstat(fd, &st) != 0) fail("fstat failed");
  if (S_ISDIR(st.st_mode)) {
    errno = EISDIR;
    fail("it is a directory");
  }
  auto read_some = [&](std::byte* p, std::size_t n) -> std::size_t {
    while (true) {
      ssize_t const r = ::read(fd, p, n);
      if (r >= 0) return static_cast<std::size_t>(r);
      if (errno != EINTR) fail("read failed");
    }
  };
  // The size fstat reports in one allocation; then whatever follows (a file that grew, a pipe).
  std::vector<std::byte> bytes(S_ISREG(st.st_mode) ? static_cast<std::size_t>(st.st_size) : 0);
  std::size_t got = 0;
  while (got < bytes.size()) {
    std::size_t const r = read_some(bytes.data() + got, bytes.size() - got);
    if (r == 0) break;
    got += r;
  }
  bytes.resize(got);
  std::vector<std::byte> more(1 << 16);
  while (std::size_t const r = read_some(more.data(), more.size()))
    bytes.insert(bytes.end(), more.data(), more.data() + r);
  return parse(std::move(bytes), path);
}

// --- writing ------------------------------------------------------------------------------------

/// A host tensor to save: any F32 or I32 CPU view or tensor, strided or not (a small type-erased
/// variant that remembers the dtype).
class SaveView {
 public:
  SaveView(CView<Cpu> v) : SaveView(StDType::f32, v) {}                           // NOLINT
  SaveView(View<Cpu> v) : SaveView(StDType::f32, CView<Cpu>(v)) {}                // NOLINT
  SaveView(TensorView<Cpu, std::int32_t const> v) : SaveView(StDType::i32, v) {}  // NOLINT
  SaveView(TensorView<Cpu, std::int32_t> v)                                       // NOLINT
      : SaveView(StDType::i32, TensorView<Cpu, std::int32_t const>(v)) {}
  SaveView(Tensor<Cpu, float> const& t) : SaveView(t.cview()) {}         // NOLINT
  SaveView(Tensor<Cpu, std::int32_t> const& t) : SaveView(t.cview()) {}  // NOLINT

  [[nodiscard]] StDType dtype() const { return dtype_; }
  [[nodiscard]] Shape const& shape() const { return shape_; }
  [[nodiscard]] Strides const& strides() const { return strides_; }
  [[nodiscard]] std::byte const* data() const { return data_; }
  [[nodiscard]] bool is_contiguous() const { return contiguous_; }
  [[nodiscard]] std::uint64_t bytes() const {
    return static_cast<std::uint64_t>(shape_.numel()) * dtype_size(dtype_);
  }

 private:
  template <class T>
  SaveView(StDType dt, TensorView<Cpu, T const> v)
      : dtype_(dt),
        shape_(v.shape()),
        strides_(v.strides()),
        data_(reinterpret_cast<std::byte const*>(v.data())),
        contiguous_(v.is_contiguous()) {
    LNF_EXPECTS_AS(ValueError, v.numel() == 0 || v.data() != nullptr,
                   "save_safetensors: a view of shape {} has no data", v.shape());
  }

  StDType dtype_;
  Shape shape_;
  Strides strides_;
  std::byte const* data_;
  bool contiguous_;
};

using NamedTensor = std::pair<std::string, SaveView>;

namespace detail {

struct PreparedSave {
  std::string header;                     // JSON padded to a multiple of 8 bytes
  std::vector<NamedTensor const*> order;  // layout order of the data buffer
};

inline std::string json_string(std::string const& s) { return nlohmann::json(s).dump(); }

inline void check_utf8(std::string const& s, char const* what) {
  auto const bad = invalid_utf8_at(s);
  LNF_EXPECTS_AS(ValueError, !bad,
                 "save_safetensors: {} '{}' is not valid UTF-8 (byte 0x{:02x} at offset {})", what, s,
                 bad ? static_cast<unsigned char>(s[*bad]) : 0u, bad.value_or(0));
}

inline PreparedSave prepare_save(std::vector<NamedTensor> const& tensors,
                                 std::map<std::string, std::string> const& metadata) {
  PreparedSave p;
  for (auto const& nt : tensors) {
    LNF_EXPECTS_AS(ValueError, !nt.first.empty(), "save_safetensors: a tensor of shape {} has an empty name",
                   nt.second.shape());
    LNF_EXPECTS_AS(ValueError, nt.first != "__metadata__",
                   "save_safetensors: '__metadata__' is reserved by the format and cannot name a tensor");
    check_utf8(nt.first, "tensor name");
    p.order.push_back(&nt);
  }
  // As the reference: widest dtypes first (descending enum order), then by name.
  std::sort(p.order.begin(), p.order.end(), [](NamedTensor const* a, NamedTensor const* b) {
    if (a->second.dtype() != b->second.dtype()) return a->second.dtype() > b->second.dtype();
    return a->first < b->first;
  });
  for (std::size_t i = 1; i < p.order.size(); ++i)
    LNF_EXPECTS_AS(ValueError, p.order[i]->first != p.order[i - 1]->first,
                   "save_safetensors: the tensor name '{}' is given twice", p.order[i]->first);
  for (auto const& [k, v] : metadata) {
    check_utf8(k, "metadata key");
    check_utf8(v, "metadata value");
  }

  // Compact JSON, key order as the reference writes it: __metadata__, then tensors in layout order.
  std::string& h = p.header;
  h = "{";
  if (!metadata.empty()) {
    h += "\"__metadata__\":{";
    bool first = true;
    for (auto const& [k, v] : metadata) {
      if (!first) h += ',';
      first = false;
      h += json_string(k) + ':' + json_string(v);
    }
    h += '}';
  }
  std::uint64_t offset = 0;
  for (NamedTensor const* nt : p.order) {
    SaveView const& v = nt->second;
    if (h.size() > 1) h += ',';
    h += fmt::format("{}:{{\"dtype\":\"{}\",\"shape\":[{}],\"data_offsets\":[{},{}]}}",
                     json_string(nt->first), dtype_name(v.dtype()),
                     fmt::join(v.shape().begin(), v.shape().end(), ","), offset, offset + v.bytes());
    offset += v.bytes();
  }
  h += '}';
  h.append((8 - h.size() % 8) % 8, ' ');
  return p;
}

/// Write the file through `out.append(std::byte const*, std::size_t)`.
template <class Out>
void write_safetensors(Out& out, PreparedSave const& p) {
  std::array<std::byte, 8> len{};
  std::uint64_t n = p.header.size();
  for (auto& b : len) {
    b = static_cast<std::byte>(n & 0xff);
    n >>= 8;
  }
  out.append(len.data(), len.size());
  out.append(reinterpret_cast<std::byte const*>(p.header.data()), p.header.size());

  std::vector<std::byte> chunk;
  for (NamedTensor const* nt : p.order) {
    SaveView const& v = nt->second;
    if (v.bytes() == 0) continue;
    std::size_t const es = dtype_size(v.dtype());
    if (v.is_contiguous() && std::endian::native == std::endian::little) {
      out.append(v.data(), static_cast<std::size_t>(v.bytes()));
      continue;
    }
    // Gather (strided view, or byte swapping) through a bounded buffer.
    std::size_t const cap = std::size_t{1} << 20;
    chunk.reserve(cap);
    chunk.clear();
    for_each_offset(v.shape(), v.strides(), [&](std::int64_t off) {
      std::byte const* e = v.data() + off * static_cast<std::int64_t>(es);
      std::size_t const at = chunk.size();
      chunk.insert(chunk.end(), e, e + es);
      if constexpr (std::endian::native == std::endian::big) std::reverse(chunk.begin() + at, chunk.end());
      if (chunk.size() + es > cap) {
        out.append(chunk.data(), chunk.size());
        chunk.clear();
      }
    });
    if (!chunk.empty()) out.append(chunk.data(), chunk.size());
  }
}

struct VectorOut {
  std::vector<std::byte>& buf;
  void append(std::byte const* p, std::size_t n) { buf.insert(buf.end(), p, p + n); }
};

// Buffered writes to a file descriptor; a failure throws IoError naming `path`.
struct FdOut {
  int fd;
  std::string const& path;
  std::vector<std::byte> buf;

  void append(std::byte const* p, std::size_t n) {
    if (buf.size() + n > (std::size_t{1} << 20)) flush();
    if (n >= (std::size_t{1} << 20))
      write_all(p, n);
    else
      buf.insert(buf.end(), p, p + n);
  }
  void flush() {
    write_all(buf.data(), buf.size());
    buf.clear();
  }
  void write_all(std::byte const* p, std::size_t n) {
    while (n > 0) {
      ssize_t const w = ::write(fd, p, n);
      if (w < 0 && errno == EINTR) continue;
      LNF_EXPECTS_AS(IoError, w > 0, "save_safetensors: writing '{}' failed: {}", path, std::strerror(errno));
      p += w;
      n -= static_cast<std::size_t>(w);
    }
  }
};

}  // namespace detail

/// The bytes of a safetensors file holding `tensors` and `metadata` (see save_safetensors).
[[nodiscard]] inline std::vector<std::byte> serialize_safetensors(
    std::vector<NamedTensor> const& tensors, std::map<std::string, std::string> const& metadata = {}) {
  auto const p = detail::prepare_save(tensors, metadata);
  std::vector<std::byte> buf;
  detail::VectorOut out{buf};
  detail::write_safetensors(out, p);
  return buf;
}

/// Write `tensors` (F32 or I32 CPU views, possibly strided) and string `metadata` to `path`,
/// atomically: the bytes go to `path + ".tmp"`, which is fsynced and renamed over `path`.
/// Names must be non-empty, distinct, valid UTF-8 and not "__metadata__" (ValueError otherwise);
/// a failing system call throws IoError with the path and the reason.
inline void save_safetensors(std::string const& path, std::vector<NamedTensor> const& tensors,
                             std::map<std::string, std::string> const& metadata = {}) {
  auto const p = detail::prepare_save(tensors, metadata);  // validate before touching the disk
  std::string const tmp = path + ".tmp";
  int const fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  LNF_EXPECTS_AS(IoError, fd >= 0, "save_safetensors: cannot create '{}': {}", tmp, std::strerror(errno));
  // Until the rename, any failure removes the temporary file and leaves `path` untouched.
  struct Guard {
    int fd;
    std::string const& tmp;
    bool done = false;
    ~Guard() {
      if (fd >= 0) ::close(fd);
      if (!done) ::unlink(tmp.c_str());
    }
  } guard{fd, tmp};
  detail::FdOut out{fd, tmp, {}};
  detail::write_safetensors(out, p);
  out.flush();
  LNF_EXPECTS_AS(IoError, ::fsync(fd) == 0, "save_safetensors: fsync of '{}' failed: {}", tmp,
                 std::strerror(errno));
  guard.fd = -1;
  LNF_EXPECTS_AS(IoError, ::close(fd) == 0, "save_safetensors: closing '{}' failed: {}", tmp,
                 std::strerror(errno));
  LNF_EXPECTS_AS(IoError, ::rename(tmp.c_str(), path.c_str()) == 0,
                 "save_safetensors: renaming '{}' to '{}' failed: {}", tmp, path, std::strerror(errno));
  guard.done = true;
  // Make the rename itself durable (best effort: some file systems refuse fsync on directories).
  auto const slash = path.find_last_of('/');
  std::string const dir = slash == std::string::npos ? "." : slash == 0 ? "/" : path.substr(0, slash);
  int const dfd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dfd >= 0) {
    (void)::fsync(dfd);
    ::close(dfd);
  }
}

/// The same for a vector of (name, view) pairs of any type SaveView accepts, e.g.
/// std::vector<std::pair<std::string, CView<Cpu>>>.
template <class V>
requires(std::convertible_to<V const&, SaveView> && !std::same_as<V, SaveView>) void save_safetensors(
    std::string const& path, std::vector<std::pair<std::string, V>> const& tensors,
    std::map<std::string, std::string> const& metadata = {}) {
  std::vector<NamedTensor> named;
  named.reserve(tensors.size());
  for (auto const& [name, v] : tensors) named.emplace_back(name, SaveView(v));
  save_safetensors(path, named, metadata);
}

}  // namespace lnformer::io
