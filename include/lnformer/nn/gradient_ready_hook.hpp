#pragma once
// GradientReadyHook: how a backward pass tells a listener (the data-parallel reducer) which
// parameters hold their final gradients, as soon as they do.

#include <lnformer/nn/parameter.hpp>

namespace lnformer {

/// Told during a backward pass each time a group of parameters holds its final gradient for that
/// pass: the models' stacks report each layer (and their final layer norm) as soon as its backward
/// has run, so that data-parallel training can sum those gradients over the ranks while the rest
/// of the backward pass computes (dist::GradientReducer). Parameters that collect gradient until
/// the very end (the embeddings, a tied output projection) are never reported; whoever listens
/// handles them after backward. A model's backward(scale, hook) with hook == nullptr reports nothing.
template <class B>
class GradientReadyHook {
 public:
  virtual void ready(ParameterList<B> const& group) = 0;

 protected:
  GradientReadyHook() = default;
  GradientReadyHook(GradientReadyHook const&) = default;
  GradientReadyHook& operator=(GradientReadyHook const&) = default;
  ~GradientReadyHook() = default;
};

namespace detail {

/// Tells `hook` (if any) that the parameters `collect(list)` appends hold their final gradients.
template <class B, class Collect>
void report_ready(GradientReadyHook<B>* hook, Collect&& collect) {
  if (hook == nullptr) return;
  ParameterList<B> group;
  collect(group);
  if (!group.empty()) hook->ready(group);
}

}  // namespace detail
}  // namespace lnformer
