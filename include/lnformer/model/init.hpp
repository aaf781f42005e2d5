#pragma once
// Initialisation as fairseq does it by default, and the options of Xiong et al.'s analysis.
//   attention: q/k/v weights Xavier uniform with gain 1/sqrt(2), out_proj Xavier uniform, out_proj bias 0,
//              q/k/v biases U(-1/sqrt(d), 1/sqrt(d)) (PyTorch's Linear default, which fairseq keeps);
//   FFN:       fc1/fc2 Xavier uniform, biases 0;
//   xavier_normal scheme: every projection Xavier normal (gain 1), biases 0;
//   zero_init_qk: query and key projections 0.

#include <lnformer/model/config.hpp>
#include <lnformer/nn/attention.hpp>
#include <lnformer/nn/feed_forward.hpp>

#include <cmath>

namespace lnformer::init {

template <class B>
void projection(Linear<B>& l, Rng& rng, ModelConfig const& c, double gain) {
  if (c.init == InitScheme::xavier_normal)
    xavier_normal(l.weight.value, rng, 1.0);
  else
    xavier_uniform(l.weight.value, rng, gain);
  if (l.bias.value.numel() != 0) constant(l.bias.value, 0.f);
}

template <class B>
void attention(MultiHeadAttention<B>& a, Rng& rng, ModelConfig const& c) {
  double const qkv_gain = 1.0 / std::sqrt(2.0);
  for (Linear<B>* l : {&a.q_proj, &a.k_proj, &a.v_proj}) {
    projection(*l, rng, c, qkv_gain);
    if (c.init == InitScheme::fairseq)
      uniform(l->bias.value, rng, 1.0 / std::sqrt(static_cast<double>(l->in_features())));
  }
  projection(a.out_proj, rng, c, 1.0);
  if (c.zero_init_qk) {
    for (Linear<B>* l : {&a.q_proj, &a.k_proj}) {
      constant(l->weight.value, 0.f);
      constant(l->bias.value, 0.f);
    }
  }
}

template <class B>
void feed_forward(FeedForward<B>& f, Rng& rng, ModelConfig const& c) {
  projection(f.fc1, rng, c, 1.0);
  projection(f.fc2, rng, c, 1.0);
}

}  // namespace lnformer::init
