// safetensors: round trips, byte-exact agreement with the reference writer's layout, every rejection
// rule of the reader, robustness to truncated and corrupted files, and (when PyTorch is installed)
// a cross-check against an independent Python reader and writer.
#include <lnformer/io/safetensors.hpp>

#include "support.hpp"

#include <doctest/doctest.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <initializer_list>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <sys/wait.h>
#include <unistd.h>

using namespace lnformer;
using io::SafetensorsFile;
using io::StDType;

namespace {

namespace fs = std::filesystem;

// A fresh directory for this test run, removed at exit.
struct TempDir {
  fs::path path;
  TempDir() {
    path = fs::temp_directory_path() / fmt::format("lnf_safetensors_{}", ::getpid());
    fs::create_directories(path);
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path, ec);
  }
  [[nodiscard]] std::string file(std::string_view name) const { return (path / name).string(); }
};

std::vector<std::byte> to_bytes(std::string_view s) {
  std::vector<std::byte> b(s.size());
  if (!s.empty()) std::memcpy(b.data(), s.data(), s.size());
  return b;
}

void append_u64(std::vector<std::byte>& b, std::uint64_t v) {
  for (int i = 0; i < 8; ++i) b.push_back(static_cast<std::byte>((v >> (8 * i)) & 0xff));
}

// A file with the given header text and `data_bytes` bytes of data (pattern 0, 1, 2, ...); the
// length prefix is the header's length unless `n` says otherwise.
std::vector<std::byte> file_of(std::string_view header, std::size_t data_bytes = 0,
                               std::optional<std::uint64_t> n = std::nullopt) {
  std::vector<std::byte> b;
  append_u64(b, n.value_or(header.size()));
  auto const h = to_bytes(header);
  b.insert(b.end(), h.begin(), h.end());
  for (std::size_t i = 0; i < data_bytes; ++i) b.push_back(static_cast<std::byte>(i & 0xff));
  return b;
}

