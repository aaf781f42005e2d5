#pragma once
// Batches of token ids, fairseq-style: the source and the target get EOS appended; the decoder input
// ("prev output tokens") is EOS followed by the target without its EOS; every row is right-padded.

#include <lnformer/core/error.hpp>
#include <lnformer/core/tensor.hpp>
#include <lnformer/nn/embedding.hpp>

#include <algorithm>
#include <cstdint>
#include <limits>
#include <span>
#include <vector>

namespace lnformer {

struct SpecialTokens {
  std::int32_t bos = 0, pad = 1, eos = 2, unk = 3;
};

template <class B>
struct Batch {
  Tensor<B, std::int32_t> src, src_pos;    ///< [N, Ts]
  Tensor<B, std::int32_t> prev, prev_pos;  ///< [N, Tt] decoder input
  Tensor<B, std::int32_t> target;          ///< [N, Tt]
  Tensor<B> src_mask;                      ///< [N, 1, 1, Ts] additive: 0, or -inf on padding
  std::int64_t src_tokens = 0;             ///< non-padding source tokens
  std::int64_t target_tokens = 0;          ///< non-padding target tokens (the loss is a sum over these)
  [[nodiscard]] std::int64_t size() const { return src.numel() == 0 ? 0 : src.size(0); }
};

/// A decoder-only batch: predict tokens[t + 1] from tokens[..t].
template <class B>
struct LmBatch {
  Tensor<B, std::int32_t> input, input_pos;  ///< [N, T]
  Tensor<B, std::int32_t> target;            ///< [N, T]
  std::int64_t target_tokens = 0;
};

namespace detail {
inline void check_tokens(std::span<std::int32_t const> seq, std::size_t row, char const* what, SpecialTokens sp) {
  for (std::size_t j = 0; j < seq.size(); ++j)
    LNF_EXPECTS_AS(ValueError, seq[j] >= 0 && seq[j] != sp.pad,
                   "make_batch: {} sentence {} has token {} at position {} (negative, or the padding id {})", what,
                   row, seq[j], j, sp.pad);
}

template <class B>
Tensor<B, std::int32_t> int_tensor(std::vector<std::int32_t> const& h, std::int64_t n, std::int64_t t) {
  return Tensor<B, std::int32_t>(Shape{n, t}, std::span<std::int32_t const>(h));
}
}  // namespace detail

/// Builds a batch from sentences of token ids without special tokens.
template <class B>
Batch<B> make_batch(std::vector<std::vector<std::int32_t>> const& src,
                    std::vector<std::vector<std::int32_t>> const& tgt, SpecialTokens sp = {}) {
  LNF_EXPECTS_AS(ValueError, src.size() == tgt.size() && !src.empty(),
                 "make_batch: {} source and {} target sentences (need the same, non-zero number)", src.size(),
                 tgt.size());
  auto const n = static_cast<std::int64_t>(src.size());
  std::int64_t ts = 0, tt = 0;
  for (std::size_t i = 0; i < src.size(); ++i) {
    detail::check_tokens(src[i], i, "source", sp);
    detail::check_tokens(tgt[i], i, "target", sp);
    ts = std::max<std::int64_t>(ts, static_cast<std::int64_t>(src[i].size()) + 1);
    tt = std::max<std::int64_t>(tt, static_cast<std::int64_t>(tgt[i].size()) + 1);
  }
  std::vector<std::int32_t> s(static_cast<std::size_t>(n * ts), sp.pad), p(static_cast<std::size_t>(n * tt), sp.pad),
      y(static_cast<std::size_t>(n * tt), sp.pad);
  std::vector<float> mask(static_cast<std::size_t>(n * ts), 0.f);
  Batch<B> b;
  for (std::int64_t i = 0; i < n; ++i) {
    auto const& a = src[static_cast<std::size_t>(i)];
    auto const& t = tgt[static_cast<std::size_t>(i)];
    std::copy(a.begin(), a.end(), s.begin() + i * ts);
    s[static_cast<std::size_t>(i * ts) + a.size()] = sp.eos;
    for (auto j = static_cast<std::int64_t>(a.size()) + 1; j < ts; ++j)
      mask[static_cast<std::size_t>(i * ts + j)] = -std::numeric_limits<float>::infinity();
    p[static_cast<std::size_t>(i * tt)] = sp.eos;
    std::copy(t.begin(), t.end(), p.begin() + i * tt + 1);
    std::copy(t.begin(), t.end(), y.begin() + i * tt);
    y[static_cast<std::size_t>(i * tt) + t.size()] = sp.eos;
    b.src_tokens += static_cast<std::int64_t>(a.size()) + 1;
    b.target_tokens += static_cast<std::int64_t>(t.size()) + 1;
  }
  b.src = detail::int_tensor<B>(s, n, ts);
  b.src_pos = detail::int_tensor<B>(make_positions(s, n, ts, sp.pad), n, ts);
  b.prev = detail::int_tensor<B>(p, n, tt);
  b.prev_pos = detail::int_tensor<B>(make_positions(p, n, tt, sp.pad), n, tt);
  b.target = detail::int_tensor<B>(y, n, tt);
  b.src_mask = Tensor<B>(Shape{n, 1, 1, ts}, std::span<float const>(mask));
  return b;
}

/// A language-model batch from sequences: input = [eos] + seq, target = seq + [eos].
template <class B>
LmBatch<B> make_lm_batch(std::vector<std::vector<std::int32_t>> const& seqs, SpecialTokens sp = {}) {
  LNF_EXPECTS_AS(ValueError, !seqs.empty(), "make_lm_batch: no sequences");
  auto const n = static_cast<std::int64_t>(seqs.size());
  std::int64_t t = 0;
  for (std::size_t i = 0; i < seqs.size(); ++i) {
    detail::check_tokens(seqs[i], i, "sequence", sp);
    t = std::max<std::int64_t>(t, static_cast<std::int64_t>(seqs[i].size()) + 1);
  }
  std::vector<std::int32_t> x(static_cast<std::size_t>(n * t), sp.pad), y(static_cast<std::size_t>(n * t), sp.pad);
  LmBatch<B> b;
  for (std::int64_t i = 0; i < n; ++i) {
    auto const& s = seqs[static_cast<std::size_t>(i)];
    x[static_cast<std::size_t>(i * t)] = sp.eos;
    std::copy(s.begin(), s.end(), x.begin() + i * t + 1);
    std::copy(s.begin(), s.end(), y.begin() + i * t);
    y[static_cast<std::size_t>(i * t) + s.size()] = sp.eos;
    b.target_tokens += static_cast<std::int64_t>(s.size()) + 1;
  }
  b.input = detail::int_tensor<B>(x, n, t);
  b.input_pos = detail::int_tensor<B>(make_positions(x, n, t, sp.pad), n, t);
  b.target = detail::int_tensor<B>(y, n, t);
  return b;
}

}  // namespace lnformer
