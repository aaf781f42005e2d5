#pragma once
// Cross-entropy fixtures shared by tests/ops/test_cross_entropy.cpp (Cpu) and tests/gpu/test_gpu_rows.cu
// (Gpu): target makers, the forward's three outputs, logits of magnitude 1e4. Backend-neutral templates.

#include <lnformer/core/rng.hpp>
#include <lnformer/core/shape.hpp>
#include <lnformer/core/tensor.hpp>
#include <lnformer/ops/cross_entropy.hpp>

#include "support.hpp"

#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

namespace lnformer::test {

template <class B>
Tensor<B, std::int32_t> make_targets(std::vector<std::int32_t> const& t) {
  return Tensor<B, std::int32_t>(Shape{static_cast<std::int64_t>(t.size())}, std::span<std::int32_t const>(t));
}

/// N targets in [0, V); every fourth row (starting at row 1) is padding.
inline std::vector<std::int32_t> random_targets(std::int64_t N, std::int64_t V, Rng& rng, std::int32_t pad) {
  std::vector<std::int32_t> t(static_cast<std::size_t>(N));
  for (auto& v : t) v = static_cast<std::int32_t>(rng.below(static_cast<std::uint32_t>(V)));
  for (std::size_t n = 1; n < t.size(); n += 4) t[n] = pad;
  return t;
}

/// The forward's outputs for N rows, and the call that fills them (unqualified: argument-dependent lookup
/// finds backend B's overload where run() is instantiated, whether or not B's header came first).
template <class B>
struct XentForward {
  Tensor<B> loss, nll, lse;
  explicit XentForward(std::int64_t N) : loss(Shape{N}), nll(Shape{N}), lse(Shape{N}) {}
  void run(CView<B> logits, ops::IView<B> targets, float eps, std::int32_t pad) {
    cross_entropy_forward(B{}, loss, nll, lse, logits, targets, eps, pad);
  }
};

/// Logits [N, V] of magnitude 1e4. kind 0: spread over [-1e4, 1e4]; kind 1: all near +1e4 (close
/// rivals); kind 2: all near -1e4.
template <class B>
Tensor<B> logits_near_1e4(std::int64_t N, std::int64_t V, int kind, Rng& rng) {
  if (kind == 0) return random_tensor<B>(Shape{N, V}, rng, -1e4f, 1e4f);
  auto h = random_tensor<B>(Shape{N, V}, rng, -3.f, 3.f).to_host();
  for (auto& v : h) v += kind == 1 ? 1e4f : -1e4f;
  return Tensor<B>(Shape{N, V}, std::span<float const>(h));
}

}  // namespace lnformer::test