std::vector<std::byte> read_file(std::string const& path) {
  std::ifstream in(path, std::ios::binary);
  std::string s((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  return to_bytes(s);
}

// Parsing `bytes` throws IoError whose message names the file and contains every part.
void expect_rejected(std::vector<std::byte> bytes, std::initializer_list<std::string_view> parts) {
  try {
    (void)SafetensorsFile::parse(std::move(bytes), "bad.safetensors");
    FAIL("a malformed file was accepted");
  } catch (IoError const& e) {
    std::string const msg = e.what();
    INFO("message: ", msg);
    CHECK(msg.find("bad.safetensors") != std::string::npos);
    for (auto p : parts) {
      INFO("expected part: ", std::string(p));
      CHECK(msg.find(p) != std::string::npos);
    }
  }
}

// Read every tensor of a file in every way its dtype allows (what a fuzzer or a loader would do).
void read_everything(SafetensorsFile const& f) {
  for (auto const& t : f.tensors()) {
    auto const raw = f.bytes_of(t.name);
    REQUIRE(raw.size() == t.bytes());
    if (t.dtype == StDType::f32) {
      auto const v = f.read<float>(t.name);
      REQUIRE(static_cast<std::int64_t>(v.size()) == t.shape.numel());
      Tensor<Cpu> dst(t.shape);
      f.read_into(t.name, dst);
    } else if (t.dtype == StDType::i32) {
      (void)f.read<std::int32_t>(t.name);
    } else if (t.dtype == StDType::i64) {
      (void)f.read<std::int64_t>(t.name);
    }
  }
}

}  // namespace

TEST_CASE("dtype names and sizes") {
  for (StDType t : io::kAllStDTypes) {
    CHECK(io::parse_dtype(io::dtype_name(t)) == t);
    CHECK(io::dtype_size(t) >= 1);
  }
  CHECK(io::dtype_size(StDType::bf16) == 2);
  CHECK(io::dtype_size(StDType::i64) == 8);
  CHECK(!io::parse_dtype("f32").has_value());  // names are case-sensitive
  static_assert(io::dtype_of<float>() == StDType::f32);
  static_assert(io::dtype_of<std::int32_t const>() == StDType::i32);
  static_assert(io::dtype_of<std::int64_t>() == StDType::i64);
}

TEST_CASE("round trip: shapes incl. scalar and zero-size, strided views, int32, metadata") {
  TempDir dir;
  Rng rng(7);
  auto const w = test::random_tensor<Cpu>(Shape{3, 5}, rng);
  auto const big = test::random_tensor<Cpu>(Shape{2, 3, 4, 5}, rng);
  Tensor<Cpu> scalar(Shape{});
  scalar.data()[0] = 2.5f;
  Tensor<Cpu> empty(Shape{0, 4});
  std::vector<std::int32_t> const idv{3, -1, 7, 2147483647, -2147483647 - 1, 0};
  Tensor<Cpu, std::int32_t> ids(Shape{2, 3}, std::span<std::int32_t const>(idv));
  std::map<std::string, std::string> const meta{
      {"format", "pt"}, {"step", "1200"}, {"note", "ünïcödé \"quoted\"\n"}};

  std::string const path = dir.file("ckpt.safetensors");
  io::save_safetensors(path,
                       {{"w", w},
                        {"w.T", w.view().transposed()},                  // strided
                        {"big.perm", big.view().permute({2, 0, 3, 1})},  // strided, rank 4
                        {"scalar", scalar},
                        {"empty", empty},
                        {"ids", ids},
                        {"ids.row1", ids.view().slice(1, 2)}},
                       meta);
  CHECK(fs::exists(path));
  CHECK_FALSE(fs::exists(path + ".tmp"));

  auto const f = SafetensorsFile::open(path);
  CHECK(f.source() == path);
  CHECK(f.metadata() == meta);
  REQUIRE(f.tensors().size() == 7);
  // Ordered by offset; F32 before I32, each group by name (the reference's layout).
  std::vector<std::string> names;
  for (auto const& t : f.tensors()) names.push_back(t.name);
  CHECK(names == std::vector<std::string>{"big.perm", "empty", "scalar", "w", "w.T", "ids", "ids.row1"});
  for (std::size_t i = 1; i < f.tensors().size(); ++i) CHECK(f.tensors()[i].begin == f.tensors()[i - 1].end);

  REQUIRE(f.find("w.T") != nullptr);
  CHECK(f.find("w.T")->shape == Shape{5, 3});
  CHECK(f.find("w.T")->dtype == StDType::f32);
  CHECK(f.find("nope") == nullptr);
  CHECK(f.at("scalar").shape == Shape{});
  CHECK(f.at("empty").bytes() == 0);

  CHECK(f.read<float>("w") == w.to_host());
  CHECK(f.read<float>("w.T") == test::gather(w.view().transposed()));
  CHECK(f.read<float>("big.perm") == test::gather(big.view().permute({2, 0, 3, 1})));
  CHECK(f.read<float>("scalar") == std::vector<float>{2.5f});
  CHECK(f.read<float>("empty").empty());
  CHECK(f.read<std::int32_t>("ids") == idv);
  CHECK(f.read<std::int32_t>("ids.row1") == std::vector<std::int32_t>{2147483647, -2147483647 - 1, 0});

  // read_into a contiguous tensor, a strided view, and an int32 tensor.
  Tensor<Cpu> w2(Shape{3, 5});
  f.read_into("w", w2);
  CHECK(w2.to_host() == w.to_host());
  Tensor<Cpu> wt(Shape{3, 5});
  f.read_into("w.T", wt.view().transposed());  // writes w^T into a transposed view: wt == w
  CHECK(wt.to_host() == w.to_host());
  Tensor<Cpu, std::int32_t> ids2(Shape{2, 3});
  f.read_into("ids", ids2);
  CHECK(ids2.to_host() == idv);
  Tensor<Cpu> e2(Shape{0, 4});
  f.read_into("empty", e2);
  auto const big2 = f.read_tensor<float>("big.perm");
  CHECK(big2.shape() == Shape{4, 2, 5, 3});

  // Overwriting an existing checkpoint replaces it whole.
  io::save_safetensors(path, {{"only", scalar}});
  auto const g = SafetensorsFile::open(path);
  CHECK(g.tensors().size() == 1);
  CHECK(g.metadata().empty());
  CHECK_FALSE(fs::exists(path + ".tmp"));

  // The vector-of-CView form, and in-memory serialisation giving the same bytes as the file.
  std::vector<std::pair<std::string, CView<Cpu>>> const views{{"b", w.cview()}, {"a", scalar.cview()}};
  io::save_safetensors(path, views, {{"k", "v"}});
  auto const mem = io::serialize_safetensors({{"b", w}, {"a", scalar}}, {{"k", "v"}});
  CHECK(read_file(path) == mem);
}

TEST_CASE("an empty checkpoint") {
  auto const bytes = io::serialize_safetensors({});
  auto const f = SafetensorsFile::parse(bytes, "empty");
  CHECK(f.tensors().empty());
  CHECK(f.metadata().empty());
}

TEST_CASE("bytes agree with the reference writer's layout") {
  // One F32 tensor "attn0" of shape [1, 1, 2, 3] holding 0..5. The reference writes compact JSON
  // with the fields in the order dtype, shape, data_offsets, pads it with spaces to a multiple of
  // 8 bytes (65 -> 72) and appends the little-endian floats.
  {
    std::vector<float> const v{0, 1, 2, 3, 4, 5};
    Tensor<Cpu> t(Shape{1, 1, 2, 3}, std::span<float const>(v));
    auto const got = io::serialize_safetensors({{"attn0", t}});
    std::string_view const json = R"({"attn0":{"dtype":"F32","shape":[1,1,2,3],"data_offsets":[0,24]}})";
    REQUIRE(json.size() == 65);
    std::vector<std::byte> want;
    append_u64(want, 72);
    auto const h = to_bytes(std::string(json) + "       ");  // 7 spaces
    want.insert(want.end(), h.begin(), h.end());
    for (unsigned b : {0x00, 0x00, 0x00, 0x00,   // 0.0f
                       0x00, 0x00, 0x80, 0x3f,   // 1.0f = 0x3f800000
                       0x00, 0x00, 0x00, 0x40,   // 2.0f = 0x40000000
                       0x00, 0x00, 0x40, 0x40,   // 3.0f = 0x40400000
                       0x00, 0x00, 0x80, 0x40,   // 4.0f = 0x40800000
                       0x00, 0x00, 0xa0, 0x40})  // 5.0f = 0x40a00000
      want.push_back(static_cast<std::byte>(b));
    CHECK(got == want);
  }
  // No tensors: "{}" padded to 8 bytes; with one metadata key, "__metadata__" comes first.
  CHECK(io::serialize_safetensors({}) == file_of("{}      "));
  CHECK(io::serialize_safetensors({}, {{"framework", "pt"}}) ==
        file_of(R"({"__metadata__":{"framework":"pt"}})"
                "     "));
  // Mixed dtypes: F32 before I32 (the reference sorts by dtype, descending, then by name), and a
  // header already a multiple of 8 gets no padding.
  {
    Tensor<Cpu, std::int32_t> a(Shape{1});
    a.data()[0] = 0x01020304;
    Tensor<Cpu> z(Shape{});
    z.data()[0] = -2.0f;  // 0xc0000000
    auto const got = io::serialize_safetensors({{"a", a}, {"z", z}});
    std::string const json = R"({"z":{"dtype":"F32","shape":[],"data_offsets":[0,4]},)"
                             R"("a":{"dtype":"I32","shape":[1],"data_offsets":[4,8]}})";
    std::string const padded = json + std::string((8 - json.size() % 8) % 8, ' ');
    auto want = file_of(padded);
    for (unsigned b : {0x00, 0x00, 0x00, 0xc0, 0x04, 0x03, 0x02, 0x01})
      want.push_back(static_cast<std::byte>(b));
    CHECK(got == want);
  }
  // Names are JSON-escaped as the reference does (control characters as lowercase \u00xx).
  {
    Tensor<Cpu> s(Shape{});
    auto const got = io::serialize_safetensors({{"a\"b\\c\x01", s}});
    std::string const json = R"({"a\"b\\c\u0001":{"dtype":"F32","shape":[],"data_offsets":[0,4]}})";
    auto want = file_of(json + std::string((8 - json.size() % 8) % 8, ' '), 0);
    want.resize(want.size() + 4, std::byte{0});
    CHECK(got == want);
    CHECK(SafetensorsFile::parse(got).find("a\"b\\c\x01") != nullptr);
  }
}

