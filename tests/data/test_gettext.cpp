// The .mo parser on catalogs built in memory (both byte orders, context, plurals), its errors on
// truncated and corrupt files, and the corpus builder's filters, deduplication and split.

#include <lnformer/data/gettext.hpp>

#include <doctest/doctest.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <utility>
#include <unistd.h>
#include <vector>

using namespace lnformer;
using Messages = std::vector<std::pair<std::string, std::string>>;  // (original, translation)

namespace {

/// A .mo file: header, original table at 28, translation table after it, then the strings (each
/// NUL-terminated), all 32-bit words in the chosen byte order.
std::string build_mo(Messages const& msgs, bool big_endian, std::uint32_t revision = 0) {
  std::string out;
  auto const put = [&](std::uint32_t v) {
    for (int i = 0; i < 4; ++i) {
      int const shift = big_endian ? 24 - 8 * i : 8 * i;
      out.push_back(static_cast<char>((v >> shift) & 0xFF));
    }
  };
  auto const n = static_cast<std::uint32_t>(msgs.size());
  std::uint32_t const orig = 28, trans = 28 + 8 * n, strings = 28 + 16 * n;
  put(0x950412de);
  put(revision);
  put(n);
  put(orig);
  put(trans);
  put(0);
  put(0);
  std::string blob;
  std::vector<std::pair<std::uint32_t, std::uint32_t>> o, t;
  for (auto const& [id, str] : msgs) {
    o.emplace_back(static_cast<std::uint32_t>(id.size()), strings + static_cast<std::uint32_t>(blob.size()));
    blob.append(id).push_back('\0');
  }
  for (auto const& [id, str] : msgs) {
    t.emplace_back(static_cast<std::uint32_t>(str.size()), strings + static_cast<std::uint32_t>(blob.size()));
    blob.append(str).push_back('\0');
  }
  for (auto [len, off] : o) put(len), put(off);
  for (auto [len, off] : t) put(len), put(off);
  return out + blob;
}

std::string const header = "Project-Id-Version: demo\nContent-Type: text/plain; charset=UTF-8\nPlural-Forms: nplurals=2;\n";

Messages const demo{
    {"", header},
    {"File not found", "Datei nicht gefunden"},
    {std::string("menu\x04Open", 9), "Öffnen"},
    {std::string("%d file\0%d files", 16), std::string("%d Datei\0%d Dateien", 19)},
};

}  // namespace

TEST_CASE("parse_mo: both byte orders, context, plural, header") {
  for (bool be : {false, true}) {
    CAPTURE(be);
    auto const cat = parse_mo(build_mo(demo, be, 1));
    CHECK(cat.big_endian == be);
    CHECK(cat.revision == 1);
    CHECK(cat.charset == "utf-8");
    CHECK(cat.header == header);
    REQUIRE(cat.entries.size() == 3);
    CHECK(cat.entries[0].msgid == "File not found");
    CHECK(cat.entries[0].msgstr == std::vector<std::string>{"Datei nicht gefunden"});
    CHECK(cat.entries[1].context == "menu");
    CHECK(cat.entries[1].msgid == "Open");
    CHECK(cat.entries[2].msgid == "%d file");
    CHECK(cat.entries[2].msgid_plural == "%d files");
    CHECK(cat.entries[2].msgstr == std::vector<std::string>{"%d Datei", "%d Dateien"});
  }
  CHECK(parse_mo(build_mo({}, false)).entries.empty());
}

TEST_CASE("parse_mo: every truncation and corruption is a clear IoError") {
  std::string const good = build_mo(demo, false);
  for (std::size_t len = 0; len < good.size(); ++len) {
    CAPTURE(len);
    CHECK_THROWS_AS(parse_mo(std::string_view(good).substr(0, len), "cut.mo"), IoError);
  }
  CHECK_THROWS_WITH_AS(parse_mo(good.substr(0, 10), "x.mo"), doctest::Contains("too short"), IoError);
  CHECK_THROWS_WITH_AS(parse_mo(good.substr(0, 40), "x.mo"), doctest::Contains("truncated"), IoError);

  auto with_word = [&](std::size_t at, std::uint32_t v) {
    std::string s = good;
    for (int i = 0; i < 4; ++i) s[at + i] = static_cast<char>((v >> (8 * i)) & 0xFF);
    return s;
  };
  CHECK_THROWS_WITH_AS(parse_mo(with_word(0, 0x12345678), "x.mo"), doctest::Contains("not a .mo file"), IoError);
  CHECK_THROWS_WITH_AS(parse_mo(with_word(4, 0x00020000), "x.mo"), doctest::Contains("major revision 2"), IoError);
  CHECK_THROWS_AS(parse_mo(with_word(8, 0xFFFFFFFF), "x.mo"), IoError);   // N huge: no allocation, an error
  CHECK_THROWS_AS(parse_mo(with_word(12, 0xFFFFFFF0), "x.mo"), IoError);  // table offset past the end
  CHECK_THROWS_AS(parse_mo(with_word(16, 0xFFFFFFF0), "x.mo"), IoError);
  CHECK_THROWS_WITH_AS(parse_mo(with_word(28, 0xFFFFFFFF), "x.mo"), doctest::Contains("original string 0"), IoError);
  CHECK_THROWS_AS(parse_mo(with_word(32, 0xFFFFFFFF), "x.mo"), IoError);  // string offset past the end
  CHECK_THROWS_AS(parse_mo(with_word(28 + 8 * 4 + 4, static_cast<std::uint32_t>(good.size())), "x.mo"), IoError);

  std::string no_nul = good;  // the last translation's terminating NUL replaced
  no_nul.back() = 'x';
  CHECK_THROWS_WITH_AS(parse_mo(no_nul, "x.mo"), doctest::Contains("terminating NUL"), IoError);

  CHECK_THROWS_WITH_AS(read_mo("/nonexistent/de.mo"), doctest::Contains("cannot open"), IoError);
}

