#pragma once
// German-English sentence pairs from GNU gettext catalogs (.mo files): the parser of the binary
// format, and the corpus builder (filter, deduplicate, split by hash, write, manifest).
//
// .mo format (GNU gettext manual, "The Format of GNU MO Files"): a 28-byte header of 32-bit words
//   magic 0x950412de (the byte order of the file: read in the other order it is 0xde120495),
//   revision (major in the high 16 bits: 0 or 1), N strings, offset O of the original-string table,
//   offset T of the translation table, hash-table size and offset (unused here);
// each table holds N (length, offset) pairs; every string is followed by a NUL byte. An original
// string may be "msgctxt\x04msgid" (context) and "msgid\0msgid_plural" (plural forms); its
// translation then holds the plural forms separated by NUL bytes. Entry "" is the header.
// Every offset and length is bounds-checked: a hostile or truncated file gives an IoError naming the
// file, the entry and the offsets, never a read outside the buffer.
//
// Corpus decisions (documented in the manifest too):
//  - context: dropped from the msgid (it only disambiguates; the text pair is still a translation);
//  - plurals: the singular pair only (msgid, msgstr[0]): German has two forms, [0] is the singular;
//  - text is kept as is, except that surrounding spaces/tabs are trimmed;
//  - a pair is dropped, counted by reason, when: it is the header; either side is empty; the catalog
//    is not UTF-8 or a side is invalid UTF-8; a side contains a newline/CR (multi-line help texts)
//    or another control character except tab; the translation equals the msgid (untranslated);
//    either side is longer than max_chars code points; it duplicates an earlier pair (exact de+en);
//  - split: FNV-1a 64 of the German source; h % 10000 < valid_per_10000 -> valid, next test_per_10000
//    -> test, rest train. All pairs with the same German text land in the same split, and a pair's
//    split does not depend on the other pairs.
//  - order: within each split, pairs are sorted by (German, English), so outputs do not depend on
//    the order catalogs are read in.

#include <lnformer/core/error.hpp>
#include <lnformer/io/sha256.hpp>
#include <lnformer/metrics/tokenizer_13a.hpp>  // detail::utf8_decode

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <array>
#include <cctype>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <map>
#include <set>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace lnformer {

/// One message of a catalog.
struct MoEntry {
  std::string context;                ///< msgctxt, empty if none
  std::string msgid;                  ///< the (English) original, singular
  std::string msgid_plural;           ///< empty unless a plural entry
  std::vector<std::string> msgstr;    ///< translations: one, or one per plural form
};

/// A parsed .mo file.
struct MoCatalog {
  std::uint32_t revision = 0;
  bool big_endian = false;
  std::string header;   ///< the translation of "" (Content-Type, Plural-Forms, ...)
  std::string charset;  ///< from the header's Content-Type, lower-cased; empty if none
  std::vector<MoEntry> entries;  ///< every entry but the header, in file order
};

namespace detail {

inline std::uint32_t mo_u32(std::string_view d, std::uint64_t off, bool be) {
  auto const b = [&](std::uint64_t i) { return static_cast<std::uint32_t>(static_cast<unsigned char>(d[off + i])); };
  return be ? (b(0) << 24) | (b(1) << 16) | (b(2) << 8) | b(3) : b(0) | (b(1) << 8) | (b(2) << 16) | (b(3) << 24);
}

inline std::vector<std::string> split_nul(std::string_view s) {
  std::vector<std::string> out;
  std::size_t start = 0;
  for (std::size_t i = 0; i <= s.size(); ++i)
    if (i == s.size() || s[i] == '\0') {
      out.emplace_back(s.substr(start, i - start));
      start = i + 1;
    }
  return out;
}

inline std::string charset_of(std::string_view header) {
  auto const key = std::string_view("charset=");
  auto p = header.find(key);
  if (p == std::string_view::npos) return {};
  p += key.size();
  std::string cs;
  while (p < header.size() && header[p] != '\n' && header[p] != ';' && header[p] != ' ')
    cs.push_back(static_cast<char>(std::tolower(static_cast<unsigned char>(header[p++]))));
  return cs;
}

}  // namespace detail