TEST_CASE("the reader accepts what the format allows") {
  // Whitespace, any key order, unknown fields, an unpadded header, empty tensors anywhere.
  auto const f =
      SafetensorsFile::parse(file_of(R"( { "b" : {"data_offsets": [4, 12], "shape": [2], "dtype": "F32",)"
                                     R"( "extra": [{"x": 1}, {"x": 2}]},)"
                                     R"("e": {"dtype": "BF16", "shape": [3, 0], "data_offsets": [4, 4]},)"
                                     R"("a": {"dtype": "I32", "shape": [], "data_offsets": [0, 4]},)"
                                     R"("__metadata__": {"x": "1", "y": ""},)"
                                     R"( "h": {"dtype": "F16", "shape": [2], "data_offsets": [12, 16]}} )",
                                     16),
                             "ok");
  REQUIRE(f.tensors().size() == 4);
  CHECK(f.tensors()[0].name == "a");
  CHECK(f.tensors()[1].name == "e");  // [4, 4] sorts before [4, 12]
  CHECK(f.tensors()[2].name == "b");
  CHECK(f.tensors()[3].dtype == StDType::f16);
  CHECK(f.metadata().at("y").empty());
  CHECK(f.read<std::int32_t>("a") == std::vector<std::int32_t>{0x03020100});
  CHECK(f.bytes_of("h").size() == 4);
  CHECK(std::to_integer<int>(f.bytes_of("h")[0]) == 12);
}

