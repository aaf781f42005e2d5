#pragma once
// Weight initialisers. Values are drawn on the host from the counter-based Rng and copied to the
// backend, so a seed gives the same model on every backend.

#include <lnformer/core/rng.hpp>
#include <lnformer/core/tensor.hpp>

#include <cmath>
#include <span>
#include <vector>

namespace lnformer::init {

namespace detail {
template <class B, class F>
void fill_host(Tensor<B>& t, F&& draw) {
  std::vector<float> h(static_cast<std::size_t>(t.numel()));
  for (auto& v : h) v = draw();
  t = Tensor<B>(t.shape(), std::span<float const>(h));
}
}  // namespace detail

/// Xavier (Glorot) uniform for a [out, in] matrix: U(-a, a), a = gain * sqrt(6 / (in + out)).
template <class B>
void xavier_uniform(Tensor<B>& w, Rng& rng, double gain = 1.0) {
  double const fan_out = static_cast<double>(w.size(0)), fan_in = static_cast<double>(w.numel()) / fan_out;
  auto const a = static_cast<float>(gain * std::sqrt(6.0 / (fan_in + fan_out)));
  detail::fill_host(w, [&] { return rng.uniform(-a, a); });
}

/// Xavier (Glorot) normal for a [out, in] matrix: N(0, gain^2 * 2 / (in + out)).
template <class B>
void xavier_normal(Tensor<B>& w, Rng& rng, double gain = 1.0) {
  double const fan_out = static_cast<double>(w.size(0)), fan_in = static_cast<double>(w.numel()) / fan_out;
  auto const s = static_cast<float>(gain * std::sqrt(2.0 / (fan_in + fan_out)));
  detail::fill_host(w, [&] { return s * rng.normal(); });
}

template <class B>
void normal(Tensor<B>& w, Rng& rng, double std) {
  detail::fill_host(w, [&] { return static_cast<float>(std) * rng.normal(); });
}

template <class B>
void uniform(Tensor<B>& w, Rng& rng, double bound) {
  auto const a = static_cast<float>(bound);
  detail::fill_host(w, [&] { return rng.uniform(-a, a); });
}

template <class B>
void constant(Tensor<B>& w, float v) {
  detail::fill_host(w, [&] { return v; });
}

}  // namespace lnformer::init
