#pragma once
// Corpus BLEU identical to sacreBLEU 2.x's default (`sacrebleu hyp < ref`, `BLEU().corpus_score`):
// 13a tokenization, n-grams up to 4 with counts clipped by the (max over references) reference count,
// corpus-level brevity penalty from the closest reference length per segment, smoothing 'exp'
// (the NIST/mteval-v13a method: the k-th order with no match gets precision 100 / (2^k * total)),
// no effective order, score on 0-100. Compatibility is claimed with sacreBLEU 2.3.1 (the signature
// says so); the sources followed are sacrebleu/metrics/bleu.py, base.py, helpers.py and utils.py.
// tests/metrics/bleu_reference.py is a line-by-line Python transcription used to check every number.

#include <lnformer/core/error.hpp>
#include <lnformer/metrics/tokenizer_13a.hpp>

#include <fmt/format.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace lnformer {

/// The sacreBLEU version whose default BLEU and chrF these implementations reproduce.
inline constexpr std::string_view sacrebleu_version = "2.3.1";

/// A corpus BLEU score and its sufficient statistics, as sacreBLEU's BLEUScore.
struct BleuScore {
  static constexpr std::size_t max_order = 4;
  double score = 0.0;                          ///< 0-100
  std::array<double, max_order> precisions{};  ///< percent, smoothed; 0 after the first order with no n-grams
  std::array<std::int64_t, max_order> counts{};  ///< clipped matching n-grams per order
  std::array<std::int64_t, max_order> totals{};  ///< hypothesis n-grams per order
  double bp = 0.0;                             ///< brevity penalty
  double ratio = 0.0;                          ///< sys_len / ref_len (0 if ref_len is 0)
  std::int64_t sys_len = 0, ref_len = 0;       ///< tokens; ref_len sums the closest reference lengths
  int nrefs = 1;                               ///< references per segment, -1 if it varies ("var")

  /// sacreBLEU's signature, e.g. "nrefs:1|case:mixed|eff:no|tok:13a|smooth:exp|version:2.3.1".
  [[nodiscard]] std::string signature() const {
    return fmt::format("nrefs:{}|case:mixed|eff:no|tok:13a|smooth:exp|version:{}",
                       nrefs < 0 ? std::string("var") : std::to_string(nrefs), sacrebleu_version);
  }
  /// sacreBLEU's text line: "BLEU = 48.53 82.4/50.0/45.5/37.5 (BP = 0.943 ratio = 0.944 hyp_len = 17
  /// ref_len = 18)"; with_signature gives "BLEU|<signature> = 48.53 ..." as `sacrebleu -f text`.
  [[nodiscard]] std::string format(bool with_signature = false) const {
    return fmt::format("BLEU{} = {:.2f} {:.1f}/{:.1f}/{:.1f}/{:.1f} (BP = {:.3f} ratio = {:.3f} hyp_len = {} ref_len = {})",
                       with_signature ? "|" + signature() : std::string(), score, precisions[0], precisions[1],
                       precisions[2], precisions[3], bp, ratio, sys_len, ref_len);
  }
};

/// BLEU from summed statistics (sacreBLEU's BLEU.compute_bleu with smooth_method='exp',
/// effective_order=False), in the same floating-point operation order, so results are bit-identical.
inline BleuScore compute_bleu(std::array<std::int64_t, 4> const& counts, std::array<std::int64_t, 4> const& totals,
                              std::int64_t sys_len, std::int64_t ref_len) {
  BleuScore r;
  r.counts = counts;
  r.totals = totals;
  r.sys_len = sys_len;
  r.ref_len = ref_len;
  r.ratio = ref_len ? static_cast<double>(sys_len) / static_cast<double>(ref_len) : 0.0;
  if (sys_len < ref_len)
    r.bp = sys_len > 0 ? std::exp(1.0 - static_cast<double>(ref_len) / static_cast<double>(sys_len)) : 0.0;
  else
    r.bp = 1.0;
  bool any = false;
  for (auto c : counts) any = any || c != 0;
  if (!any) return r;  // sacreBLEU's early exit (#141): score and precisions 0

  double smooth = 1.0;
  for (std::size_t n = 0; n < BleuScore::max_order; ++n) {
    if (totals[n] == 0) break;  // the remaining precisions stay 0, so the score is 0
    if (counts[n] == 0) {
      smooth *= 2;
      r.precisions[n] = 100.0 / (smooth * static_cast<double>(totals[n]));
    } else {
      r.precisions[n] = 100.0 * static_cast<double>(counts[n]) / static_cast<double>(totals[n]);
    }
  }
  double log_sum = 0.0;  // sacrebleu.utils.my_log: log(0) is floored to -9999999999
  for (double p : r.precisions) log_sum += p == 0.0 ? -9999999999.0 : std::log(p);
  r.score = r.bp * std::exp(log_sum / static_cast<double>(BleuScore::max_order));
  return r;
}

