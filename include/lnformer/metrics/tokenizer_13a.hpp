#pragma once
// sacreBLEU's default BLEU tokenizer "13a" (mteval-v13a.pl), byte for byte, on UTF-8 text.
// Follows sacrebleu/tokenizers/tokenizer_13a.py and tokenizer_re.py (sacreBLEU 2.x):
//   1. remove "<skipped>", join "-\n" line breaks, other "\n" -> " ", unescape &quot; &amp; &lt; &gt;
//      (in that order, each a left-to-right replace-all, so "&amp;lt;" becomes "<");
//   2. pad with one space on each side;
//   3. the four regex substitutions, each one left-to-right non-overlapping pass (Python re.sub):
//        ([{-~[-` -&(-+:-@/])   -> " \1 "     every ASCII punctuation except ' , - .  (and space)
//        ([^0-9])([.,])         -> "\1 \2 "   . and , unless preceded by a digit
//        ([.,])([^0-9])         -> " \1 \2"   . and , unless followed by a digit
//        ([0-9])(-)             -> "\1 \2 "   - after a digit
//   4. split on Python's str.split() whitespace (Unicode White_Space, see is_python_space) and join
//      with single spaces.
// Working on UTF-8 bytes gives the same output as Python working on code points: every pattern
// character is ASCII, and a UTF-8 lead or continuation byte is never an ASCII digit, '.', ',' or '-'.

