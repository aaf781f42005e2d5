#pragma once
// Beam search for Seq2Seq models, as fairseq's SequenceGenerator does it in essence, on the
// IncrementalDecoder (decode/incremental.hpp):
//
//   - every sentence of the batch has its own beam of at most `beam` live hypotheses; step t extends
//     each by every token (cumulative log-probabilities) and keeps the 2*beam best candidates;
//   - candidates ending in EOS among the first `beam` of them are finished, scored
//     sum(log p) / len^length_penalty, where len counts the tokens and the EOS;
//   - the first `beam` candidates not ending in EOS live on;
//   - a sentence is done when it has `beam` finished hypotheses, or at its maximum length, where EOS
//     is forced; its rows then leave the batch.
//   max length (tokens, EOS not counted) = floor(max_len_a * src_len + max_len_b), capped at the
//   model's max_positions - 1, where src_len is the sentence's own number of tokens (EOS not counted;
//   fairseq uses the padded batch width, which makes results depend on the batch). EOS is not allowed
//   before min_len tokens; padding never is.
// Greedy search is beam = 1. greedy_decode (decode/greedy.hpp) keeps its older rule for padding.

#include <lnformer/decode/greedy.hpp>
#include <lnformer/decode/incremental.hpp>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <vector>

namespace lnformer {

struct BeamOptions {
  int beam = 5;                 ///< hypotheses kept per sentence (1 = greedy)
  double length_penalty = 1.0;  ///< alpha: score = sum log p / len^alpha (len includes EOS); 0 = raw sum
  double max_len_a = 0.0;       ///< max output tokens = floor(a * source tokens + b), capped by the model
  std::int64_t max_len_b = 200;
  std::int64_t min_len = 1;     ///< no EOS before this many tokens (fairseq's default 1: no empty output)
  int nbest = 1;                ///< hypotheses returned per sentence, best first (<= beam)
  double unk_penalty = 0.0;     ///< subtracted from unk's log-probability (fairseq's --unkpen)
};

struct Hypothesis {
  std::vector<std::int32_t> tokens;      ///< without the final EOS
  double score = 0;                      ///< log_prob / (tokens.size() + 1)^length_penalty
  double log_prob = 0;                   ///< sum of the positional scores
  std::vector<float> positional_scores;  ///< log p of each token, then of EOS
};

namespace detail {

inline void check_beam_options(BeamOptions const& o) {
  LNF_EXPECTS_AS(ValueError, o.beam >= 1, "beam_search: beam size {} must be >= 1", o.beam);
  LNF_EXPECTS_AS(ValueError, o.nbest >= 1 && o.nbest <= o.beam, "beam_search: nbest {} must lie in [1, beam = {}]",
                 o.nbest, o.beam);
  LNF_EXPECTS_AS(ValueError, o.max_len_a >= 0 && o.max_len_b >= 0 && std::isfinite(o.max_len_a),
                 "beam_search: max length a * src_len + b needs a >= 0 and b >= 0, got a = {}, b = {}", o.max_len_a,
                 o.max_len_b);
  LNF_EXPECTS_AS(ValueError, o.min_len >= 0, "beam_search: min_len {} must be >= 0", o.min_len);
  LNF_EXPECTS_AS(ValueError, std::isfinite(o.length_penalty), "beam_search: length_penalty {} is not finite",
                 o.length_penalty);
}

/// log-softmax of one row, in double, into out (float).
inline void log_softmax_row(float const* x, std::int64_t v, float* out) {
  float m = -std::numeric_limits<float>::infinity();
  for (std::int64_t j = 0; j < v; ++j) m = std::max(m, x[j]);
  double s = 0;
  for (std::int64_t j = 0; j < v; ++j) s += std::exp(static_cast<double>(x[j]) - m);
  double const lse = static_cast<double>(m) + std::log(s);
  for (std::int64_t j = 0; j < v; ++j) out[j] = static_cast<float>(static_cast<double>(x[j]) - lse);
}

}  // namespace detail

/// The maximum number of output tokens (EOS not counted) for a source of src_tokens tokens.
inline std::int64_t beam_max_length(BeamOptions const& o, std::int64_t src_tokens, std::int64_t max_positions) {
  auto const want = static_cast<std::int64_t>(std::floor(o.max_len_a * static_cast<double>(src_tokens))) + o.max_len_b;
  return std::min(want, max_positions - 1);
}

/// The `nbest` best hypotheses of each source sentence (token ids without special tokens), best first.
template <class Norm, class B>
std::vector<std::vector<Hypothesis>> beam_search(Seq2Seq<Norm, B>& model,
                                                 std::vector<std::vector<std::int32_t>> const& src,
                                                 BeamOptions const& opt = {}, SpecialTokens sp = {}) {
  detail::check_beam_options(opt);
  std::size_t const n = src.size();
  std::vector<std::vector<Hypothesis>> finished(n);
  if (n == 0) return finished;
  std::int64_t const v = model.config().vocab;
  auto const k = static_cast<std::size_t>(opt.beam);
  float const ninf = -std::numeric_limits<float>::infinity();

  IncrementalDecoder<Norm, B> dec(model);
  dec.start(src, sp);

  struct Live {
    std::vector<std::int32_t> tokens;
    std::vector<float> pos;
    double score = 0;  // cumulative log-probability
  };
  std::vector<std::vector<Live>> live(n);
  std::vector<std::int64_t> max_len(n);
  std::vector<bool> done(n, false);
  for (std::size_t i = 0; i < n; ++i) {
    live[i].push_back(Live{});
    max_len[i] = beam_max_length(opt, static_cast<std::int64_t>(src[i].size()), model.config().max_positions);
  }
  // Rows of the decoder: live hypotheses of the unfinished sentences, sentence by sentence.
  std::vector<std::int32_t> row_tokens(n, sp.eos);
  std::vector<float> lprobs;
  struct Cand {
    double score;
    std::int32_t hyp, tok;
  };
  std::vector<Cand> cands;
  auto finish = [&](std::size_t i, Live const& h, float eos_lp, double score) {
    Hypothesis f;
    f.tokens = h.tokens;
    f.positional_scores = h.pos;
    f.positional_scores.push_back(eos_lp);
    f.log_prob = score;
    f.score = score / std::pow(static_cast<double>(h.tokens.size() + 1), opt.length_penalty);
    finished[i].push_back(std::move(f));
  };

  for (std::int64_t step = 0;; ++step) {
    CView<B> logits = dec.advance(row_tokens);
    auto const host = detail::view_to_host(logits);
    lprobs.resize(host.size());
    std::vector<std::int32_t> parents, next_tokens;
    std::size_t row = 0;
    for (std::size_t i = 0; i < n; ++i) {
      if (done[i]) continue;
      std::size_t const first_row = row;
      row += live[i].size();
      // Candidates: every live hypothesis times every allowed token.
      cands.clear();
      bool const force_eos = step >= max_len[i];
      for (std::size_t h = 0; h < live[i].size(); ++h) {
        float* lp = lprobs.data() + static_cast<std::int64_t>(first_row + h) * v;
        detail::log_softmax_row(host.data() + static_cast<std::int64_t>(first_row + h) * v, v, lp);
        lp[sp.pad] = ninf;
        if (opt.unk_penalty != 0 && sp.unk >= 0 && sp.unk < v) lp[sp.unk] -= static_cast<float>(opt.unk_penalty);
        if (step < opt.min_len && !force_eos) lp[sp.eos] = ninf;
        for (std::int32_t w = 0; w < v; ++w) {
          if (force_eos && w != sp.eos) continue;
          if (lp[w] == ninf) continue;
          cands.push_back({live[i][h].score + static_cast<double>(lp[w]), static_cast<std::int32_t>(h), w});
        }
      }
      // The 2k best, ties to the lower hypothesis, then the lower token.
      auto const keep = std::min(cands.size(), 2 * k);
      std::partial_sort(cands.begin(), cands.begin() + static_cast<std::ptrdiff_t>(keep), cands.end(),
                        [](Cand const& a, Cand const& b) {
                          if (a.score != b.score) return a.score > b.score;
                          if (a.hyp != b.hyp) return a.hyp < b.hyp;
                          return a.tok < b.tok;
                        });
      cands.resize(keep);
      std::vector<Live> next;
      for (std::size_t c = 0; c < cands.size(); ++c) {
        auto const& cd = cands[c];
        Live const& parent = live[i][static_cast<std::size_t>(cd.hyp)];
        float const lp = lprobs[static_cast<std::size_t>(static_cast<std::int64_t>(first_row) * v +
                                                         static_cast<std::int64_t>(cd.hyp) * v + cd.tok)];
        if (cd.tok == sp.eos) {
          if (c < k && finished[i].size() < k) finish(i, parent, lp, cd.score);
        } else if (next.size() < k) {
          Live h = parent;
          h.tokens.push_back(cd.tok);
          h.pos.push_back(lp);
          h.score = cd.score;
          next.push_back(std::move(h));
          parents.push_back(static_cast<std::int32_t>(first_row) + cd.hyp);
          next_tokens.push_back(cd.tok);
        }
      }
      if (finished[i].size() >= k || force_eos || next.empty()) {
        done[i] = true;
        // Drop the rows just added for this sentence.
        parents.resize(parents.size() - next.size());
        next_tokens.resize(next_tokens.size() - next.size());
        live[i].clear();
      } else {
        live[i] = std::move(next);
      }
    }
    if (parents.empty()) break;
    dec.reorder(parents);
    row_tokens = std::move(next_tokens);
  }
  for (auto& f : finished) {
    std::stable_sort(f.begin(), f.end(), [](Hypothesis const& a, Hypothesis const& b) { return a.score > b.score; });
    if (f.size() > static_cast<std::size_t>(opt.nbest)) f.resize(static_cast<std::size_t>(opt.nbest));
  }
  return finished;
}

/// The best hypothesis of each sentence, tokens only (empty where none finished, which cannot happen
/// unless the vocabulary allows nothing).
template <class Norm, class B>
std::vector<std::vector<std::int32_t>> beam_decode(Seq2Seq<Norm, B>& model,
                                                   std::vector<std::vector<std::int32_t>> const& src,
                                                   BeamOptions const& opt = {}, SpecialTokens sp = {}) {
  auto const nb = beam_search(model, src, opt, sp);
  std::vector<std::vector<std::int32_t>> out(nb.size());
  for (std::size_t i = 0; i < nb.size(); ++i)
    if (!nb[i].empty()) out[i] = nb[i].front().tokens;
  return out;
}

/// Teacher-forced log-probabilities of given outputs (tokens without EOS; EOS is scored as well):
/// per sentence, log p of each token then of EOS. Uses the model's ordinary (full) forward pass.
template <class Norm, class B>
std::vector<std::vector<float>> sequence_log_probs(Seq2Seq<Norm, B>& model,
                                                   std::vector<std::vector<std::int32_t>> const& src,
                                                   std::vector<std::vector<std::int32_t>> const& tgt,
                                                   SpecialTokens sp = {}) {
  auto const batch = make_batch<B>(src, tgt, sp);
  (void)model.forward(batch, ForwardContext{.training = false});
  auto const logits = detail::view_to_host(model.logits());
  std::int64_t const v = model.config().vocab, tt = batch.prev.size(1);
  std::vector<std::vector<float>> out(src.size());
  std::vector<float> lp(static_cast<std::size_t>(v));
  for (std::size_t i = 0; i < src.size(); ++i) {
    for (std::size_t t = 0; t <= tgt[i].size(); ++t) {
      std::int64_t const row = static_cast<std::int64_t>(i) * tt + static_cast<std::int64_t>(t);
      detail::log_softmax_row(logits.data() + row * v, v, lp.data());
      std::int32_t const y = t < tgt[i].size() ? tgt[i][t] : sp.eos;
      out[i].push_back(lp[static_cast<std::size_t>(y)]);
    }
  }
  return out;
}

}  // namespace lnformer
