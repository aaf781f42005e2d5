#pragma once
// Softmax fixtures shared by tests/ops/test_softmax.cpp (Cpu) and tests/gpu/test_gpu_rows.cu (Gpu):
// the shapes, the mask makers (random, every broadcast pattern, causal, key padding, fully masked rows)
// and huge logits. Backend-neutral: each maker builds its tensor on whichever backend B it is asked for.

#include <lnformer/core/rng.hpp>
#include <lnformer/core/shape.hpp>
#include <lnformer/core/tensor.hpp>

#include <cstddef>
#include <cstdint>
#include <limits>
#include <span>
#include <vector>

namespace lnformer::test {

inline constexpr float kInf = std::numeric_limits<float>::infinity();

/// Ranks 1-4, rows of one element, odd lengths.
inline std::vector<Shape> const kSoftmaxShapes{Shape{17},          Shape{1, 33},      Shape{5, 3},
                                               Shape{3, 4, 17},    Shape{2, 3, 5, 17}, Shape{2, 3, 4, 1},
                                               Shape{2, 1, 3, 33}};

/// A mask of the given shape: each entry -inf with probability p_inf, else uniform in [-lo, lo].
template <class B>
Tensor<B> random_mask(Shape const& shape, Rng& rng, float p_inf, float lo = 2.f) {
  std::vector<float> h(static_cast<std::size_t>(shape.numel()));
  for (auto& v : h) v = rng.uniform() < p_inf ? -kInf : rng.uniform(-lo, lo);
  return Tensor<B>(shape, std::span<float const>(h));
}

/// Every shape that broadcasts to x numpy-style: ranks 1..rank(x), each aligned dim x's or 1.
inline std::vector<Shape> mask_patterns(Shape const& x) {
  std::vector<Shape> out;
  for (int k = 1; k <= x.rank(); ++k) {
    for (unsigned bits = 0; bits < (1u << k); ++bits) {
      std::vector<std::int64_t> d;
      for (int i = 0; i < k; ++i) d.push_back((bits >> i & 1u) ? 1 : x[x.rank() - k + i]);
      out.push_back(Shape::from(d.begin(), d.end()));
    }
  }
  return out;
}

/// The causal mask [T, T]: key k > query q is -inf, the rest 0.
template <class B>
Tensor<B> causal_mask(std::int64_t T) {
  std::vector<float> causal(static_cast<std::size_t>(T * T));
  for (std::int64_t q = 0; q < T; ++q)
    for (std::int64_t k = 0; k < T; ++k) causal[static_cast<std::size_t>(q * T + k)] = k > q ? -kInf : 0.f;
  return Tensor<B>(Shape{T, T}, std::span<float const>(causal));
}

/// A key-padding mask [batch, 1, 1, T]: batch entry b has keys[b] real keys, the rest (k >= keys[b]) -inf.
template <class B>
Tensor<B> key_padding_mask(std::vector<std::int64_t> const& keys, std::int64_t T) {
  auto const batch = static_cast<std::int64_t>(keys.size());
  std::vector<float> pad(static_cast<std::size_t>(batch * T), 0.f);
  for (std::int64_t b = 0; b < batch; ++b)
    for (std::int64_t k = keys[static_cast<std::size_t>(b)]; k < T; ++k)
      pad[static_cast<std::size_t>(b * T + k)] = -kInf;
  return Tensor<B>(Shape{batch, 1, 1, T}, std::span<float const>(pad));
}

/// A full-shape mask [2, Tq, Tk]: in batch 0, query row 1 masks every key (a padding query); batch 1
/// masks key 4 in every row.
template <class B>
Tensor<B> masked_rows_mask(std::int64_t Tq, std::int64_t Tk) {
  std::vector<float> m(static_cast<std::size_t>(2 * Tq * Tk), 0.f);
  for (std::int64_t k = 0; k < Tk; ++k) m[static_cast<std::size_t>(1 * Tk + k)] = -kInf;
  for (std::int64_t q = 0; q < Tq; ++q) m[static_cast<std::size_t>(Tq * Tk + q * Tk + 4)] = -kInf;
  return Tensor<B>(Shape{2, Tq, Tk}, std::span<float const>(m));
}

/// A mask [4, 1] (last dim 1): row 1 is -inf (the whole row masked), the others finite.
template <class B>
Tensor<B> row_mask() {
  std::vector<float> const rm{0.f, -kInf, 3.f, 0.f};
  return Tensor<B>(Shape{4, 1}, std::span<float const>(rm));
}

/// Logits of magnitude 1e4 drawn from a pool of close rivals and opposites.
template <class B>
Tensor<B> huge_logits(Shape const& shape, Rng& rng) {
  std::vector<float> const pool{1e4f, -1e4f, 9999.f, 9999.5f, -9999.f, 0.f, 5000.f, 1e4f - 3.f};
  std::vector<float> h(static_cast<std::size_t>(shape.numel()));
  for (auto& v : h) v = pool[rng.below(static_cast<std::uint32_t>(pool.size()))];
  return Tensor<B>(shape, std::span<float const>(h));
}

}  // namespace lnformer::test
