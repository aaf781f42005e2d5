#pragma once
// A content checksum for safetensors files: SHA-256 over every tensor (sorted by name: the name, the
// dtype, the shape and the raw little-endian bytes) and every metadata entry except the checksum's
// own key (sorted by key), stored in the metadata under kChecksumKey. It does not depend on the
// file's layout, so it can be computed from the tensors before writing and from the file after
// reading. A flipped byte anywhere in the data or the metadata changes it; a flipped byte in the
// header's structure or a truncation is already an IoError of SafetensorsFile::parse.
//
//   auto meta = ...; meta[io::kChecksumKey] = io::content_sha256(tensors, meta);
//   io::save_safetensors(path, tensors, meta);
//   io::verify_checksum(io::SafetensorsFile::open(path), /*required=*/true);   // IoError if changed

#include <lnformer/core/error.hpp>
#include <lnformer/io/safetensors.hpp>
#include <lnformer/io/sha256.hpp>

#include <algorithm>
#include <map>
#include <string>
#include <string_view>
#include <vector>

namespace lnformer::io {

inline constexpr std::string_view kChecksumKey = "checksum/sha256";

namespace detail {

inline void hash_entry_head(Sha256& h, std::string_view name, StDType dtype, Shape const& shape) {
  h.update(name);
  h.update(std::string_view("\0", 1));
  h.update(dtype_name(dtype));
  for (auto d : shape) h.update(fmt::format(",{}", d));
  h.update(std::string_view("\0", 1));
}

inline void hash_metadata(Sha256& h, std::map<std::string, std::string> const& meta) {
  for (auto const& [k, v] : meta) {
    if (k == kChecksumKey) continue;
    h.update(fmt::format("{}:{}:", k.size(), v.size()));
    h.update(k);
    h.update(v);
  }
}

}  // namespace detail

/// The checksum of tensors about to be saved with `metadata` (kChecksumKey in it is ignored).
[[nodiscard]] inline std::string content_sha256(std::vector<NamedTensor> const& tensors,
                                                std::map<std::string, std::string> const& metadata) {
  std::vector<NamedTensor const*> order;
  for (auto const& t : tensors) order.push_back(&t);
  std::sort(order.begin(), order.end(), [](NamedTensor const* a, NamedTensor const* b) { return a->first < b->first; });
  Sha256 h;
  std::vector<std::byte> chunk;
  for (NamedTensor const* nt : order) {
    SaveView const& v = nt->second;
    detail::hash_entry_head(h, nt->first, v.dtype(), v.shape());
    if (v.bytes() == 0) continue;
    if (v.is_contiguous() && std::endian::native == std::endian::little) {
      h.update(std::string_view(reinterpret_cast<char const*>(v.data()), static_cast<std::size_t>(v.bytes())));
      continue;
    }
    std::size_t const es = dtype_size(v.dtype());
    chunk.clear();
    detail::for_each_offset(v.shape(), v.strides(), [&](std::int64_t off) {
      std::byte const* e = v.data() + off * static_cast<std::int64_t>(es);
      std::size_t const at = chunk.size();
      chunk.insert(chunk.end(), e, e + es);
      if constexpr (std::endian::native == std::endian::big) std::reverse(chunk.begin() + at, chunk.end());
    });
    h.update(std::string_view(reinterpret_cast<char const*>(chunk.data()), chunk.size()));
  }
  detail::hash_metadata(h, metadata);
  return h.hex();
}

/// The checksum of a file's content as read (the same value content_sha256 gave before saving).
[[nodiscard]] inline std::string content_sha256(SafetensorsFile const& file) {
  std::vector<TensorInfo const*> order;
  for (auto const& t : file.tensors()) order.push_back(&t);
  std::sort(order.begin(), order.end(), [](TensorInfo const* a, TensorInfo const* b) { return a->name < b->name; });
  Sha256 h;
  for (TensorInfo const* t : order) {
    detail::hash_entry_head(h, t->name, t->dtype, t->shape);
    auto const b = file.bytes_of(t->name);
    h.update(std::string_view(reinterpret_cast<char const*>(b.data()), b.size()));
  }
  detail::hash_metadata(h, file.metadata());
  return h.hex();
}

/// IoError when the file's stored checksum differs from its content, or (required) when it has none.
inline void verify_checksum(SafetensorsFile const& file, bool required) {
  auto const& meta = file.metadata();
  auto const it = meta.find(std::string(kChecksumKey));
  if (it == meta.end()) {
    LNF_EXPECTS_AS(IoError, !required,
                   "'{}' has no checksum ('{}' in its metadata): it was not written by save_checkpoint, or its "
                   "metadata is damaged",
                   file.source(), kChecksumKey);
    return;
  }
  std::string const actual = content_sha256(file);
  LNF_EXPECTS_AS(IoError, actual == it->second,
                 "'{}' is corrupted: the SHA-256 of its tensors and metadata is {} but the file says {}",
                 file.source(), actual, it->second);
}

}  // namespace lnformer::io
