#pragma once
// Greedy decoding for Seq2Seq models.
//
// greedy_decode re-runs the decoder over the whole prefix at every step (no incremental key/value
// cache): O(T^2) decoder work per sentence, which is fine for evaluation on short sequences and uses
// nothing but the model's ordinary forward pass, so every normalization policy and backend decodes
// the same way it trains. Rows of one call grow in lockstep; a row that has produced EOS is finished
// and its later outputs are ignored.

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
/// max_len tokens each. The model runs in evaluation mode (no dropout).
template <class Norm, class B>
std::vector<std::vector<std::int32_t>> greedy_decode(Seq2Seq<Norm, B>& model,
                                                     std::vector<std::vector<std::int32_t>> const& src,
                                                     std::int64_t max_len, SpecialTokens sp = {}) {
  LNF_EXPECTS_AS(ValueError, max_len >= 0, "greedy_decode: max_len {} must be >= 0", max_len);
  std::size_t const n = src.size();
  std::vector<std::vector<std::int32_t>> out(n), prefix(n);
  std::vector<bool> done(n, false);
  if (n == 0) return out;
  std::int64_t const v = model.config().vocab;
  ForwardContext const eval{.training = false};
  for (std::int64_t t = 0; t < max_len; ++t) {
    // prefix[i] has t tokens; make_batch's decoder input is EOS + prefix, so position t predicts
    // token t. The target (prefix + EOS) only feeds the unused loss.
    auto const batch = make_batch<B>(src, prefix, sp);
    (void)model.forward(batch, eval);
    auto const logits = detail::view_to_host(model.logits());
    std::int64_t const tt = t + 1;
    bool all_done = true;
    for (std::size_t i = 0; i < n; ++i) {
      std::int32_t tok = detail::argmax_row(logits, static_cast<std::int64_t>(i) * tt + t, v);
      if (!done[i]) {
        if (tok == sp.eos) {
          done[i] = true;
        } else {
          if (tok == sp.pad) tok = sp.unk;  // never feed padding back in: it would be masked
          out[i].push_back(tok);
        }
      }
      prefix[i].push_back(done[i] ? sp.eos : out[i].back());
      all_done = all_done && done[i];
    }
    if (all_done) break;
  }
  return out;
}

}  // namespace lnformer