namespace detail {

/// Counts of every 1..4-gram of a tokenized segment; an n-gram is the substring spanning its tokens
/// (tokens are joined by single spaces), so keys are views into `tokenized`.
using NgramCounts = std::unordered_map<std::string_view, std::int64_t>;

inline std::int64_t count_word_ngrams(std::string_view tokenized, NgramCounts& out) {
  auto const tokens = python_split(tokenized);
  auto const len = static_cast<std::int64_t>(tokens.size());
  for (std::size_t n = 1; n <= BleuScore::max_order; ++n)
    for (std::size_t i = 0; i + n <= tokens.size(); ++i) {
      char const* b = tokens[i].data();
      char const* e = tokens[i + n - 1].data() + tokens[i + n - 1].size();
      ++out[std::string_view(b, static_cast<std::size_t>(e - b))];
    }
  return len;
}

/// The non-empty references of segment i ("" marks a missing one, as in sacreBLEU), with the
/// reference-count bookkeeping for the signature. Throws ValueError when a segment has none.
template <class Refs>
std::vector<std::string_view> segment_references(Refs const& ref_streams, std::size_t i, int& nrefs) {
  std::vector<std::string_view> lines;
  for (auto const& stream : ref_streams)
    if (!stream[i].empty()) lines.emplace_back(stream[i]);
  LNF_EXPECTS_AS(ValueError, !lines.empty(), "segment {} has no reference (all {} references are empty)", i,
                 ref_streams.size());
  int const k = static_cast<int>(lines.size());
  nrefs = (i == 0 || nrefs == k) ? k : -1;
  return lines;
}

template <class Refs>
void check_corpus_sizes(char const* metric, std::span<std::string const> hyps, Refs const& ref_streams) {
  LNF_EXPECTS_AS(ValueError, !ref_streams.empty(), "{}: no reference stream given", metric);
  LNF_EXPECTS_AS(ValueError, !hyps.empty(), "{}: no hypotheses (an empty corpus has no score)", metric);
  for (std::size_t k = 0; k < ref_streams.size(); ++k)
    LNF_EXPECTS_AS(ValueError, ref_streams[k].size() == hyps.size(),
                   "{}: {} hypotheses but reference stream {} has {} segments", metric, hyps.size(), k,
                   ref_streams[k].size());
}

}  // namespace detail

/// Corpus BLEU of `hyps` against one or more reference streams: ref_streams[k][i] is the k-th
/// reference of segment i (sacreBLEU's layout); an empty string marks a missing reference. Throws
/// ValueError when a stream's length differs from hyps.size(), a segment has no reference, the
/// corpus is empty, or a line is not valid UTF-8.
inline BleuScore corpus_bleu(std::span<std::string const> hyps, std::span<std::vector<std::string> const> ref_streams) {
  detail::check_corpus_sizes("BLEU", hyps, ref_streams);
  std::array<std::int64_t, 4> counts{}, totals{};
  std::int64_t sys_len = 0, ref_len = 0;
  int nrefs = 0;
  std::vector<std::string> ref_tok;
  for (std::size_t i = 0; i < hyps.size(); ++i) {
    auto const refs = detail::segment_references(ref_streams, i, nrefs);
    // reference n-grams: per n-gram the max count over the references (BLEU._extract_reference_info)
    ref_tok.clear();
    for (auto r : refs) ref_tok.push_back(tokenize_13a(detail::python_rstrip(r)));
    detail::NgramCounts ref_ngrams, one;
    std::vector<std::int64_t> ref_lens;
    for (auto const& r : ref_tok) {
      one.clear();
      ref_lens.push_back(detail::count_word_ngrams(r, one));
      for (auto const& [g, c] : one) {
        auto& m = ref_ngrams[g];
        m = std::max(m, c);
      }
    }
    std::string const hyp = tokenize_13a(detail::python_rstrip(hyps[i]));
    detail::NgramCounts hyp_ngrams;
    std::int64_t const hyp_len = detail::count_word_ngrams(hyp, hyp_ngrams);
    // closest reference length, the shorter one on a tie (BLEU._get_closest_ref_len)
    std::int64_t best_diff = -1, best_len = -1;
    for (auto len : ref_lens) {
      std::int64_t const diff = len > hyp_len ? len - hyp_len : hyp_len - len;
      if (best_diff == -1 || diff < best_diff) best_diff = diff, best_len = len;
      else if (diff == best_diff && len < best_len) best_len = len;
    }
    sys_len += hyp_len;
    ref_len += best_len;
    for (auto const& [g, c] : hyp_ngrams) {
      auto const n = static_cast<std::size_t>(std::count(g.begin(), g.end(), ' '));  // order - 1
      totals[n] += c;
      if (auto it = ref_ngrams.find(g); it != ref_ngrams.end()) counts[n] += std::min(c, it->second);
    }
  }
  BleuScore r = compute_bleu(counts, totals, sys_len, ref_len);
  r.nrefs = nrefs;
  return r;
}

/// Corpus BLEU with one reference per segment.
inline BleuScore corpus_bleu(std::span<std::string const> hyps, std::span<std::string const> refs) {
  std::vector<std::vector<std::string>> const streams{std::vector<std::string>(refs.begin(), refs.end())};
  return corpus_bleu(hyps, std::span<std::vector<std::string> const>(streams));
}

}  // namespace lnformer
