#pragma once
// Teacher-forced token accuracy of a Seq2Seq model on a batch.

#include <lnformer/decode/greedy.hpp>

#include <cstdint>

namespace lnformer {

/// Teacher-forced token accuracy counts: the argmax of the model's output equals the reference at
/// `correct` of `total` non-padding target positions (EOS included, as in the loss); `loss` is the
/// forward pass's loss statistics, so one pass gives both.
struct TokenAccuracy {
  std::int64_t correct = 0, total = 0;
  LossStats loss;
  [[nodiscard]] double value() const { return total ? static_cast<double>(correct) / static_cast<double>(total) : 0.0; }
};

template <class Norm, class B>
TokenAccuracy teacher_forced_accuracy(Seq2Seq<Norm, B>& model, Batch<B> const& batch, SpecialTokens sp = {}) {
  TokenAccuracy acc;
  acc.loss = model.forward(batch, ForwardContext{.training = false});
  auto const logits = detail::view_to_host(model.logits());
  auto const target = batch.target.to_host();
  std::int64_t const v = model.config().vocab;
  for (std::size_t r = 0; r < target.size(); ++r) {
    if (target[r] == sp.pad) continue;
    ++acc.total;
    acc.correct += detail::argmax_row(logits, static_cast<std::int64_t>(r), v) == target[r] ? 1 : 0;
  }
  return acc;
}

}  // namespace lnformer
