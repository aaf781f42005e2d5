#pragma once
// Algorithmic sequence-to-sequence tasks generated from a seed: the target is the source reversed,
// sorted or copied. Success on them is unambiguous (a model that has learnt the task gets every
// held-out sequence right), which makes them the smoke test of a training setup: the example trainer
// and the convergence tests use them.
//
//   SyntheticTask task{.kind = SyntheticKind::reverse, .symbols = 16, .min_len = 3, .max_len = 10};
//   Rng rng(seed, stream);
//   auto examples = task.sample(rng, 64);                 // 64 (src, tgt) pairs
//   Batch<Cpu> batch = make_batch<Cpu>(examples);
//
// Symbols are the token ids first_symbol .. first_symbol + symbols - 1 (after fairseq's bos, pad, eos
// and unk); the model's vocabulary must be task.vocab() at least.

#include <lnformer/core/error.hpp>
#include <lnformer/core/rng.hpp>
#include <lnformer/model/batch.hpp>

#include <algorithm>
#include <array>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace lnformer {

enum class SyntheticKind { reverse, sort, copy };

inline constexpr std::array<std::string_view, 3> kSyntheticKindNames{"reverse", "sort", "copy"};

/// "reverse" -> SyntheticKind::reverse; a ValueError listing the valid names otherwise.
inline SyntheticKind parse_synthetic_kind(std::string_view name) {
  auto const it = std::find(kSyntheticKindNames.begin(), kSyntheticKindNames.end(), name);
  bool const known = it != kSyntheticKindNames.end();
  LNF_EXPECTS_AS(ValueError, known, "unknown synthetic task '{}'; valid: reverse, sort, copy", name);
  return static_cast<SyntheticKind>(it - kSyntheticKindNames.begin());
}

struct SyntheticExample {
  std::vector<std::int32_t> src, tgt;
};

struct SyntheticTask {
  SyntheticKind kind = SyntheticKind::reverse;
  int symbols = 16;               ///< alphabet size
  int min_len = 3;                ///< shortest source (tokens, without EOS)
  int max_len = 10;               ///< longest source
  std::int32_t first_symbol = 4;  ///< id of the first symbol (after bos, pad, eos, unk)

  void validate() const {
    LNF_EXPECTS_AS(ValueError, symbols >= 1, "SyntheticTask: symbols {} must be >= 1", symbols);
    LNF_EXPECTS_AS(ValueError, min_len >= 1 && min_len <= max_len,
                   "SyntheticTask: lengths {}..{} must satisfy 1 <= min_len <= max_len", min_len, max_len);
    LNF_EXPECTS_AS(ValueError, first_symbol >= 0, "SyntheticTask: first_symbol {} must be >= 0", first_symbol);
  }
  /// The smallest vocabulary that holds every symbol.
  [[nodiscard]] std::int64_t vocab() const { return static_cast<std::int64_t>(first_symbol) + symbols; }

  /// One example: a uniform length in [min_len, max_len], uniform symbols, the target from `kind`.
  [[nodiscard]] SyntheticExample sample(Rng& rng) const {
    validate();
    auto const span = static_cast<std::uint32_t>(max_len - min_len + 1);
    int const len = min_len + static_cast<int>(rng.next_u32() % span);
    SyntheticExample e;
    e.src.reserve(static_cast<std::size_t>(len));
    for (int i = 0; i < len; ++i)
      e.src.push_back(first_symbol + static_cast<std::int32_t>(rng.next_u32() % static_cast<std::uint32_t>(symbols)));
    e.tgt = e.src;
    if (kind == SyntheticKind::reverse) std::reverse(e.tgt.begin(), e.tgt.end());
    if (kind == SyntheticKind::sort) std::sort(e.tgt.begin(), e.tgt.end());
    return e;
  }
  [[nodiscard]] std::vector<SyntheticExample> sample(Rng& rng, std::size_t n) const {
    std::vector<SyntheticExample> v;
    v.reserve(n);
    for (std::size_t i = 0; i < n; ++i) v.push_back(sample(rng));
    return v;
  }
};

/// A batch of examples [begin, end) (all of them by default).
template <class B>
Batch<B> make_batch(std::vector<SyntheticExample> const& ex, std::size_t begin = 0,
                    std::size_t end = static_cast<std::size_t>(-1), SpecialTokens sp = {}) {
  end = std::min(end, ex.size());
  LNF_EXPECTS_AS(ValueError, begin < end, "make_batch: examples [{}, {}) of {} is empty", begin, end, ex.size());
  std::vector<std::vector<std::int32_t>> src, tgt;
  src.reserve(end - begin);
  tgt.reserve(end - begin);
  for (std::size_t i = begin; i < end; ++i) src.push_back(ex[i].src), tgt.push_back(ex[i].tgt);
  return make_batch<B>(src, tgt, sp);
}

}  // namespace lnformer