TEST_CASE("every malformed file is rejected with a precise message") {
  auto const entry = [](std::string_view name, std::string_view body) {
    return fmt::format(R"({{"{}":{}}})", name, body);
  };
  SUBCASE("too short") {
    expect_rejected(to_bytes("abc"), {"3 bytes, fewer than the 8"});
    expect_rejected({}, {"0 bytes"});
  }
  SUBCASE("header length") {
    expect_rejected(file_of("{}", 0, 100'000'001),
                    {"header length 100000001 exceeds the limit of 100000000"});
    expect_rejected(file_of("{}", 0, ~std::uint64_t{0}), {"header length 18446744073709551615 exceeds"});
    expect_rejected(file_of("{}", 0, 3), {"header length 3 but only 2 bytes follow"});
  }
  SUBCASE("header text") {
    expect_rejected(file_of("{\"a\xff\":1}"), {"not valid UTF-8", "0xff", "offset 3"});
    expect_rejected(file_of("{\"\xed\xa0\x80\":1}"), {"not valid UTF-8"});  // an encoded surrogate
    expect_rejected(file_of("{\"\xc0\xaf\":1}"), {"not valid UTF-8"});      // an overlong '/'
    expect_rejected(file_of(R"({"a":)"), {"not valid JSON", "parse error"});
    expect_rejected(file_of(""), {"0-byte header is not valid JSON"});
    expect_rejected(file_of(R"({} {})"), {"not valid JSON"});
    expect_rejected(file_of(R"({"a":"\ud800"})"), {"not valid JSON"});  // a lone surrogate escape
    expect_rejected(file_of(R"({"a": 1e999})"), {"not valid JSON"});
    expect_rejected(file_of("[1, 2]"), {"the header is a JSON array, not an object"});
    expect_rejected(file_of("\"x\""), {"JSON string, not an object"});
  }
  SUBCASE("entries") {
    expect_rejected(file_of(entry("w", "3")), {"entry of tensor 'w' is a JSON number, not an object"});
    expect_rejected(file_of(entry("w", R"({"shape":[],"data_offsets":[0,4]})"), 4),
                    {"tensor 'w' has no \"dtype\""});
    expect_rejected(file_of(entry("w", R"({"dtype":"F32","data_offsets":[0,4]})"), 4),
                    {"tensor 'w' has no \"shape\""});
    expect_rejected(file_of(entry("w", R"({"dtype":"F32","shape":[]})"), 4),
                    {"tensor 'w' has no \"data_offsets\""});
    expect_rejected(file_of(entry("w", R"({"dtype":32,"shape":[],"data_offsets":[0,4]})"), 4),
                    {"tensor 'w': \"dtype\" is a JSON number, not a string"});
    expect_rejected(file_of(entry("w", R"({"dtype":"F33","shape":[],"data_offsets":[0,4]})"), 4),
                    {"tensor 'w' has the unknown dtype \"F33\""});
    expect_rejected(file_of(entry("w", R"({"dtype":"float32","shape":[],"data_offsets":[0,4]})"), 4),
                    {"unknown dtype \"float32\""});
  }
  SUBCASE("shapes") {
    expect_rejected(file_of(entry("w", R"({"dtype":"F32","shape":"2x2","data_offsets":[0,16]})"), 16),
                    {"tensor 'w': \"shape\" is a JSON string, not an array"});
    expect_rejected(file_of(entry("w", R"({"dtype":"F32","shape":[2,-2],"data_offsets":[0,16]})"), 16),
                    {"tensor 'w': shape dimension 1 is the negative number -2"});
    expect_rejected(file_of(entry("w", R"({"dtype":"F32","shape":[2.5],"data_offsets":[0,16]})"), 16),
                    {"shape dimension 0 is the non-integer 2.5"});
    expect_rejected(file_of(entry("w", R"({"dtype":"F32","shape":[2.0],"data_offsets":[0,8]})"), 8),
                    {"shape dimension 0 is the non-integer 2.0"});
    expect_rejected(file_of(entry("w", R"({"dtype":"F32","shape":["2"],"data_offsets":[0,8]})"), 8),
                    {"shape dimension 0 is a string"});
    expect_rejected(file_of(entry("w", R"({"dtype":"F32","shape":[1,1,1,1,1,1,1],"data_offsets":[0,4]})"), 4),
                    {"tensor 'w' has rank 7, more than the 6"});
    expect_rejected(
        file_of(entry("w", R"({"dtype":"F32","shape":[18446744073709551615],"data_offsets":[0,4]})"), 4),
        {"tensor 'w': shape [18446744073709551615] has more elements than fit in 64 bits"});
    expect_rejected(
        file_of(entry("w", R"({"dtype":"F32","shape":[4294967296,4294967296],"data_offsets":[0,4]})"), 4),
        {"more elements than fit in 64 bits"});
    // A zero dimension does not excuse an overflowing product of the others (strides would overflow).
    expect_rejected(
        file_of(entry("w", R"({"dtype":"F32","shape":[0,4294967296,4294967296],"data_offsets":[0,0]})")),
        {"more elements than fit in 64 bits"});
    // numel fits but numel * 4 does not.
    expect_rejected(
        file_of(entry("w", R"({"dtype":"F32","shape":[4611686018427387904],"data_offsets":[0,4]})"), 4),
        {"tensor 'w': 4611686018427387904 elements of 4 bytes overflow 64 bits"});
  }
  SUBCASE("data_offsets") {
    expect_rejected(
        file_of(entry("w", R"({"dtype":"F32","shape":[1],"data_offsets":[0]})"), 4),
        {"tensor 'w': \"data_offsets\" must be an array of two integers, got an array of 1 elements"});
    expect_rejected(file_of(entry("w", R"({"dtype":"F32","shape":[1],"data_offsets":{"a":0}})"), 4),
                    {"got a JSON object"});
    expect_rejected(file_of(entry("w", R"({"dtype":"F32","shape":[1],"data_offsets":[0,4.0]})"), 4),
                    {"tensor 'w': data_offsets[1] is the non-integer 4.0"});
    expect_rejected(file_of(entry("w", R"({"dtype":"F32","shape":[1],"data_offsets":[-4,0]})"), 4),
                    {"data_offsets[0] is the negative number -4"});
    expect_rejected(file_of(entry("w", R"({"dtype":"F32","shape":[1],"data_offsets":[8,4]})"), 8),
                    {"tensor 'w': data_offsets [8, 4] are not ascending"});
    expect_rejected(
        file_of(entry("w", R"({"dtype":"F32","shape":[2,2],"data_offsets":[0,12]})"), 12),
        {"tensor 'w': data_offsets [0, 12] span 12 bytes but dtype F32 and shape [2, 2] need 16 bytes"});
    expect_rejected(file_of(entry("w", R"({"dtype":"BF16","shape":[3],"data_offsets":[0,12]})"), 12),
                    {"span 12 bytes but dtype BF16 and shape [3] need 6 bytes"});
    expect_rejected(file_of(entry("w", R"({"dtype":"F32","shape":[2],"data_offsets":[0,8]})"), 4),
                    {"tensor 'w': data_offsets [0, 8] end past the 4-byte data buffer"});
    expect_rejected(file_of(entry("w", R"({"dtype":"F32","shape":[1],)"
                                       R"("data_offsets":[18446744073709551612,18446744073709551616]})"),
                            4),
                    {"not a non-negative integer"});  // 2^64 is a float to the JSON parser
    expect_rejected(file_of(entry("w", R"({"dtype":"F32","shape":[1],)"
                                       R"("data_offsets":[18446744073709551611,18446744073709551615]})"),
                            4),
                    {"end past the 4-byte data buffer"});
  }
  SUBCASE("coverage of the data buffer") {
    expect_rejected(file_of(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)"
                            R"("b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}})",
                            12),
                    {"tensor 'b' at [4, 12] overlaps tensor 'a' at [0, 8]"});
    expect_rejected(file_of(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)"
                            R"("b":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})",
                            8),
                    {"overlaps tensor"});
    expect_rejected(file_of(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)"
                            R"("z":{"dtype":"F32","shape":[0],"data_offsets":[4,4]}})",
                            8),
                    {"tensor 'z' at [4, 4] overlaps tensor 'a' at [0, 8]"});
    expect_rejected(file_of(R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},)"
                            R"("b":{"dtype":"F32","shape":[1],"data_offsets":[8,12]}})",
                            12),
                    {"a hole of 4 bytes at [4, 8] before tensor 'b'"});
    expect_rejected(file_of(entry("b", R"({"dtype":"F32","shape":[1],"data_offsets":[4,8]})"), 8),
                    {"a hole of 4 bytes at [0, 4] before tensor 'b'"});
    expect_rejected(file_of(entry("a", R"({"dtype":"F32","shape":[1],"data_offsets":[0,4]})"), 9),
                    {"the tensors cover 4 bytes but the data buffer has 9 (5 trailing bytes"});
    expect_rejected(file_of("{}", 1), {"cover 0 bytes but the data buffer has 1"});
  }
  SUBCASE("repeated keys") {
    std::string_view const body = R"({"dtype":"F32","shape":[1],"data_offsets":[0,4]})";
    expect_rejected(file_of(fmt::format(R"({{"a":{},"a":{}}})", body, body), 4),
                    {"repeats the key 'a' (a tensor name appears twice)"});
    expect_rejected(file_of(R"({"a":{"dtype":"F32","dtype":"F32","shape":[1],"data_offsets":[0,4]}})", 4),
                    {"repeats the key 'dtype' inside the entry 'a'"});
    expect_rejected(file_of(R"({"__metadata__":{"k":"1","k":"2"}})"),
                    {"repeats the key 'k' inside the entry '__metadata__'"});
    expect_rejected(file_of(R"({"__metadata__":{},"__metadata__":{}})"), {"repeats the key '__metadata__'"});
  }
  SUBCASE("metadata") {
    expect_rejected(file_of(R"({"__metadata__":["a"]})"), {"'__metadata__' is a JSON array, not an object"});
    expect_rejected(file_of(R"({"__metadata__":{"step":12}})"),
                    {"'__metadata__' value of key 'step' is a JSON number, not a string"});
    expect_rejected(file_of(R"({"__metadata__":{"n":null}})"), {"key 'n' is a JSON null"});
  }
}

