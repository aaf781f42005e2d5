#pragma once
// Token-based batching, as fairseq's --max-tokens: sentences sorted by length are cut into batches
// whose padded size (rows x longest sequence, EOS included) stays within max_tokens, and the order of
// the batches is shuffled per epoch from (seed, epoch), so a run and its resume see the same batches.
//
//   TokenBatcher batcher(src_lengths, tgt_lengths, {.max_tokens = 4096, .max_len = 256, .seed = 1});
//   for (auto const& idx : batcher.epoch(e)) ...   // idx: sentence indices of one batch
//   batcher.stats().too_long                        // sentences left out, to report

#include <lnformer/core/error.hpp>
#include <lnformer/core/rng.hpp>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <numeric>
#include <vector>

namespace lnformer {

struct TokenBatchOptions {
  std::int64_t max_tokens = 4096;  ///< padded tokens per batch on the longer side (EOS included)
  std::int64_t max_len = 256;      ///< a sentence with a longer side (tokens, without EOS) is left out
  std::uint64_t seed = 1;          ///< the per-epoch shuffle of the batch order
};

struct TokenBatchStats {
  std::size_t sentences = 0;  ///< in the batches
  std::size_t too_long = 0;   ///< left out: longer than max_len
  std::size_t empty = 0;      ///< left out: a side has no tokens
  std::size_t batches = 0;
};

class TokenBatcher {
 public:
  TokenBatcher(std::vector<std::int64_t> const& src_len, std::vector<std::int64_t> const& tgt_len,
               TokenBatchOptions opt)
      : opt_(opt) {
    LNF_EXPECTS_AS(ValueError, src_len.size() == tgt_len.size(),
                   "TokenBatcher: {} source lengths but {} target lengths", src_len.size(), tgt_len.size());
    LNF_EXPECTS_AS(ValueError, opt.max_len >= 1 && opt.max_tokens >= opt.max_len + 1,
                   "TokenBatcher: max_tokens {} must hold one sentence of max_len {} plus EOS", opt.max_tokens,
                   opt.max_len);
    std::vector<std::size_t> order;
    for (std::size_t i = 0; i < src_len.size(); ++i) {
      if (src_len[i] <= 0 || tgt_len[i] <= 0) ++stats_.empty;
      else if (src_len[i] > opt.max_len || tgt_len[i] > opt.max_len) ++stats_.too_long;
      else order.push_back(i);
    }
    // Longest side first, then source then target length: similar lengths share batches. Stable,
    // so equal lengths keep the corpus order and the plan is a pure function of the lengths.
    std::stable_sort(order.begin(), order.end(), [&](std::size_t a, std::size_t b) {
      auto const la = std::max(src_len[a], tgt_len[a]), lb = std::max(src_len[b], tgt_len[b]);
      if (la != lb) return la < lb;
      if (src_len[a] != src_len[b]) return src_len[a] < src_len[b];
      return tgt_len[a] < tgt_len[b];
    });
    std::vector<std::size_t> cur;
    std::int64_t longest = 0;
    for (std::size_t i : order) {
      std::int64_t const len = std::max(src_len[i], tgt_len[i]) + 1;  // + EOS
      std::int64_t const l = std::max(longest, len);
      if (!cur.empty() && l * static_cast<std::int64_t>(cur.size() + 1) > opt.max_tokens) {
        batches_.push_back(std::move(cur));
        cur.clear();
        longest = 0;
      }
      cur.push_back(i);
      longest = std::max(longest, len);
    }
    if (!cur.empty()) batches_.push_back(std::move(cur));
    stats_.sentences = order.size();
    stats_.batches = batches_.size();
  }

  /// The batches of epoch `epoch` (from 1), in an order shuffled from (seed, epoch).
  [[nodiscard]] std::vector<std::vector<std::size_t>> epoch(std::uint64_t epoch) const {
    std::vector<std::size_t> perm(batches_.size());
    std::iota(perm.begin(), perm.end(), std::size_t{0});
    Rng rng(opt_.seed, epoch);
    for (std::size_t i = perm.size(); i > 1; --i)  // Fisher-Yates
      std::swap(perm[i - 1], perm[rng.next_u32() % i]);
    std::vector<std::vector<std::size_t>> out;
    out.reserve(perm.size());
    for (std::size_t p : perm) out.push_back(batches_[p]);
    return out;
  }
  /// The batches in length order (for evaluation).
  [[nodiscard]] std::vector<std::vector<std::size_t>> const& sorted() const { return batches_; }
  [[nodiscard]] TokenBatchStats const& stats() const { return stats_; }
  [[nodiscard]] std::size_t size() const { return batches_.size(); }

 private:
  TokenBatchOptions opt_;
  std::vector<std::vector<std::size_t>> batches_;
  TokenBatchStats stats_;
};

}  // namespace lnformer
