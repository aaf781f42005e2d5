// Parallel-corpus reading (data/parallel_corpus.hpp) and token-based batching (data/token_batches.hpp).
#include <lnformer/data/parallel_corpus.hpp>
#include <lnformer/data/token_batches.hpp>

#include <doctest/doctest.h>
#include <fmt/format.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>
#include <string>
#include <vector>

using namespace lnformer;

namespace {

std::string write_file(std::string const& name, std::string const& content) {
  auto const path = (std::filesystem::temp_directory_path() / ("lnformer_test_corpus_" + name)).string();
  std::ofstream(path, std::ios::binary) << content;
  return path;
}

}  // namespace

TEST_CASE("read_parallel_corpus keeps pairs, skips and counts empty and over-long ones") {
  auto const de = write_file("a.de", "Hallo Welt\r\n\nzu lang zu lang\nÄpfel\n");
  auto const en = write_file("a.en", "Hello world\r\nempty source\nok\napples\n");
  auto const c = read_parallel_corpus(de, en, CorpusReadOptions{.max_bytes = 12});
  CHECK(c.stats.lines == 4);
  CHECK(c.stats.empty == 1);
  CHECK(c.stats.too_long == 1);
  CHECK(c.stats.kept == 2);
  REQUIRE(c.src.size() == 2);
  CHECK(c.src[0] == "Hallo Welt");  // '\r' of a CRLF file removed
  CHECK(c.tgt[0] == "Hello world");
  CHECK(c.src[1] == "Äpfel");
  CHECK(c.tgt[1] == "apples");
}

TEST_CASE("read_parallel_corpus: different line counts name both files and counts") {
  auto const de = write_file("b.de", "eins\nzwei\ndrei\n");
  auto const en = write_file("b.en", "one\ntwo\n");
  CHECK_THROWS_WITH_AS(read_parallel_corpus(de, en),
                       doctest::Contains(fmt::format("'{}' has 3 lines but '{}' has 2", de, en).c_str()), IoError);
}

TEST_CASE("read_parallel_corpus: invalid UTF-8 names file and line; a missing file is named") {
  auto const de = write_file("c.de", "gut\nschlecht \xC3\x28 hier\n");
  auto const en = write_file("c.en", "good\nbad\n");
  CHECK_THROWS_WITH_AS(read_parallel_corpus(de, en), doctest::Contains(fmt::format("'{}' line 2: invalid UTF-8 at byte 9", de).c_str()),
                       IoError);
  CHECK_THROWS_WITH_AS(read_parallel_corpus("/nonexistent/x.de", en), doctest::Contains("cannot open '/nonexistent/x.de'"),
                       IoError);
}

TEST_CASE("read_parallel_corpus: a byte-order mark is removed and counted, NUL pairs skipped and counted") {
  // Before: the BOM became part of the first source sentence and NUL bytes reached SentencePiece,
  // both without a word.
  using namespace std::string_literals;  // the NUL bytes stay in the strings
  auto const de = write_file("d.de", "\xEF\xBB\xBF" "eins\nzw\0ei\ndrei\n\xEF\xBB\xBFvier\n"s);
  auto const en = write_file("d.en", "one\ntwo\nth\0ree\nfour\n"s);
  auto const c = read_parallel_corpus(de, en);
  CHECK(c.stats.lines == 4);
  CHECK(c.stats.bom == 1);
  CHECK(c.stats.nul == 2);
  CHECK(c.stats.kept == 2);
  REQUIRE(c.src.size() == 2);
  CHECK(c.src[0] == "eins");
  CHECK(c.src[1] == "\xEF\xBB\xBFvier");  // only a mark at the start of the file is one
  CHECK(c.tgt[1] == "four");
}

