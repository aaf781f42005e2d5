#pragma once
// Embedding fixtures shared by tests/ops/test_embedding.cpp (Cpu) and tests/gpu/test_gpu_elementwise.cu
// (Gpu): id makers, the (ids shape, V, d, padding_idx) cases and each case's operands and Reference
// results. Backend-neutral: the backend under test takes copies of the Reference operands.

#include <lnformer/backend/reference/embedding.hpp>
#include <lnformer/core/rng.hpp>
#include <lnformer/core/shape.hpp>
#include <lnformer/core/tensor.hpp>

#include "support.hpp"

#include <fmt/format.h>

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <utility>
#include <vector>

namespace lnformer::test {

template <class B>
Tensor<B, std::int32_t> make_ids(Shape shape, std::vector<std::int32_t> const& ids) {
  return Tensor<B, std::int32_t>(shape, std::span<std::int32_t const>(ids));
}

/// N ids in [0, V), with some forced repeats (id 0 every third) and, if pad >= 0, some pad ids.
inline std::vector<std::int32_t> random_ids(std::int64_t N, std::int64_t V, Rng& rng, std::int32_t pad = -1) {
  std::vector<std::int32_t> ids(static_cast<std::size_t>(N));
  for (auto& id : ids) id = static_cast<std::int32_t>(rng.below(static_cast<std::uint32_t>(V)));
  for (std::size_t n = 0; n < ids.size(); n += 3) ids[n] = 0;
  if (pad >= 0)
    for (std::size_t n = 1; n < ids.size(); n += 4) ids[n] = pad;
  return ids;
}

/// s with the dim d appended: the shape of y for ids of shape s.
inline Shape with_last(Shape const& s, std::int64_t d) {
  std::vector<std::int64_t> dims(s.begin(), s.end());
  dims.push_back(d);
  return Shape::from(dims.begin(), dims.end());
}

/// ids of a shape, a table [V, d], and a padding_idx (-1: none) for the backward.
struct EmbeddingCase {
  Shape ids;
  std::int64_t V, d;
  std::int32_t pad;
  std::string str() const { return fmt::format("ids {} V {} d {} padding_idx {}", ids, V, d, pad); }
};
/// One id, a vocabulary of one, d of one; odd d; d of a thousand; many repeats of a few ids.
inline std::vector<EmbeddingCase> const kEmbeddingCases{
    {{1}, 1, 1, -1},     {{3}, 3, 17, 1},     {{17}, 17, 33, 2},        {{64}, 257, 3, 0}, {{2, 3}, 5, 257, 4},
    {{64}, 10, 1024, 1}, {{300}, 33, 257, 1}, {{4, 75}, 1000, 129, -1}, {{500}, 3, 70, 2},
};

/// A case's forward on the Reference: a random table [V, d] and ids (no padding), drawn in that order,
/// and y = scale * table[ids].
struct EmbeddingForward {
  Tensor<Reference> table;
  Tensor<Reference, std::int32_t> ids;
  Tensor<Reference> y;
};
inline EmbeddingForward embedding_forward_reference(EmbeddingCase const& c, float scale, Rng& rng) {
  auto table = random_tensor<Reference>({c.V, c.d}, rng);
  auto ids = make_ids<Reference>(c.ids, random_ids(c.ids.numel(), c.V, rng));
  Tensor<Reference> y(with_last(c.ids, c.d));
  ops::embedding_forward(Reference{}, y, table, ids, scale);
  return {std::move(table), std::move(ids), std::move(y)};
}

/// A case's backward on the Reference: ids (with c.pad's padding), dy and an existing gradient `before`
/// (+= keeps it), drawn in that order, and `after` = before + the scattered scale * dy.
struct EmbeddingBackward {
  Tensor<Reference, std::int32_t> ids;
  Tensor<Reference> dy, before, after;
};
inline EmbeddingBackward embedding_backward_reference(EmbeddingCase const& c, float scale, Rng& rng) {
  auto ids = make_ids<Reference>(c.ids, random_ids(c.ids.numel(), c.V, rng, c.pad));
  auto dy = random_tensor<Reference>(with_last(c.ids, c.d), rng);
  auto before = random_tensor<Reference>({c.V, c.d}, rng);
  auto after = before.clone();
  ops::embedding_backward(Reference{}, after, dy, ids, scale, c.pad);
  return {std::move(ids), std::move(dy), std::move(before), std::move(after)};
}

}  // namespace lnformer::test
