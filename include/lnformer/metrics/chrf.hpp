#pragma once
// Corpus chrF identical to sacreBLEU 2.x's default CHRF(): character n-grams of order 1..6 over code
// points, whitespace removed (Python's str.split() whitespace), no word n-grams, beta 2, and
// "effective order" averaging (eps_smoothing=False): precision and recall are averaged over the
// orders where both hypothesis and reference have n-grams, then combined into an F-beta score.
// Corpus level as sacreBLEU: per segment the statistics of the reference with the best F-score are
// summed over the corpus, then one F-score is computed. Score on 0-100.
// Follows sacrebleu/metrics/chrf.py (CHRF._get_match_statistics, _compute_f_score,
// _compute_segment_statistics) and helpers.py (extract_all_char_ngrams).

#include <lnformer/metrics/bleu.hpp>

#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace lnformer {

/// chrF settings; the defaults are sacreBLEU's. `eps_smoothing` selects the chrF++.py/NLTK-style
/// per-order average instead of the effective-order average (the sacreBLEU default is false).
struct ChrfOptions {
  int char_order = 6;
  int beta = 2;
  bool whitespace = false;  ///< keep whitespace inside character n-grams
  bool eps_smoothing = false;
};

/// A corpus chrF score with its summed statistics: stats[3*(n-1) + {0,1,2}] = hypothesis, reference
/// and matching character n-grams of order n.
struct ChrfScore {
  double score = 0.0;  ///< 0-100
  ChrfOptions options;
  std::vector<std::int64_t> stats;
  int nrefs = 1;  ///< references per segment, -1 if it varies

  /// e.g. "nrefs:1|case:mixed|eff:yes|nc:6|nw:0|space:no|version:2.3.1"
  [[nodiscard]] std::string signature() const {
    return fmt::format("nrefs:{}|case:mixed|eff:{}|nc:{}|nw:0|space:{}|version:{}",
                       nrefs < 0 ? std::string("var") : std::to_string(nrefs), options.eps_smoothing ? "no" : "yes",
                       options.char_order, options.whitespace ? "yes" : "no", sacrebleu_version);
  }
  /// "chrF2 = 59.73", or "chrF2|<signature> = 59.73".
  [[nodiscard]] std::string format(bool with_signature = false) const {
    return fmt::format("chrF{}{} = {:.2f}", options.beta, with_signature ? "|" + signature() : std::string(), score);
  }
};

/// chrF from summed statistics (CHRF._compute_f_score), same operation order as sacreBLEU.
inline double chrf_f_score(std::span<std::int64_t const> stats, ChrfOptions const& o) {
  constexpr double eps = 1e-16;
  double const factor = static_cast<double>(o.beta) * o.beta;
  double score = 0.0, avg_prec = 0.0, avg_rec = 0.0;
  int effective = 0;
  for (std::size_t i = 0; i < static_cast<std::size_t>(o.char_order); ++i) {
    auto const n_hyp = stats[3 * i], n_ref = stats[3 * i + 1], n_match = stats[3 * i + 2];
    double const prec = n_hyp > 0 ? static_cast<double>(n_match) / static_cast<double>(n_hyp) : eps;
    double const rec = n_ref > 0 ? static_cast<double>(n_match) / static_cast<double>(n_ref) : eps;
    double const denom = factor * prec + rec;
    score += denom > 0 ? (1 + factor) * prec * rec / denom : eps;
    if (n_hyp > 0 && n_ref > 0) {
      avg_prec += prec;
      avg_rec += rec;
      ++effective;
    }
  }
  if (o.eps_smoothing) return 100 * score / o.char_order;
  if (effective == 0) return 0.0;
  avg_prec /= effective;
  avg_rec /= effective;
  if (avg_prec + avg_rec == 0.0) return 0.0;
  double f = (1 + factor) * avg_prec * avg_rec;
  f /= factor * avg_prec + avg_rec;
  return 100 * f;
}

namespace detail {

/// Code points of `s` without whitespace (unless keep_space), as chrF sees a segment.
inline std::u32string chrf_chars(std::string_view s, bool keep_space) {
  std::u32string out;
  for (std::size_t i = 0; i < s.size();) {
    std::size_t len = 0;
    char32_t const c = utf8_decode(s, i, len);
    if (keep_space || !is_python_space(c)) out.push_back(c);
    i += len;
  }
  return out;
}

using CharNgramCounts = std::unordered_map<std::u32string_view, std::int64_t>;

inline std::vector<CharNgramCounts> char_ngrams(std::u32string const& s, int max_order) {
  std::vector<CharNgramCounts> out(static_cast<std::size_t>(max_order));
  for (std::size_t n = 1; n <= out.size(); ++n)
    for (std::size_t i = 0; i + n <= s.size(); ++i) ++out[n - 1][std::u32string_view(s).substr(i, n)];
  return out;
}

}  // namespace detail

/// Corpus chrF of `hyps` against reference streams (ref_streams[k][i], "" = missing), as corpus_bleu.
inline ChrfScore corpus_chrf(std::span<std::string const> hyps, std::span<std::vector<std::string> const> ref_streams,
                             ChrfOptions const& o = {}) {
  LNF_EXPECTS_AS(ValueError, o.char_order >= 1 && o.beta >= 1, "chrF: char_order {} and beta {} must be >= 1",
                 o.char_order, o.beta);
  detail::check_corpus_sizes("chrF", hyps, ref_streams);
  ChrfScore r;
  r.options = o;
  r.stats.assign(3 * static_cast<std::size_t>(o.char_order), 0);
  std::vector<std::int64_t> stats(r.stats.size()), best(r.stats.size());
  int nrefs = 0;
  for (std::size_t i = 0; i < hyps.size(); ++i) {
    auto const refs = detail::segment_references(ref_streams, i, nrefs);
    std::u32string const hyp_chars = detail::chrf_chars(hyps[i], o.whitespace);
    auto const hyp = detail::char_ngrams(hyp_chars, o.char_order);
    double best_f = -1.0;
    for (auto ref_text : refs) {
      std::u32string const ref_chars = detail::chrf_chars(ref_text, o.whitespace);
      auto const ref = detail::char_ngrams(ref_chars, o.char_order);
      for (std::size_t n = 0; n < hyp.size(); ++n) {
        std::int64_t hyp_count = 0, ref_count = 0, match = 0;
        for (auto const& [g, c] : hyp[n]) {
          hyp_count += c;
          if (auto it = ref[n].find(g); it != ref[n].end()) match += std::min(c, it->second);
        }
        for (auto const& [g, c] : ref[n]) ref_count += c;
        stats[3 * n] = ref[n].empty() ? 0 : hyp_count;  // no reference n-grams: hits not counted
        stats[3 * n + 1] = ref_count;
        stats[3 * n + 2] = match;
      }
      double const f = chrf_f_score(stats, o);
      if (f > best_f) best_f = f, best = stats;
    }
    for (std::size_t k = 0; k < best.size(); ++k) r.stats[k] += best[k];
  }
  r.score = chrf_f_score(r.stats, o);
  r.nrefs = nrefs;
  return r;
}

/// Corpus chrF with one reference per segment.
inline ChrfScore corpus_chrf(std::span<std::string const> hyps, std::span<std::string const> refs,
                             ChrfOptions const& o = {}) {
  std::vector<std::vector<std::string>> const streams{std::vector<std::string>(refs.begin(), refs.end())};
  return corpus_chrf(hyps, std::span<std::vector<std::string> const>(streams), o);
}

}  // namespace lnformer
