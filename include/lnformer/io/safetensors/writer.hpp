#pragma once
// The safetensors writer: lays tensors out as the reference implementation does (by dtype, widest
// kinds first, then by name; header padded with spaces to a multiple of 8 bytes), so a file it writes
// is byte-for-byte what `safetensors.torch.save_file` writes for the same tensors and (at most one key
// of) metadata. save_safetensors writes `path + ".tmp"`, fsyncs it and renames it over `path`: a crash
// leaves either the old file or the new one, never half a checkpoint. Format: io/safetensors.hpp.

#include <lnformer/backend/cpu/tag.hpp>
#include <lnformer/core/error.hpp>
#include <lnformer/core/shape.hpp>
#include <lnformer/core/tensor.hpp>
#include <lnformer/io/safetensors/bytes.hpp>
#include <lnformer/io/safetensors/dtype.hpp>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <bit>
#include <cerrno>
#include <concepts>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <map>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <fcntl.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <unistd.h>

namespace lnformer::io {

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
