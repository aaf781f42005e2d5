// libFuzzer target for the safetensors reader (and, on what it accepts, the writer).
//
// Every input is parsed with SafetensorsFile::parse; an accepted file has every tensor read in
// every way its dtype allows, its invariants checked, and (F32/I32 files) is written back and
// re-read. Only lnformer::Error may escape parse/read: any other exception, a crash, a sanitizer
// report or a broken invariant is a bug.
//
// A custom mutator mutates the header text and keeps the 8-byte length prefix consistent half of the
// time, so that insertions and deletions in the JSON reach the validation behind the length check.
//
// LNF_FUZZ_WRITE_SEEDS=<dir> ./fuzz_safetensors  writes a few valid files into <dir> and exits
// (the seed corpus; see scripts/fuzz.sh).


#include <lnformer/io/safetensors.hpp>

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

using namespace lnformer;
using io::SafetensorsFile;
using io::StDType;

extern "C" size_t LLVMFuzzerMutate(uint8_t* data, size_t size, size_t max_size);

namespace {

[[noreturn]] void broken(char const* what, std::string const& detail) {
  std::fprintf(stderr, "fuzz_safetensors: invariant broken: %s (%s)\n", what, detail.c_str());
  std::abort();
}

void check(bool ok, char const* what, std::string const& detail = {}) {
  if (!ok) broken(what, detail);
}

// Everything the reader promises about a file it accepted.
void check_invariants(SafetensorsFile const& f, std::size_t file_size) {
  std::uint64_t covered = 0;
  for (auto const& t : f.tensors()) {
    check(t.begin == covered, "tensors tile the data buffer", t.name);
    check(t.end >= t.begin, "offsets ascend", t.name);
    check(t.shape.rank() <= kMaxRank, "rank", t.name);
    check(static_cast<std::uint64_t>(t.shape.numel()) * io::dtype_size(t.dtype) == t.bytes(), "size", t.name);
    check(f.find(t.name) == &t, "find", t.name);
    check(f.bytes_of(t.name).size() == t.bytes(), "bytes_of", t.name);
    covered = t.end;
  }
  check(covered <= file_size, "buffer inside the file");
}

template <class T>
void read_as(SafetensorsFile const& f, io::TensorInfo const& t) {
  auto const v = f.read<T>(t.name);
  check(v.size() == static_cast<std::size_t>(t.shape.numel()), "read size", t.name);
  check(v.empty() || std::memcmp(v.data(), f.bytes_of(t.name).data(), t.bytes()) == 0, "read bytes", t.name);
}

void read_everything(SafetensorsFile const& f) {
  for (auto const& t : f.tensors()) {
    switch (t.dtype) {
      case StDType::f32: {
        read_as<float>(f, t);
        Tensor<Cpu> dst(t.shape);
        f.read_into(t.name, dst);
        if (t.shape.rank() >= 2) {  // a strided destination: the transpose of a transposed tensor
          std::vector<std::int64_t> d(t.shape.begin(), t.shape.end());
          std::swap(d[d.size() - 1], d[d.size() - 2]);
          Tensor<Cpu> tt(Shape::from(d.begin(), d.end()));
          f.read_into(t.name, tt.view().transposed());
        }
        break;
      }
      case StDType::i32: {
        read_as<std::int32_t>(f, t);
        Tensor<Cpu, std::int32_t> dst(t.shape);
        f.read_into(t.name, dst);
        break;
      }
      case StDType::i64:
        read_as<std::int64_t>(f, t);
        break;
      case StDType::f64:
        read_as<double>(f, t);
        break;
      case StDType::u8:
        read_as<std::uint8_t>(f, t);
        break;
      case StDType::i16:
        read_as<std::int16_t>(f, t);
        break;
      default:
        (void)f.bytes_of(t.name);
        break;
    }
  }
}

// F32/I32 files: write back, re-read, and check nothing changed; writing again is byte-identical.
void round_trip(SafetensorsFile const& f) {
  for (auto const& t : f.tensors())
    if (t.name.empty() || (t.dtype != StDType::f32 && t.dtype != StDType::i32)) return;  // the writer cannot
  // Values copied to 8-byte aligned storage the views point into.
  std::vector<std::vector<std::uint64_t>> store;
  std::vector<io::NamedTensor> named;
  store.reserve(f.tensors().size());
  for (auto const& t : f.tensors()) {
    auto const raw = f.bytes_of(t.name);
    auto& s = store.emplace_back((raw.size() + 7) / 8);
    if (!raw.empty()) std::memcpy(s.data(), raw.data(), raw.size());
    if (t.dtype == StDType::f32)
      named.emplace_back(t.name, CView<Cpu>(reinterpret_cast<float const*>(s.data()), t.shape));
    else
      named.emplace_back(t.name, TensorView<Cpu, std::int32_t const>(
                                     reinterpret_cast<std::int32_t const*>(s.data()), t.shape));
  }
  std::vector<std::byte> once;
  try {
    once = io::serialize_safetensors(named, f.metadata());
  } catch (ValueError const& e) {
    // The reader accepts names and metadata the writer refuses only if it is not UTF-8, which the
    // reader rejects, so any refusal here is a bug.
    broken("the writer refused what the reader accepted", e.what());
  }
  auto const g = SafetensorsFile::parse(once, "round trip");
  check(g.metadata() == f.metadata(), "metadata survives");
  check(g.tensors().size() == f.tensors().size(), "tensor count survives");
  for (auto const& t : f.tensors()) {
    auto const* u = g.find(t.name);
    check(u != nullptr, "name survives", t.name);
    check(u->dtype == t.dtype && u->shape == t.shape, "dtype and shape survive", t.name);
    auto const a = f.bytes_of(t.name), b = g.bytes_of(t.name);
    check(a.size() == b.size() && (a.empty() || std::memcmp(a.data(), b.data(), a.size()) == 0),
          "data survives", t.name);
  }
  check(io::serialize_safetensors(named, g.metadata()) == once, "writing is deterministic");
}

void append_u64(std::vector<std::byte>& b, std::uint64_t v) {
  for (int i = 0; i < 8; ++i) b.push_back(static_cast<std::byte>((v >> (8 * i)) & 0xff));
}

void write_file(std::string const& path, std::vector<std::byte> const& bytes) {
  std::FILE* fp = std::fopen(path.c_str(), "wb");
  if (fp == nullptr || std::fwrite(bytes.data(), 1, bytes.size(), fp) != bytes.size() ||
      std::fclose(fp) != 0) {
    std::fprintf(stderr, "fuzz_safetensors: cannot write seed %s\n", path.c_str());
    std::exit(1);
  }
}

void write_seeds(std::string const& dir) {
  // 1. What the writer produces: F32 and I32, a scalar, a zero-size tensor, a strided source, metadata.
  std::vector<float> wv(12);
  for (std::size_t i = 0; i < wv.size(); ++i) wv[i] = static_cast<float>(i) * 0.25f - 1.f;
  Tensor<Cpu> w(Shape{3, 4}, std::span<float const>(wv));
  Tensor<Cpu> s(Shape{});
  Tensor<Cpu> e(Shape{0, 3});
  std::vector<std::int32_t> const iv{7, -1, 2147483647};
  Tensor<Cpu, std::int32_t> ids(Shape{3}, std::span<std::int32_t const>(iv));
  write_file(dir + "/writer.safetensors", io::serialize_safetensors({{"encoder.w", w},
                                                                     {"encoder.w.T", w.view().transposed()},
                                                                     {"scale", s},
                                                                     {"empty", e},
                                                                     {"ids", ids}},
                                                                    {{"format", "pt"}, {"step", "100"}}));
  // 2. The empty file.
  write_file(dir + "/empty.safetensors", io::serialize_safetensors({}));
  // 3. Hand-written: other dtypes, whitespace, keys out of offset order, an unknown field.
  std::string const h =
      R"({ "h": {"dtype": "F16", "shape": [2, 2], "data_offsets": [16, 24]},)"
      R"( "b": {"dtype": "BF16", "shape": [4], "data_offsets": [24, 32], "x": [1, {"y": null}]},)"
      R"( "q": {"dtype": "I64", "shape": [1, 2], "data_offsets": [0, 16]},)"
      R"( "u": {"dtype": "U8", "shape": [3], "data_offsets": [32, 35]},)"
      R"( "d": {"dtype": "F64", "shape": [0], "data_offsets": [35, 35]},)"
      R"( "__metadata__": {"k": "v\u00e9\n"}})";
  std::vector<std::byte> hand;
  append_u64(hand, h.size());
  for (char c : h) hand.push_back(static_cast<std::byte>(c));
  for (int i = 0; i < 35; ++i) hand.push_back(static_cast<std::byte>(i * 37));
  write_file(dir + "/dtypes.safetensors", hand);
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int* /*argc*/, char*** /*argv*/) {
  if (char const* dir = std::getenv("LNF_FUZZ_WRITE_SEEDS")) {
    write_seeds(dir);
    std::exit(0);
  }
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(uint8_t const* data, size_t size) {
  auto const* p = reinterpret_cast<std::byte const*>(data);
  try {
    auto const f = SafetensorsFile::parse(std::vector<std::byte>(p, p + size), "fuzz");
    check_invariants(f, size);
    read_everything(f);
    round_trip(f);
  } catch (lnformer::Error const&) {
    // A rejection with a message is the expected outcome for most inputs.
  }
  return 0;
}

// Half of the time, mutate only the header text (or the data length) and rewrite the length prefix
// to match; otherwise mutate the raw bytes, prefix included.
extern "C" size_t LLVMFuzzerCustomMutator(uint8_t* data, size_t size, size_t max_size, unsigned int seed) {
  if (size < 8 || (seed & 1u) != 0) return LLVMFuzzerMutate(data, size, max_size);
  std::uint64_t n = 0;
  for (int i = 7; i >= 0; --i) n = (n << 8) | data[i];
  if (n == 0 || n > size - 8) return LLVMFuzzerMutate(data, size, max_size);
  std::size_t const data_len = size - 8 - static_cast<std::size_t>(n);
  if ((seed & 6u) == 0) {  // resize the data buffer instead (the header stays)
    std::size_t const new_len = (seed >> 3) % (data_len + 9);
    std::size_t const total = std::min(max_size, size - data_len + new_len);
    for (std::size_t i = size; i < total; ++i) data[i] = static_cast<uint8_t>(i * 131);
    return total;
  }
  if (max_size < 8 + data_len) return LLVMFuzzerMutate(data, size, max_size);
  std::vector<uint8_t> header(data + 8, data + 8 + n);
  std::vector<uint8_t> const tail(data + 8 + n, data + size);
  std::size_t const cap = max_size - 8 - data_len;
  header.resize(std::max<std::size_t>(cap, 1));
  std::size_t const new_n = LLVMFuzzerMutate(header.data(), static_cast<std::size_t>(n), cap);
  for (int i = 0; i < 8; ++i)
    data[i] = static_cast<uint8_t>((static_cast<std::uint64_t>(new_n) >> (8 * i)) & 0xff);
  std::memcpy(data + 8, header.data(), new_n);
  if (!tail.empty()) std::memcpy(data + 8 + new_n, tail.data(), tail.size());
  return 8 + new_n + tail.size();
}
