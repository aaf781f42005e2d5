#pragma once
// The safetensors reader. It treats the file as untrusted input: every rule of the format is checked
// (see SafetensorsFile::parse) and a violation throws lnformer::IoError naming the file, the tensor
// and the numbers involved. Nothing is read outside the buffer, whatever the bytes say.
// Format: io/safetensors.hpp.

#include <lnformer/backend/cpu/tag.hpp>
#include <lnformer/core/error.hpp>
#include <lnformer/core/shape.hpp>
#include <lnformer/core/tensor.hpp>
#include <lnformer/io/safetensors/bytes.hpp>
#include <lnformer/io/safetensors/dtype.hpp>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <array>
#include <bit>
#include <cerrno>
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

namespace detail {

/// A short list of names for messages ("a, b, c and 12 more").
inline std::string some_names(std::vector<TensorInfo> const& ts, std::size_t limit = 8) {
  std::string out;
  for (std::size_t i = 0; i < ts.size() && i < limit; ++i) out += (i ? ", '" : "'") + ts[i].name + "'";
  if (ts.size() > limit) out += fmt::format(" and {} more", ts.size() - limit);
  return ts.empty() ? std::string("none") : out;
}

}  // namespace detail

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

// parse() in named steps; each throws IoError naming the source `src` and what is wrong.
namespace detail::safetensors_parse {

/// Where the header and the data buffer lie in a whole file of `size` bytes.
struct Layout {
  std::uint64_t header_bytes = 0;  ///< N
  std::uint64_t data_size = 0;     ///< size - 8 - N
};

/// Step 1: the 8-byte header length, within the limit and within the file.
inline Layout read_layout(std::vector<std::byte> const& bytes, std::string const& src) {
  std::uint64_t const size = bytes.size();
  LNF_EXPECTS_AS(IoError, size >= 8,
                 "safetensors '{}': the file has {} bytes, fewer than the 8 of the header length", src, size);
  std::uint64_t const n = load_u64_le(bytes.data());
  LNF_EXPECTS_AS(IoError, n <= kMaxHeaderBytes,
                 "safetensors '{}': header length {} exceeds the limit of {} bytes (corrupt file?)", src, n,
                 kMaxHeaderBytes);
  LNF_EXPECTS_AS(
      IoError, n <= size - 8,
      "safetensors '{}': header length {} but only {} bytes follow the 8-byte length (truncated file?)", src,
      n, size - 8);
  return {n, size - 8 - n};
}

/// Step 2: the header text as a JSON object: valid UTF-8, valid JSON, no key repeated anywhere.
inline nlohmann::json parse_header(std::string_view text, std::string const& src) {
  auto const bad = invalid_utf8_at(text);
  LNF_EXPECTS_AS(IoError, !bad,
                 "safetensors '{}': the header is not valid UTF-8 (byte 0x{:02x} at header offset {})", src,
                 bad ? static_cast<unsigned char>(text[*bad]) : 0u, bad.value_or(0));
  DuplicateKeyFinder dups;
  nlohmann::json root;
  try {
    root = nlohmann::json::parse(text.begin(), text.end(), std::ref(dups), /*allow_exceptions=*/true,
                                 /*ignore_comments=*/false);
  } catch (nlohmann::json::exception const& e) {
    ::lnformer::detail::raise<IoError>(::lnformer::SourceLocation::current(), "header is valid JSON",
                                       "safetensors '{}': the {}-byte header is not valid JSON: {}", src,
                                       text.size(), e.what());
  }
  LNF_EXPECTS_AS(IoError, root.is_object(), "safetensors '{}': the header is a JSON {}, not an object", src,
                 json_type(root));
  LNF_EXPECTS_AS(IoError, !dups.duplicate, "safetensors '{}': the header repeats the key '{}'{}", src,
                 dups.duplicate.value_or(""),
                 dups.where.empty() ? std::string(" (a tensor name appears twice)")
                                    : fmt::format(" inside the entry '{}'", dups.where));
  return root;
}

/// Step 3a: "__metadata__", an object of strings.
inline void read_metadata(nlohmann::json const& entry, std::map<std::string, std::string>& out,
                          std::string const& src) {
  LNF_EXPECTS_AS(IoError, entry.is_object(), "safetensors '{}': '__metadata__' is a JSON {}, not an object", src,
                 json_type(entry));
  for (auto const& [k, v] : entry.items()) {
    LNF_EXPECTS_AS(IoError, v.is_string(),
                   "safetensors '{}': '__metadata__' value of key '{}' is a JSON {}, not a string", src, k,
                   json_type(v));
    out.emplace(k, v.get<std::string>());
  }
}

/// A required field of tensor `name`'s entry.
inline nlohmann::json const& entry_field(nlohmann::json const& entry, char const* key, std::string const& src,
                                         std::string const& name) {
  auto const found = entry.find(key);
  LNF_EXPECTS_AS(IoError, found != entry.end(), "safetensors '{}': tensor '{}' has no \"{}\" field", src, name,
                 key);
  return *found;
}

/// Step 3b: "dtype", a name of the dtype table.
inline StDType read_dtype(nlohmann::json const& jd, std::string const& src, std::string const& name) {
  LNF_EXPECTS_AS(IoError, jd.is_string(), "safetensors '{}': tensor '{}': \"dtype\" is a JSON {}, not a string",
                 src, name, json_type(jd));
  auto const dt = parse_dtype(jd.get_ref<std::string const&>());
  LNF_EXPECTS_AS(
      IoError, dt.has_value(),
      "safetensors '{}': tensor '{}' has the unknown dtype \"{}\" (known: BOOL, U8, I8, F8_E5M2, "
      "F8_E4M3, I16, U16, F16, BF16, I32, U32, F32, F64, I64, U64)",
      src, name, jd.get_ref<std::string const&>());
  return *dt;
}

/// Step 3c: "shape", at most kMaxRank non-negative integers; returns the shape and its byte size
/// for elements of `esize` bytes, both checked against overflow.
inline std::pair<Shape, std::uint64_t> read_shape(nlohmann::json const& js, std::uint64_t esize,
                                                  std::string const& src, std::string const& name) {
  LNF_EXPECTS_AS(IoError, js.is_array(), "safetensors '{}': tensor '{}': \"shape\" is a JSON {}, not an array",
                 src, name, json_type(js));
  LNF_EXPECTS_AS(IoError, js.size() <= static_cast<std::size_t>(kMaxRank),
                 "safetensors '{}': tensor '{}' has rank {}, more than the {} dimensions lnformer supports", src,
                 name, js.size(), kMaxRank);
  std::array<std::int64_t, kMaxRank> dims{};
  // The product of the non-zero dimensions must fit in int64 (so that numel and every stride of
  // the shape do, whatever the order they are multiplied in) and numel * element size in u64.
  std::uint64_t nonzero_product = 1;
  bool has_zero = false;
  for (std::size_t i = 0; i < js.size(); ++i) {
    auto const d = as_unsigned(js[i]);
    LNF_EXPECTS_AS(IoError, d.has_value(),
                   "safetensors '{}': tensor '{}': shape dimension {} is {}, not a non-negative integer", src,
                   name, i, describe_number(js[i]));
    LNF_EXPECTS_AS(IoError,
                   *d == 0 ||
                       nonzero_product <= static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max()) / *d,
                   "safetensors '{}': tensor '{}': shape {} has more elements than fit in 64 bits", src, name,
                   js.dump());
    if (*d == 0)
      has_zero = true;
    else
      nonzero_product *= *d;
    dims[i] = static_cast<std::int64_t>(*d);
  }
  std::uint64_t const numel = has_zero ? 0 : nonzero_product;
  LNF_EXPECTS_AS(IoError, numel <= std::numeric_limits<std::uint64_t>::max() / esize,
                 "safetensors '{}': tensor '{}': {} elements of {} bytes overflow 64 bits", src, name, numel,
                 esize);
  return {Shape::from(dims.begin(), dims.begin() + js.size()), numel * esize};
}