#include <lnformer/core/error.hpp>

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace lnformer {

namespace detail {

/// Python's str.isspace() for one code point (what str.split() and str.rstrip() remove).
constexpr bool is_python_space(char32_t c) {
  return (c >= 0x09 && c <= 0x0D) || (c >= 0x1C && c <= 0x20) || c == 0x85 || c == 0xA0 || c == 0x1680 ||
         (c >= 0x2000 && c <= 0x200A) || c == 0x2028 || c == 0x2029 || c == 0x202F || c == 0x205F ||
         c == 0x3000;
}

/// Decodes the UTF-8 code point at s[i], sets `len` to its byte length. Throws ValueError on
/// malformed UTF-8 (truncated, overlong, surrogate, above U+10FFFF): Python would not have read it.
inline char32_t utf8_decode(std::string_view s, std::size_t i, std::size_t& len) {
  auto const b0 = static_cast<unsigned char>(s[i]);
  if (b0 < 0x80) {
    len = 1;
    return b0;
  }
  std::size_t n = 0;
  char32_t cp = 0, min = 0;
  if ((b0 & 0xE0) == 0xC0) n = 2, cp = b0 & 0x1F, min = 0x80;
  else if ((b0 & 0xF0) == 0xE0) n = 3, cp = b0 & 0x0F, min = 0x800;
  else if ((b0 & 0xF8) == 0xF0) n = 4, cp = b0 & 0x07, min = 0x10000;
  LNF_EXPECTS_AS(ValueError, n != 0 && i + n <= s.size(),
                 "invalid UTF-8: byte 0x{:02x} at offset {} does not start a complete character", b0, i);
  for (std::size_t k = 1; k < n; ++k) {
    auto const b = static_cast<unsigned char>(s[i + k]);
    LNF_EXPECTS_AS(ValueError, (b & 0xC0) == 0x80, "invalid UTF-8: byte 0x{:02x} at offset {} is not a continuation byte",
                   b, i + k);
    cp = (cp << 6) | (b & 0x3F);
  }
  LNF_EXPECTS_AS(ValueError, cp >= min && cp <= 0x10FFFF && !(cp >= 0xD800 && cp <= 0xDFFF),
                 "invalid UTF-8: overlong, surrogate or out-of-range character U+{:X} at offset {}",
                 static_cast<std::uint32_t>(cp), i);
  len = n;
  return cp;
}

/// Python's str.split(): the non-empty runs between whitespace code points, as views into `s`.
inline std::vector<std::string_view> python_split(std::string_view s) {
  std::vector<std::string_view> out;
  std::size_t start = 0, i = 0;
  bool in_word = false;
  while (i < s.size()) {
    std::size_t len = 0;
    bool const space = is_python_space(utf8_decode(s, i, len));
    if (space && in_word) out.push_back(s.substr(start, i - start));
    if (!space && !in_word) start = i;
    in_word = !space;
    i += len;
  }
  if (in_word) out.push_back(s.substr(start));
  return out;
}

/// Python's str.rstrip(): `s` without trailing whitespace code points.
inline std::string_view python_rstrip(std::string_view s) {
  std::size_t end = 0, i = 0;
  while (i < s.size()) {
    std::size_t len = 0;
    if (!is_python_space(utf8_decode(s, i, len))) end = i + len;
    i += len;
  }
  return s.substr(0, end);
}

/// Python's str.replace(from, to): every non-overlapping occurrence, left to right.
inline void replace_all(std::string& s, std::string_view from, std::string_view to) {
  std::string out;
  std::size_t pos = 0;
  for (std::size_t hit; (hit = s.find(from, pos)) != std::string::npos; pos = hit + from.size())
    out.append(s, pos, hit - pos).append(to);
  if (pos == 0) return;  // no occurrence
  out.append(s, pos);
  s = std::move(out);
}

constexpr bool is_digit(char c) { return c >= '0' && c <= '9'; }
constexpr bool is_13a_punct(char c) {  // the class [\{-\~\[-\` -\&\(-\+\:-\@\/]
  auto const u = static_cast<unsigned char>(c);
  return (u >= 0x7B && u <= 0x7E) || (u >= 0x5B && u <= 0x60) || (u >= 0x20 && u <= 0x26) ||
         (u >= 0x28 && u <= 0x2B) || (u >= 0x3A && u <= 0x40) || u == 0x2F;
}

}  // namespace detail

/// The 13a tokenization of one segment (a string of space-separated tokens, no leading or trailing
/// space). Throws ValueError if `line` is not valid UTF-8.
inline std::string tokenize_13a(std::string_view line) {
  std::string s(line);
  detail::replace_all(s, "<skipped>", "");
  detail::replace_all(s, "-\n", "");
  detail::replace_all(s, "\n", " ");
  if (s.find('&') != std::string::npos) {
    detail::replace_all(s, "&quot;", "\"");
    detail::replace_all(s, "&amp;", "&");
    detail::replace_all(s, "&lt;", "<");
    detail::replace_all(s, "&gt;", ">");
  }
  s = " " + s + " ";

  std::string t;
  t.reserve(s.size() * 2);
  for (char c : s) {  // ([{-~[-` -&(-+:-@/]) -> " \1 "
    if (detail::is_13a_punct(c)) t.append({' ', c, ' '});
    else t.push_back(c);
  }
  s.swap(t);
  t.clear();
  for (std::size_t i = 0; i < s.size();) {  // ([^0-9])([.,]) -> "\1 \2 "
    if (i + 1 < s.size() && !detail::is_digit(s[i]) && (s[i + 1] == '.' || s[i + 1] == ',')) {
      t.append({s[i], ' ', s[i + 1], ' '});
      i += 2;
    } else {
      t.push_back(s[i++]);
    }
  }
  s.swap(t);
  t.clear();
  for (std::size_t i = 0; i < s.size();) {  // ([.,])([^0-9]) -> " \1 \2"
    if (i + 1 < s.size() && (s[i] == '.' || s[i] == ',') && !detail::is_digit(s[i + 1])) {
      t.append({' ', s[i], ' ', s[i + 1]});
      i += 2;
    } else {
      t.push_back(s[i++]);
    }
  }
  s.swap(t);
  t.clear();
  for (std::size_t i = 0; i < s.size();) {  // ([0-9])(-) -> "\1 \2 "
    if (i + 1 < s.size() && detail::is_digit(s[i]) && s[i + 1] == '-') {
      t.append({s[i], ' ', '-', ' '});
      i += 2;
    } else {
      t.push_back(s[i++]);
    }
  }

  std::string out;
  out.reserve(t.size());
  for (auto const tok : detail::python_split(t)) {
    if (!out.empty()) out.push_back(' ');
    out.append(tok);
  }
  return out;
}

}  // namespace lnformer
