#pragma once
// PaperSetup: the model and data of the papers' measurements at initialisation (Xiong et al. 2020's
// Theorem 1 and Figure 3, Liu et al. 2020's Figure 4; PAPERS.md sections 3 and 4), as an independent
// PyTorch measurement (nn.Transformer-style) takes them:
//   config(base)   base's sizes with an untied output projection that has a bias, plain cross-entropy
//                  (label smoothing 0) and no dropout anywhere;
//   batch<B>(seed) `sentences` source and target sentences of `length` tokens drawn uniformly from the
//                  ordinary ids [4, vocab) (not bos, pad, eos, unk): no padding, and the decoder is fed
//                  the target itself (prev == target), as in model(src, tgt) with the loss against tgt.
// Why these choices matter: with the output projection tied to the decoder embedding, the last
// layer's gradient depends on depth through the output layer too (at d 64, with only the tying
// changed, Theorem 1's slope for Pre-LN reads -0.76 instead of -0.45 and Figure 3's growth toward the
// output vanishes for Post-LN); dropout and label smoothing add terms the analyses do not have.

#include <lnformer/core/error.hpp>
#include <lnformer/core/rng.hpp>
#include <lnformer/model/batch.hpp>
#include <lnformer/model/config.hpp>

#include <algorithm>
#include <cstdint>
#include <limits>
#include <span>
#include <vector>

namespace lnformer {

struct PaperSetup {
  std::int64_t vocab = 1000;     ///< the vocabulary, special ids included
  std::int64_t sentences = 16;   ///< per batch
  std::int64_t length = 32;      ///< tokens of every source and target sentence

  /// `base` (its layers, d_model, ffn, heads, activation, init, embedding sharing) in this setup.
  [[nodiscard]] ModelConfig config(ModelConfig base) const {
    base.vocab = vocab;
    base.max_positions = std::max(base.max_positions, length);
    base.tie_output = false;
    base.output_bias = true;
    base.label_smoothing = 0.f;
    base.dropout = base.attention_dropout = base.activation_dropout = 0.f;
    return base;
  }

  /// A batch of random tokens (the same for the same seed); see the header comment.
  template <class B>
  [[nodiscard]] Batch<B> batch(std::uint64_t seed, SpecialTokens sp = {}) const {
    std::int32_t const first = 4;  // after bos 0, pad 1, eos 2, unk 3
    LNF_EXPECTS_AS(ValueError, vocab > first && vocab <= std::numeric_limits<std::int32_t>::max(),
                   "PaperSetup: vocab {} must hold the 4 special ids and at least one more", vocab);
    LNF_EXPECTS_AS(ValueError, sentences > 0 && length > 0, "PaperSetup: {} sentences of {} tokens", sentences,
                   length);
    LNF_EXPECTS_AS(ValueError, sp.pad < first, "PaperSetup: padding id {} among the drawn ids [{}, {})", sp.pad,
                   first, vocab);
    Rng rng(seed, 0x7a9e);
    auto const n = static_cast<std::size_t>(sentences * length);
    auto draw = [&] {
      std::vector<std::int32_t> ids(n);
      for (auto& t : ids) t = first + static_cast<std::int32_t>(rng.below(static_cast<std::uint32_t>(vocab - first)));
      return ids;
    };
    auto const src = draw(), tgt = draw();
    auto const src_pos = make_positions(src, sentences, length, sp.pad);
    auto const tgt_pos = make_positions(tgt, sentences, length, sp.pad);
    Shape const s{sentences, length};
    Batch<B> b;
    b.src = Tensor<B, std::int32_t>(s, std::span<std::int32_t const>(src));
    b.src_pos = Tensor<B, std::int32_t>(s, std::span<std::int32_t const>(src_pos));
    b.prev = Tensor<B, std::int32_t>(s, std::span<std::int32_t const>(tgt));
    b.prev_pos = Tensor<B, std::int32_t>(s, std::span<std::int32_t const>(tgt_pos));
    b.target = Tensor<B, std::int32_t>(s, std::span<std::int32_t const>(tgt));
    std::vector<float> const mask(static_cast<std::size_t>(sentences * length), 0.f);  // no padding
    b.src_mask = Tensor<B>(Shape{sentences, 1, 1, length}, std::span<float const>(mask));
    b.src_tokens = b.target_tokens = sentences * length;
    return b;
  }
};

}  // namespace lnformer