/// Step 3d: "data_offsets", [begin, end) ascending, exactly `need` bytes, inside the data buffer.
inline void read_offsets(nlohmann::json const& jo, TensorInfo& t, std::uint64_t need, std::uint64_t data_size,
                         std::string const& src) {
  std::string const& name = t.name;
  LNF_EXPECTS_AS(IoError, jo.is_array() && jo.size() == 2,
                 "safetensors '{}': tensor '{}': \"data_offsets\" must be an array of two integers, got {}", src,
                 name,
                 jo.is_array() ? fmt::format("an array of {} elements", jo.size())
                               : fmt::format("a JSON {}", json_type(jo)));
  for (std::size_t i = 0; i < 2; ++i)
    LNF_EXPECTS_AS(IoError, as_unsigned(jo[i]).has_value(),
                   "safetensors '{}': tensor '{}': data_offsets[{}] is {}, not a non-negative integer", src, name,
                   i, describe_number(jo[i]));
  t.begin = *as_unsigned(jo[0]);
  t.end = *as_unsigned(jo[1]);
  LNF_EXPECTS_AS(IoError, t.begin <= t.end, "safetensors '{}': tensor '{}': data_offsets [{}, {}] are not ascending",
                 src, name, t.begin, t.end);
  LNF_EXPECTS_AS(IoError, t.end - t.begin == need,
                 "safetensors '{}': tensor '{}': data_offsets [{}, {}] span {} bytes but dtype {} and shape {} "
                 "need {} bytes",
                 src, name, t.begin, t.end, t.end - t.begin, dtype_name(t.dtype), t.shape, need);
  LNF_EXPECTS_AS(IoError, t.end <= data_size,
                 "safetensors '{}': tensor '{}': data_offsets [{}, {}] end past the {}-byte data buffer "
                 "(truncated file?)",
                 src, name, t.begin, t.end, data_size);
}