TEST_CASE("read_parallel_corpus from streams: the same rules, the names in the errors") {
  std::istringstream src("\xEF\xBB\xBFHallo\r\nWelt\n"), tgt("\xEF\xBB\xBFHello\nworld");
  auto const c = read_parallel_corpus(src, "s", tgt, "t");
  CHECK(c.stats.bom == 2);
  REQUIRE(c.src.size() == 2);
  CHECK(c.src[0] == "Hallo");
  CHECK(c.tgt[1] == "world");  // a last line without '\n' counts
  std::istringstream bad("ok\n\xFF\n"), two("a\nb\n");
  CHECK_THROWS_WITH_AS(read_parallel_corpus(bad, "s", two, "t"), doctest::Contains("'s' line 2: invalid UTF-8 at byte 0"),
                       IoError);
}

TEST_CASE("first_invalid_utf8 rejects overlong forms, surrogates, out-of-range and truncated sequences") {
  using detail::first_invalid_utf8;
  constexpr auto npos = std::string_view::npos;
  CHECK(first_invalid_utf8("plain ascii") == npos);
  CHECK(first_invalid_utf8("\xC3\xA4\xE2\x82\xAC\xF0\x9F\x98\x80") == npos);  // ä € 😀
  CHECK(first_invalid_utf8("a\xC0\xAF") == 1);                                 // overlong '/'
  CHECK(first_invalid_utf8("ab\xED\xA0\x80") == 2);                            // surrogate U+D800
  CHECK(first_invalid_utf8("\xF4\x90\x80\x80") == 0);                          // U+110000
  CHECK(first_invalid_utf8("xyz\xE2\x82") == 3);                               // truncated
  CHECK(first_invalid_utf8("\x80") == 0);                                      // stray continuation
  CHECK(first_invalid_utf8("\xFF") == 0);
}

TEST_CASE("TokenBatcher: every kept sentence once per epoch, batches within max_tokens") {
  std::vector<std::int64_t> src, tgt;
  Rng rng(5);
  for (int i = 0; i < 500; ++i) {
    src.push_back(static_cast<std::int64_t>(rng.next_u32() % 40));  // some 0: left out as empty
    tgt.push_back(1 + static_cast<std::int64_t>(rng.next_u32() % 60));
  }
  TokenBatchOptions const opt{.max_tokens = 200, .max_len = 50, .seed = 3};
  TokenBatcher const batcher(src, tgt, opt);
  std::size_t expect_empty = 0, expect_long = 0;
  for (std::size_t i = 0; i < src.size(); ++i) {
    if (src[i] == 0) ++expect_empty;
    else if (src[i] > 50 || tgt[i] > 50) ++expect_long;
  }
  CHECK(batcher.stats().empty == expect_empty);
  CHECK(batcher.stats().too_long == expect_long);
  CHECK(batcher.stats().sentences == src.size() - expect_empty - expect_long);

  auto const e1 = batcher.epoch(1);
  std::multiset<std::size_t> seen;
  for (auto const& b : e1) {
    std::int64_t longest = 0;
    for (std::size_t i : b) longest = std::max({longest, src[i] + 1, tgt[i] + 1}), seen.insert(i);
    CHECK(longest * static_cast<std::int64_t>(b.size()) <= opt.max_tokens);
  }
  CHECK(seen.size() == batcher.stats().sentences);
  CHECK(std::set<std::size_t>(seen.begin(), seen.end()).size() == seen.size());  // each once

  // The order is a function of (seed, epoch): the same epoch again is identical, another differs.
  CHECK(batcher.epoch(1) == e1);
  CHECK(batcher.epoch(2) != e1);
  TokenBatcher const again(src, tgt, opt);
  CHECK(again.epoch(2) == batcher.epoch(2));
}

TEST_CASE("TokenBatcher rejects inconsistent input") {
  CHECK_THROWS_WITH_AS(TokenBatcher({1, 2}, {1}, {}), doctest::Contains("2 source lengths but 1 target"), ValueError);
  CHECK_THROWS_WITH_AS(TokenBatcher({1}, {1}, TokenBatchOptions{.max_tokens = 10, .max_len = 20}),
                       doctest::Contains("max_tokens 10 must hold one sentence of max_len 20"), ValueError);
}