TEST_CASE("lookups and reads that do not match the file") {
  Tensor<Cpu> w(Shape{2, 3});
  Tensor<Cpu, std::int32_t> ids(Shape{3});
  auto const f = SafetensorsFile::parse(io::serialize_safetensors({{"w", w}, {"ids", ids}}), "m.safetensors");
  CHECK_THROWS_WITH_AS((void)f.at("v"),
                       doctest::Contains("'m.safetensors': no tensor named 'v' (the file holds 2 "
                                         "tensors: 'w', 'ids')"),
                       IoError);
  CHECK_THROWS_WITH_AS((void)f.read<std::int32_t>("w"),
                       doctest::Contains("read of tensor 'w' as I32 but the file stores it as F32"), IoError);
  CHECK_THROWS_WITH_AS((void)f.read<float>("ids"), doctest::Contains("as F32 but the file stores it as I32"),
                       IoError);
  CHECK_THROWS_WITH_AS((void)f.read<std::int64_t>("ids"), doctest::Contains("as I64"), IoError);
  Tensor<Cpu> wrong(Shape{3, 2});
  CHECK_THROWS_WITH_AS(f.read_into("w", wrong),
                       doctest::Contains("tensor 'w' has shape [2, 3] but the destination has shape [3, 2]"),
                       IoError);
  Tensor<Cpu> flat(Shape{6});
  CHECK_THROWS_AS(f.read_into("w", flat), IoError);
  Tensor<Cpu> f3(Shape{3});
  CHECK_THROWS_WITH_AS(f.read_into("ids", f3), doctest::Contains("read_into of tensor 'ids' as F32"),
                       IoError);
}