/// Step 3: one tensor's entry (steps 3b-3d); unknown fields are ignored, as the reference does.
inline TensorInfo read_entry(std::string const& name, nlohmann::json const& entry, std::uint64_t data_size,
                             std::string const& src) {
  LNF_EXPECTS_AS(IoError, entry.is_object(), "safetensors '{}': the entry of tensor '{}' is a JSON {}, not an object",
                 src, name, json_type(entry));
  TensorInfo t;
  t.name = name;
  t.dtype = read_dtype(entry_field(entry, "dtype", src, name), src, name);
  auto [shape, need] = read_shape(entry_field(entry, "shape", src, name), dtype_size(t.dtype), src, name);
  t.shape = shape;
  read_offsets(entry_field(entry, "data_offsets", src, name), t, need, data_size, src);
  return t;
}

/// Step 4: the spec's tiling rule: sorted by offset, the tensors cover the data buffer exactly,
/// without overlap or holes.
inline void sort_and_check_tiling(std::vector<TensorInfo>& tensors, std::uint64_t data_size, std::string const& src) {
  std::sort(tensors.begin(), tensors.end(), [](TensorInfo const& a, TensorInfo const& b) {
    return std::tie(a.begin, a.end, a.name) < std::tie(b.begin, b.end, b.name);
  });
  std::uint64_t covered = 0;
  for (std::size_t i = 0; i < tensors.size(); ++i) {
    TensorInfo const& t = tensors[i];
    LNF_EXPECTS_AS(IoError, t.begin >= covered,
                   "safetensors '{}': tensor '{}' at [{}, {}] overlaps tensor '{}' at [{}, {}]", src, t.name,
                   t.begin, t.end, tensors[i - 1].name, tensors[i - 1].begin, tensors[i - 1].end);
    LNF_EXPECTS_AS(IoError, t.begin == covered,
                   "safetensors '{}': a hole of {} bytes at [{}, {}] before tensor '{}' (tensors must cover the data "
                   "buffer contiguously)",
                   src, t.begin - covered, covered, t.begin, t.name);
    covered = t.end;
  }
  LNF_EXPECTS_AS(IoError, covered == data_size,
                 "safetensors '{}': the tensors cover {} bytes but the data buffer has {} ({} trailing bytes belong "
                 "to no tensor)",
                 src, covered, data_size, data_size - covered);
}

}  // namespace detail::safetensors_parse

inline SafetensorsFile SafetensorsFile::parse(std::vector<std::byte> bytes, std::string source_name) {
  namespace step = detail::safetensors_parse;
  SafetensorsFile f;
  f.source_ = std::move(source_name);
  f.bytes_ = std::move(bytes);
  std::string const& src = f.source_;

  step::Layout const layout = step::read_layout(f.bytes_, src);
  f.data_start_ = static_cast<std::size_t>(8 + layout.header_bytes);
  std::string_view const text(reinterpret_cast<char const*>(f.bytes_.data() + 8),
                              static_cast<std::size_t>(layout.header_bytes));
  nlohmann::json const root = step::parse_header(text, src);

  for (auto it = root.cbegin(); it != root.cend(); ++it) {
    if (it.key() == "__metadata__")
      step::read_metadata(it.value(), f.metadata_, src);
    else
      f.tensors_.push_back(step::read_entry(it.key(), it.value(), layout.data_size, src));
  }
  step::sort_and_check_tiling(f.tensors_, layout.data_size, src);

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

}  // namespace lnformer::io
