#pragma once
// Reading a parallel corpus: two plain-text files, one sentence per line, line i of one the
// translation of line i of the other (train.de / train.en).
//
// Nothing is dropped silently. A difference in line counts, a file that cannot be read and invalid
// UTF-8 are errors (IoError) that name the file, the line and the counts; empty pairs (either side
// empty after trimming a trailing '\r'), pairs with a NUL byte (binary data or UTF-16 text, which
// SentencePiece and C strings cannot carry) and over-long pairs (either side longer than max_bytes)
// are skipped and counted in CorpusStats, which the caller prints. A UTF-8 byte-order mark at the
// start of a file (editors on Windows write one) is removed and counted: left in, it would be part
// of the first sentence.

#include <lnformer/core/error.hpp>

#include <cstddef>
#include <cstdint>
#include <fstream>
#include <istream>
#include <string>
#include <string_view>
#include <vector>

namespace lnformer {

struct CorpusReadOptions {
  std::size_t max_bytes = 1024;  ///< a pair with a longer side is skipped (counted as too_long); 0: no limit
};

struct CorpusStats {
  std::size_t lines = 0;     ///< lines in each file
  std::size_t kept = 0;      ///< pairs returned
  std::size_t empty = 0;     ///< skipped: a side is empty
  std::size_t too_long = 0;  ///< skipped: a side is longer than max_bytes
  std::size_t nul = 0;       ///< skipped: a side holds a NUL byte
  std::size_t bom = 0;       ///< files (0, 1 or 2) that began with a byte-order mark, removed
};

struct ParallelCorpus {
  std::vector<std::string> src, tgt;
  CorpusStats stats;
};

namespace detail {

/// Byte offset of the first invalid UTF-8 sequence in s (overlong forms, surrogates, code points
/// above U+10FFFF and truncated sequences are invalid), or npos.
constexpr std::size_t first_invalid_utf8(std::string_view s) {
  std::size_t i = 0;
  while (i < s.size()) {
    auto const c = static_cast<unsigned char>(s[i]);
    if (c < 0x80) {
      ++i;
      continue;
    }
    std::size_t len = 0;
    std::uint32_t cp = 0, min = 0;
    if ((c & 0xE0) == 0xC0) len = 2, cp = c & 0x1F, min = 0x80;
    else if ((c & 0xF0) == 0xE0) len = 3, cp = c & 0x0F, min = 0x800;
    else if ((c & 0xF8) == 0xF0) len = 4, cp = c & 0x07, min = 0x10000;
    else return i;  // a continuation byte or 0xF8..0xFF as a lead byte
    if (i + len > s.size()) return i;
    for (std::size_t k = 1; k < len; ++k) {
      auto const cc = static_cast<unsigned char>(s[i + k]);
      if ((cc & 0xC0) != 0x80) return i;
      cp = (cp << 6) | (cc & 0x3F);
    }
    if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return i;
    i += len;
  }
  return std::string_view::npos;
}

inline constexpr std::string_view kUtf8Bom = "\xEF\xBB\xBF";

/// Every line of `in` (without '\n' and a trailing '\r'), checked to be UTF-8; `name` names the
/// source in errors. A byte-order mark at the start is removed and reported through `bom`.
inline std::vector<std::string> read_utf8_lines(std::istream& in, std::string const& name, bool* bom = nullptr) {
  std::vector<std::string> lines;
  std::string line;
  if (bom != nullptr) *bom = false;
  while (std::getline(in, line)) {
    if (lines.empty() && std::string_view(line).starts_with(kUtf8Bom)) {
      line.erase(0, kUtf8Bom.size());
      if (bom != nullptr) *bom = true;
    }
    if (!line.empty() && line.back() == '\r') line.pop_back();
    std::size_t const bad = first_invalid_utf8(line);
    LNF_EXPECTS_AS(IoError, bad == std::string_view::npos, "'{}' line {}: invalid UTF-8 at byte {} of the line",
                   name, lines.size() + 1, bad);
    lines.push_back(std::move(line));
  }
  LNF_EXPECTS_AS(IoError, in.eof() && !in.bad(), "error reading '{}' after line {}", name, lines.size());
  return lines;
}

inline std::vector<std::string> read_utf8_lines(std::string const& path, bool* bom = nullptr) {
  std::ifstream in(path, std::ios::binary);
  LNF_EXPECTS_AS(IoError, in.good(), "cannot open '{}' for reading", path);
  return read_utf8_lines(in, path, bom);
}

/// The pairs of two line lists (see the header comment).
inline ParallelCorpus pair_lines(std::vector<std::string>&& src, std::string const& src_name,
                                 std::vector<std::string>&& tgt, std::string const& tgt_name,
                                 CorpusReadOptions const& opt) {
  LNF_EXPECTS_AS(IoError, src.size() == tgt.size(),
                 "parallel corpus: '{}' has {} lines but '{}' has {}; line i of one must translate line i of "
                 "the other",
                 src_name, src.size(), tgt_name, tgt.size());
  ParallelCorpus c;
  c.stats.lines = src.size();
  for (std::size_t i = 0; i < src.size(); ++i) {
    if (src[i].empty() || tgt[i].empty()) {
      ++c.stats.empty;
    } else if (src[i].find('\0') != std::string::npos || tgt[i].find('\0') != std::string::npos) {
      ++c.stats.nul;
    } else if (opt.max_bytes != 0 && (src[i].size() > opt.max_bytes || tgt[i].size() > opt.max_bytes)) {
      ++c.stats.too_long;
    } else {
      c.src.push_back(std::move(src[i]));
      c.tgt.push_back(std::move(tgt[i]));
    }
  }
  c.stats.kept = c.src.size();
  return c;
}

}  // namespace detail

/// The pairs of src_path and tgt_path (see the header comment for what is an error and what is
/// skipped and counted).
inline ParallelCorpus read_parallel_corpus(std::string const& src_path, std::string const& tgt_path,
                                           CorpusReadOptions const& opt = {}) {
  bool src_bom = false, tgt_bom = false;
  auto src = detail::read_utf8_lines(src_path, &src_bom);
  auto tgt = detail::read_utf8_lines(tgt_path, &tgt_bom);
  auto c = detail::pair_lines(std::move(src), src_path, std::move(tgt), tgt_path, opt);
  c.stats.bom = std::size_t{src_bom} + std::size_t{tgt_bom};
  return c;
}

/// The same from two streams (text in memory, a fuzzer's input); the names are for the errors.
inline ParallelCorpus read_parallel_corpus(std::istream& src, std::string const& src_name, std::istream& tgt,
                                           std::string const& tgt_name, CorpusReadOptions const& opt = {}) {
  bool src_bom = false, tgt_bom = false;
  auto s = detail::read_utf8_lines(src, src_name, &src_bom);
  auto t = detail::read_utf8_lines(tgt, tgt_name, &tgt_bom);
  auto c = detail::pair_lines(std::move(s), src_name, std::move(t), tgt_name, opt);
  c.stats.bom = std::size_t{src_bom} + std::size_t{tgt_bom};
  return c;
}

}  // namespace lnformer