TEST_CASE("file system errors name the path and the reason") {
  TempDir dir;
  std::string const missing = dir.file("missing.safetensors");
  std::string const want_missing =
      fmt::format("cannot read safetensors file '{}': open failed (No such file or directory)", missing);
  CHECK_THROWS_WITH_AS((void)SafetensorsFile::open(missing), doctest::Contains(want_missing.c_str()),
                       IoError);
  CHECK_THROWS_WITH_AS((void)SafetensorsFile::open(dir.path.string()), doctest::Contains("Is a directory"),
                       IoError);
  Tensor<Cpu> s(Shape{});
  std::string const nodir = dir.file("no/such/dir/x.safetensors");
  std::string const want_nodir = fmt::format("cannot create '{}.tmp'", nodir);
  CHECK_THROWS_WITH_AS(io::save_safetensors(nodir, {{"s", s}}), doctest::Contains(want_nodir.c_str()),
                       IoError);
  // A truncated file on disk: the source name is the path.
  std::string const path = dir.file("t.safetensors");
  io::save_safetensors(path, {{"s", s}});
  fs::resize_file(path, fs::file_size(path) - 1);
  CHECK_THROWS_WITH_AS((void)SafetensorsFile::open(path), doctest::Contains(path.c_str()), IoError);
}