/// Parses the bytes of a .mo file; `name` is used in error messages. Throws IoError on a bad magic
/// number, an unknown major revision, or any table or string outside the data.
inline MoCatalog parse_mo(std::string_view data, std::string_view name = "<memory>") {
  LNF_EXPECTS_AS(IoError, data.size() >= 28, "{}: {} bytes is too short for a .mo header (28 bytes)", name,
                 data.size());
  MoCatalog cat;
  std::uint32_t const magic_le = detail::mo_u32(data, 0, false);
  LNF_EXPECTS_AS(IoError, magic_le == 0x950412deU || magic_le == 0xde120495U,
                 "{}: not a .mo file (magic 0x{:08x}, expected 0x950412de in either byte order)", name, magic_le);
  bool const be = magic_le == 0xde120495U;
  cat.big_endian = be;
  cat.revision = detail::mo_u32(data, 4, be);
  LNF_EXPECTS_AS(IoError, (cat.revision >> 16) <= 1, "{}: unsupported .mo major revision {} (revision 0x{:08x})", name,
                 cat.revision >> 16, cat.revision);
  std::uint64_t const n = detail::mo_u32(data, 8, be);
  std::uint64_t const orig = detail::mo_u32(data, 12, be), trans = detail::mo_u32(data, 16, be);
  std::uint64_t const size = data.size();
  LNF_EXPECTS_AS(IoError, orig + 8 * n <= size && trans + 8 * n <= size,
                 "{}: {} strings need tables at [{}, {}) and [{}, {}) but the file has {} bytes (truncated?)", name, n,
                 orig, orig + 8 * n, trans, trans + 8 * n, size);
  auto const string_at = [&](std::uint64_t table, std::uint64_t i, char const* which) {
    std::uint64_t const len = detail::mo_u32(data, table + 8 * i, be), off = detail::mo_u32(data, table + 8 * i + 4, be);
    LNF_EXPECTS_AS(IoError, off + len < size && data[off + len] == '\0',
                   "{}: {} string {} of {} at offset {} with length {} runs past the end of the file ({} bytes) or "
                   "lacks its terminating NUL",
                   name, which, i, n, off, len, size);
    return data.substr(off, len);
  };
  cat.entries.reserve(n);
  for (std::uint64_t i = 0; i < n; ++i) {
    std::string_view id = string_at(orig, i, "original");
    std::string_view const tr = string_at(trans, i, "translation");
    if (id.empty()) {
      cat.header = std::string(tr);
      cat.charset = detail::charset_of(tr);
      continue;
    }
    MoEntry e;
    if (auto const ctx = id.find('\x04'); ctx != std::string_view::npos) {
      e.context = std::string(id.substr(0, ctx));
      id.remove_prefix(ctx + 1);
    }
    if (auto const nul = id.find('\0'); nul != std::string_view::npos) {
      e.msgid_plural = std::string(id.substr(nul + 1));
      id = id.substr(0, nul);
    }
    e.msgid = std::string(id);
    e.msgstr = detail::split_nul(tr);
    cat.entries.push_back(std::move(e));
  }
  return cat;
}