TEST_CASE("GettextCorpus: filters, each counted by reason") {
  GettextCorpus corpus(CorpusOptions{.max_chars = 20});
  auto const r = [&](std::string de, std::string en) { return std::string(corpus.check(de, en)); };
  CHECK(r("Datei nicht gefunden", "File not found") == "");
  CHECK(r("  Datei  ", "\tFile ") == "");
  CHECK(r("", "File") == "empty");
  CHECK(r("Datei", "   ") == "empty");
  CHECK(r("Zeile 1\nZeile 2", "Line 1\nLine 2") == "multiline");
  CHECK(r("a\rb", "ab") == "multiline");
  CHECK(r("Glocke\a", "Bell\a") == "control_char");
  CHECK(r("OK", "OK") == "untranslated");
  CHECK(r("ungültig \xff", "invalid") == "invalid_utf8");
  CHECK(r("Ä123456789012345678901", "short") == "too_long");
  CHECK(r("Ä1234567890123456789", "short") == "");  // 20 code points (21 bytes): kept

  Messages msgs{{"", header},
                {"File not found", "Datei nicht gefunden"},
                {"Line 1\nLine 2", "Zeile 1\nZeile 2"},
                {"OK", "OK"},
                {"Untranslated", ""},
                {std::string("menu\x04Open", 9), "Öffnen"},
                {std::string("%d file\0%d files", 16), std::string("%d Datei\0%d Dateien", 19)}};
  corpus.add(parse_mo(build_mo(msgs, false)), "a/a.mo");
  corpus.add(parse_mo(build_mo(msgs, true)), "b/b.mo");  // the same pairs again: duplicates
  CHECK(corpus.messages() == 12);
  CHECK(corpus.kept() == 3);
  auto const& d = corpus.dropped();
  CHECK(d.at("multiline") == 2);
  CHECK(d.at("untranslated") == 2);
  CHECK(d.at("empty") == 2);
  CHECK(d.at("duplicate") == 3);

  std::vector<SentencePair> all;
  for (int s = 0; s < 3; ++s)
    for (auto& p : corpus.split(s)) all.push_back(p);
  std::sort(all.begin(), all.end());
  CHECK(all == std::vector<SentencePair>{{"%d Datei", "%d file"}, {"Datei nicht gefunden", "File not found"}, {"Öffnen", "Open"}});

  GettextCorpus latin1;
  Messages l1{{"", "Content-Type: text/plain; charset=ISO-8859-1\n"}, {"Yes", "Ja"}};
  latin1.add(parse_mo(build_mo(l1, false)), "l/l.mo");
  CHECK(latin1.kept() == 0);
  CHECK(latin1.dropped().at("not_utf8_catalog") == 1);
}

TEST_CASE("GettextCorpus: deterministic split by hash of the German source") {
  // FNV-1a 64 reference values (the published test vectors of the FNV authors).
  CHECK(GettextCorpus::fnv1a64("") == 0xcbf29ce484222325ULL);
  CHECK(GettextCorpus::fnv1a64("a") == 0xaf63dc4c8601ec8cULL);
  CHECK(GettextCorpus::fnv1a64("foobar") == 0x85944171f73967e8ULL);

  Messages msgs{{"", header}};
  for (int i = 0; i < 20000; ++i) msgs.emplace_back(fmt::format("message {}", i), fmt::format("Nachricht {}", i));
  Messages reversed{msgs.front()};
  reversed.insert(reversed.end(), msgs.rbegin(), msgs.rend() - 1);

  GettextCorpus a, b;
  a.add(parse_mo(build_mo(msgs, false)), "x");
  b.add(parse_mo(build_mo(reversed, true)), "x");
  REQUIRE(a.kept() == 20000);
  for (int s = 0; s < 3; ++s) CHECK(a.split(s) == b.split(s));  // independent of input order
  auto const valid = a.split(1).size(), test = a.split(2).size();
  CHECK(valid > 400);  // 2.5% each of 20000 = 500 expected
  CHECK(valid < 600);
  CHECK(test > 400);
  CHECK(test < 600);
  for (auto const& p : a.split(1)) CHECK(a.split_of(p.de) == 1);

  // Writing: files and manifest agree, and two builds give identical files.
  auto const dir = std::filesystem::temp_directory_path() / fmt::format("lnf_gettext_{}", ::getpid());
  auto const m1 = a.write(dir / "a");
  auto const m2 = b.write(dir / "b");
  CHECK(m1["splits"] == m2["splits"]);
  CHECK(m1["splits"]["train"]["pairs"].get<std::size_t>() + valid + test == 20000);
  std::ifstream in(dir / "a" / "valid.de", std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  std::string const text = ss.str();
  CHECK(m1["splits"]["valid"]["files"]["valid.de"]["sha256"] == sha256_hex(text));
  CHECK(std::count(text.begin(), text.end(), '\n') == static_cast<std::ptrdiff_t>(valid));
  std::filesystem::remove_all(dir);
}

TEST_CASE("sha256_hex: FIPS 180-4 test vectors") {
  CHECK(sha256_hex("") == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  CHECK(sha256_hex("abc") == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  CHECK(sha256_hex("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq") ==
        "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
  CHECK(sha256_hex(std::string(1000000, 'a')) == "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
  Sha256 inc;  // incremental == one shot
  inc.update("abcdbcdecdefdefg").update("efghfghighijhijkijkljklmklmnlmnomnopnopq");
  CHECK(inc.hex() == "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
}
