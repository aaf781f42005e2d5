#pragma once
// Greedy decoding for Seq2Seq models.
//
// greedy_decode runs on the IncrementalDecoder (decode/incremental.hpp): the encoder once, then one
// decoder position per step with key/value caches, O(T) work per step; every normalization policy
// and backend decodes through the policy's own residual forward, in evaluation mode.

#include <lnformer/decode/incremental.hpp>
#include <lnformer/model/batch.hpp>
#include <lnformer/model/seq2seq.hpp>

#include <algorithm>
#include <cstdint>
#include <vector>

namespace lnformer {

namespace detail {

/// Host copy of a contiguous view.
template <class B, class T>
std::vector<std::remove_const_t<T>> view_to_host(TensorView<B, T> v) {
  LNF_EXPECTS(v.is_contiguous(), "view_to_host: view of shape {} is not contiguous", v.shape());
  std::vector<std::remove_const_t<T>> h(static_cast<std::size_t>(v.numel()));
  if (!h.empty()) BackendTraits<B>::to_host(h.data(), v.data(), h.size() * sizeof(T));
  return h;
}

/// argmax over the last dim of row `row` of a host [rows, V] array; ties go to the lower id.
inline std::int32_t argmax_row(std::vector<float> const& logits, std::int64_t row, std::int64_t v) {
  auto const first = logits.begin() + row * v;
  return static_cast<std::int32_t>(std::max_element(first, first + v) - first);
}

}  // namespace detail

/// The model's most likely output for each source sentence (tokens without the final EOS), at most
/// max_len tokens each. The model runs in evaluation mode (no dropout). Each step takes the argmax
/// over the whole vocabulary; a predicted padding id is emitted (and fed back) as unk. Decoding is
/// incremental (decode/incremental.hpp): the encoder runs once, each step costs O(t), and rows that
/// produced EOS leave the batch. beam_search (decode/beam.hpp) with beam = 1 is greedy search with
/// fairseq's rules instead (padding never predicted, min/max length relative to the source, scores).
template <class Norm, class B>
std::vector<std::vector<std::int32_t>> greedy_decode(Seq2Seq<Norm, B>& model,
                                                     std::vector<std::vector<std::int32_t>> const& src,
                                                     std::int64_t max_len, SpecialTokens sp = {}) {
  LNF_EXPECTS_AS(ValueError, max_len >= 0, "greedy_decode: max_len {} must be >= 0", max_len);
  std::size_t const n = src.size();
  std::vector<std::vector<std::int32_t>> out(n);
  if (n == 0 || max_len == 0) return out;
  std::int64_t const v = model.config().vocab;
  IncrementalDecoder<Norm, B> dec(model);
  dec.start(src, sp);
  std::vector<std::int32_t> row_sent(n), tokens(n, sp.eos);  // sentence of each decoder row, its input
  for (std::size_t i = 0; i < n; ++i) row_sent[i] = static_cast<std::int32_t>(i);
  for (std::int64_t t = 0; t < max_len && !row_sent.empty(); ++t) {
    auto const logits = detail::view_to_host(dec.advance(tokens));
    std::vector<std::int32_t> parents, next_sent, next_tokens;
    for (std::size_t r = 0; r < row_sent.size(); ++r) {
      std::int32_t tok = detail::argmax_row(logits, static_cast<std::int64_t>(r), v);
      if (tok == sp.eos) continue;      // finished: the row leaves the batch
      if (tok == sp.pad) tok = sp.unk;  // never feed padding back in: it would be masked
      out[static_cast<std::size_t>(row_sent[r])].push_back(tok);
      parents.push_back(static_cast<std::int32_t>(r));
      next_sent.push_back(row_sent[r]);
      next_tokens.push_back(tok);
    }
    if (t + 1 < max_len && !parents.empty()) dec.reorder(parents);
    row_sent = std::move(next_sent);
    tokens = std::move(next_tokens);
  }
  return out;
}

}  // namespace lnformer