/// Reads and parses a .mo file; IoError if it cannot be read or is malformed.
inline MoCatalog read_mo(std::filesystem::path const& path) {
  std::ifstream in(path, std::ios::binary);
  LNF_EXPECTS_AS(IoError, in.good(), "cannot open .mo file {}", path.string());
  std::string const data{std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
  LNF_EXPECTS_AS(IoError, !in.bad(), "error reading .mo file {}", path.string());
  return parse_mo(data, path.string());
}

// --- the corpus ---------------------------------------------------------------------------------

struct CorpusOptions {
  std::size_t max_chars = 200;         ///< drop pairs with a side longer than this (code points)
  std::uint32_t valid_per_10000 = 250;  ///< share of German sources in valid (2.5%)
  std::uint32_t test_per_10000 = 250;   ///< share in test
};

/// A German-English pair.
struct SentencePair {
  std::string de, en;
  auto operator<=>(SentencePair const&) const = default;
};

/// Filters, deduplicates and splits pairs fed catalog by catalog; counts every drop by reason.
class GettextCorpus {
 public:
  explicit GettextCorpus(CorpusOptions o = {}) : opt_(o) {}

  /// Adds the pairs of one catalog; `origin` (e.g. "coreutils/coreutils.mo") goes to the manifest.
  void add(MoCatalog const& cat, std::string const& origin) {
    std::int64_t kept = 0;
    bool const utf8 = cat.charset.empty() || cat.charset == "utf-8" || cat.charset == "utf8";
    for (auto const& e : cat.entries) {
      ++messages_;
      std::string_view const reason = utf8 ? add_pair(e) : "not_utf8_catalog";
      if (reason.empty()) ++kept;
      else ++dropped_[std::string(reason)];
    }
    catalogs_.push_back({origin, static_cast<std::int64_t>(cat.entries.size()), kept});
  }

  /// Why a German-English pair would be dropped ("" if it is kept); trims it in place.
  [[nodiscard]] std::string_view check(std::string& de, std::string& en) const {
    trim(de);
    trim(en);
    if (de.empty() || en.empty()) return "empty";
    std::size_t len_de = 0, len_en = 0;
    if (auto r = scan(de, len_de); !r.empty()) return r;
    if (auto r = scan(en, len_en); !r.empty()) return r;
    if (de == en) return "untranslated";
    if (len_de > opt_.max_chars || len_en > opt_.max_chars) return "too_long";
    return {};
  }

  /// Which split a German source goes to: 0 train, 1 valid, 2 test.
  [[nodiscard]] int split_of(std::string_view de) const {
    std::uint64_t const b = fnv1a64(de) % 10000;
    if (b < opt_.valid_per_10000) return 1;
    if (b < opt_.valid_per_10000 + opt_.test_per_10000) return 2;
    return 0;
  }

  /// The kept pairs of a split (0 train, 1 valid, 2 test), sorted.
  [[nodiscard]] std::vector<SentencePair> split(int which) const {
    std::vector<SentencePair> out;
    for (auto const& p : pairs_)
      if (split_of(p.de) == which) out.push_back(p);
    return out;  // std::set order: sorted by (de, en)
  }

  [[nodiscard]] std::int64_t messages() const { return messages_; }
  [[nodiscard]] std::int64_t kept() const { return static_cast<std::int64_t>(pairs_.size()); }
  [[nodiscard]] std::map<std::string, std::int64_t> const& dropped() const { return dropped_; }
  [[nodiscard]] CorpusOptions const& options() const { return opt_; }

  /// Writes {train,valid,test}.{de,en} into `dir` (one pair per line, "\n" endings) and returns the
  /// manifest fragment describing them: counts, filters, drops by reason, sizes and SHA-256 of files.
  nlohmann::json write(std::filesystem::path const& dir) const {
    std::filesystem::create_directories(dir);
    nlohmann::json m;
    m["options"] = {{"max_chars", opt_.max_chars},
                    {"valid_per_10000", opt_.valid_per_10000},
                    {"test_per_10000", opt_.test_per_10000},
                    {"split_hash", "fnv1a64(German source) % 10000"},
                    {"plural", "singular msgid with msgstr[0]"},
                    {"context", "dropped from the msgid"}};
    m["counts"] = {{"messages", messages_}, {"kept", kept()}, {"dropped", dropped_}};
    m["catalogs"] = nlohmann::json::array();
    for (auto const& c : catalogs_) m["catalogs"].push_back({{"catalog", c.origin}, {"messages", c.messages}, {"kept", c.kept}});
    static constexpr std::array<char const*, 3> names{"train", "valid", "test"};
    for (std::size_t s = 0; s < 3; ++s) {
      auto const pairs = split(static_cast<int>(s));
      m["splits"][names[s]]["pairs"] = pairs.size();
      for (auto const lang : {"de", "en"}) {
        std::string text;
        for (auto const& p : pairs) text.append(lang[0] == 'd' ? p.de : p.en).push_back('\n');
        auto const file = fmt::format("{}.{}", names[s], lang);
        write_file(dir / file, text);
        m["splits"][names[s]]["files"][file] = {{"bytes", text.size()}, {"sha256", sha256_hex(text)}};
      }
    }
    return m;
  }

  static std::uint64_t fnv1a64(std::string_view s) {
    std::uint64_t h = 0xcbf29ce484222325ULL;
    for (char c : s) h = (h ^ static_cast<unsigned char>(c)) * 0x100000001b3ULL;
    return h;
  }

 private:
  struct CatalogInfo {
    std::string origin;
    std::int64_t messages, kept;
  };

  std::string_view add_pair(MoEntry const& e) {
    std::string en = e.msgid, de = e.msgstr.empty() ? std::string() : e.msgstr.front();
    if (auto r = check(de, en); !r.empty()) return r;
    if (!pairs_.insert(SentencePair{std::move(de), std::move(en)}).second) return "duplicate";
    return {};
  }

  static void trim(std::string& s) {
    auto const ws = [](char c) { return c == ' ' || c == '\t'; };
    auto b = std::find_if_not(s.begin(), s.end(), ws);
    auto e = std::find_if_not(s.rbegin(), std::reverse_iterator(b), ws).base();
    s = std::string(b, e);
  }

  /// "" if `s` is single-line valid UTF-8 without control characters (tab allowed); sets its length.
  static std::string_view scan(std::string_view s, std::size_t& code_points) {
    code_points = 0;
    for (std::size_t i = 0; i < s.size();) {
      auto const c = static_cast<unsigned char>(s[i]);
      if (c == '\n' || c == '\r') return "multiline";
      if ((c < 0x20 && c != '\t') || c == 0x7F) return "control_char";
      std::size_t len = 1;
      if (c >= 0x80) {
        try {
          detail::utf8_decode(s, i, len);
        } catch (ValueError const&) {
          return "invalid_utf8";
        }
      }
      i += len;
      ++code_points;
    }
    return {};
  }

  // Whole or not at all: `path.tmp` renamed over `path`; a failure (a full disk) removes the
  // temporary file and names the file and the reason.
  static void write_file(std::filesystem::path const& path, std::string const& text) {
    std::string const tmp = path.string() + ".tmp";
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    LNF_EXPECTS_AS(IoError, out.good(), "cannot create {}: {}", tmp, std::strerror(errno));
    out.write(text.data(), static_cast<std::streamsize>(text.size()));
    out.close();  // flushes
    bool ok = !out.fail();
    int err = errno;
    if (ok && std::rename(tmp.c_str(), path.string().c_str()) != 0) ok = false, err = errno;
    if (!ok) std::remove(tmp.c_str());
    LNF_EXPECTS_AS(IoError, ok, "error writing {} ({} bytes): {}", path.string(), text.size(), std::strerror(err));
  }

  CorpusOptions opt_;
  std::set<SentencePair> pairs_;
  std::map<std::string, std::int64_t> dropped_;
  std::vector<CatalogInfo> catalogs_;
  std::int64_t messages_ = 0;
};

}  // namespace lnformer