TEST_CASE("the writer refuses bad names") {
  TempDir dir;
  std::string const path = dir.file("x.safetensors");
  Tensor<Cpu> s(Shape{});
  Tensor<Cpu> m(Shape{2, 2});
  CHECK_THROWS_WITH_AS(io::save_safetensors(path, {{"", m}}),
                       doctest::Contains("a tensor of shape [2, 2] has an empty name"), ValueError);
  CHECK_THROWS_WITH_AS(io::save_safetensors(path, {{"a", s}, {"b", s}, {"a", m}}),
                       doctest::Contains("the tensor name 'a' is given twice"), ValueError);
  CHECK_THROWS_WITH_AS(io::save_safetensors(path, {{"__metadata__", s}}), doctest::Contains("reserved"),
                       ValueError);
  CHECK_THROWS_WITH_AS(io::save_safetensors(path, {{"bad\xff", s}}),
                       doctest::Contains("tensor name 'bad\xff' is not valid UTF-8"), ValueError);
  CHECK_THROWS_WITH_AS(io::save_safetensors(path, {{"a", s}}, {{"k", "\xc3"}}),
                       doctest::Contains("metadata value"), ValueError);
  CHECK_THROWS_WITH_AS(io::save_safetensors(path, {{"a", CView<Cpu>(nullptr, Shape{2})}}),
                       doctest::Contains("a view of shape [2] has no data"), ValueError);
  // Nothing was written by the refused calls.
  CHECK_FALSE(fs::exists(path));
  CHECK_FALSE(fs::exists(path + ".tmp"));
}

namespace {
std::vector<std::byte> small_valid_file() {
  std::vector<float> const v{1.5f, -2.f, 3.25f, 0.f, 7.f, -0.5f};
  Tensor<Cpu> a(Shape{2, 3}, std::span<float const>(v));
  Tensor<Cpu> s(Shape{});
  s.data()[0] = 9.f;
  Tensor<Cpu> e(Shape{0});
  std::vector<std::int32_t> const iv{5, -6};
  Tensor<Cpu, std::int32_t> i(Shape{2}, std::span<std::int32_t const>(iv));
  return io::serialize_safetensors({{"a", a}, {"s", s}, {"e", e}, {"i", i}}, {{"format", "pt"}});
}
}  // namespace

TEST_CASE("truncation at every byte position is an IoError, never a crash") {
  auto const full = small_valid_file();
  read_everything(SafetensorsFile::parse(full));
  for (std::size_t cut = 0; cut < full.size(); ++cut) {
    CAPTURE(cut);
    std::vector<std::byte> const part(full.begin(), full.begin() + static_cast<std::ptrdiff_t>(cut));
    CHECK_THROWS_AS((void)SafetensorsFile::parse(part, "cut"), IoError);
  }
}

TEST_CASE("corrupting any header byte gives a valid file or an IoError, never a crash") {
  auto const full = small_valid_file();
  std::size_t const header_end = 8 + static_cast<std::size_t>(io::detail::load_u64_le(full.data()));
  int parsed = 0, rejected = 0;
  for (std::size_t pos = 0; pos < header_end; ++pos) {
    // Complement, and a few values likely to keep the JSON well-formed but change its meaning.
    for (unsigned char value : {static_cast<unsigned char>(~std::to_integer<unsigned char>(full[pos])),
                                static_cast<unsigned char>('0'), static_cast<unsigned char>('9'),
                                static_cast<unsigned char>(' '), static_cast<unsigned char>('"'),
                                static_cast<unsigned char>('}'), static_cast<unsigned char>(0x80)}) {
      auto bytes = full;
      bytes[pos] = static_cast<std::byte>(value);
      CAPTURE(pos);
      CAPTURE(static_cast<int>(value));
      try {
        auto const f = SafetensorsFile::parse(std::move(bytes), "flip");
        read_everything(f);
        ++parsed;
      } catch (IoError const&) {
        ++rejected;
      }
    }
  }
  MESSAGE(parsed, " corrupted files still valid, ", rejected, " rejected");
  CHECK(rejected > 0);
}

// An independent implementation: Python's struct + json + torch.frombuffer, no safetensors package.
TEST_CASE("PyTorch cross-check (skipped without /usr/bin/python3 and torch)") {
  if (std::system("test -x /usr/bin/python3") != 0) {
    MESSAGE("skipped: no /usr/bin/python3");
    return;
  }
  TempDir dir;
  std::string const script = dir.file("check.py");
  {
    std::ofstream py(script);
    py << R"PY(
import json, struct, sys
try:
    import torch
except Exception:
    sys.exit(77)
src, dst = sys.argv[1], sys.argv[2]
raw = open(src, 'rb').read()
n = struct.unpack('<Q', raw[:8])[0]
assert n % 8 == 0, n
header = json.loads(raw[8:8 + n].decode('utf-8'))
data = raw[8 + n:]
types = {'F32': torch.float32, 'I32': torch.int32, 'I64': torch.int64}
def get(name):
    e = header[name]
    b, t = e['data_offsets']
    if t == b:
        return torch.empty(e['shape'], dtype=types[e['dtype']])
    return torch.frombuffer(bytearray(data[b:t]), dtype=types[e['dtype']]).reshape(e['shape'])
w = get('w')
assert w.shape == (2, 3), w.shape
assert torch.equal(w, torch.arange(6, dtype=torch.float32).reshape(2, 3) * 0.5 - 1), w
assert torch.equal(get('wt'), w.t()), get('wt')
assert get('ids').tolist() == [3, -1, 7]
assert get('s').shape == () and get('s').item() == 2.5
assert get('e').shape == (0, 4)
assert header['__metadata__'] == {'format': 'pt', 'step': '12'}, header['__metadata__']

out = {'w2': (w.t() * 2).contiguous(), 'pos': torch.tensor([[1, -2], [3, 40000000000]], dtype=torch.int64),
       'half': torch.tensor(-0.75), 'none': torch.zeros(2, 0)}
fmt = {torch.float32: 'f', torch.int64: 'q'}
names = {torch.float32: 'F32', torch.int64: 'I64'}
head, blobs, off = {'__metadata__': {'by': 'python'}}, [], 0
for name in sorted(out, reverse=True):  # any order is allowed; offsets say where each tensor is
    t = out[name]
    vals = t.flatten().tolist()
    blob = struct.pack('<%d%s' % (len(vals), fmt[t.dtype]), *vals)
    head[name] = {'dtype': names[t.dtype], 'shape': list(t.shape), 'data_offsets': [off, off + len(blob)]}
    blobs.append(blob)
    off += len(blob)
text = json.dumps(head).encode('utf-8')  # spaces after separators, no padding
with open(dst, 'wb') as f:
    f.write(struct.pack('<Q', len(text)) + text + b''.join(blobs))
)PY";
  }
  std::vector<float> wv(6);
  for (int i = 0; i < 6; ++i) wv[i] = static_cast<float>(i) * 0.5f - 1.f;
  Tensor<Cpu> w(Shape{2, 3}, std::span<float const>(wv));
  std::vector<std::int32_t> const idv{3, -1, 7};
  Tensor<Cpu, std::int32_t> ids(Shape{3}, std::span<std::int32_t const>(idv));
  Tensor<Cpu> s(Shape{});
  s.data()[0] = 2.5f;
  Tensor<Cpu> e(Shape{0, 4});
  std::string const ours = dir.file("ours.safetensors"), theirs = dir.file("theirs.safetensors");
  io::save_safetensors(ours, {{"w", w}, {"wt", w.view().transposed()}, {"ids", ids}, {"s", s}, {"e", e}},
                       {{"format", "pt"}, {"step", "12"}});
  int const rc = std::system(fmt::format("/usr/bin/python3 {} {} {}", script, ours, theirs).c_str());
  if (WIFEXITED(rc) && WEXITSTATUS(rc) == 77) {
    MESSAGE("skipped: python3 has no torch");
    return;
  }
  REQUIRE(rc == 0);
  auto const f = SafetensorsFile::open(theirs);
  CHECK(f.metadata() == std::map<std::string, std::string>{{"by", "python"}});
  Tensor<Cpu> w2(Shape{3, 2});
  f.read_into("w2", w2);
  for (int i = 0; i < 3; ++i)
    for (int j = 0; j < 2; ++j) CHECK(w2(i, j) == 2 * w(j, i));
  CHECK(f.read<std::int64_t>("pos") == std::vector<std::int64_t>{1, -2, 3, 40000000000});
  CHECK(f.read<float>("half") == std::vector<float>{-0.75f});
  CHECK(f.at("none").shape == Shape{2, 0});
}
