#pragma once
// Reference embedding: plain loops, gradients summed in double. Contract in ops/embedding.hpp.

#include <lnformer/backend/reference/reference.hpp>
#include <lnformer/ops/embedding.hpp>

#include <cstdint>
#include <vector>

namespace lnformer::ops {

inline void embedding_forward(Reference, View<Reference> y, CView<Reference> table, IView<Reference> ids,
                              float scale) {
  check::embedding_forward<Reference>(y, table, ids);
  std::int64_t const d = table.size(1);
  for (std::int64_t n = 0; n < ids.numel(); ++n)
    for (std::int64_t c = 0; c < d; ++c)
      y.data()[n * d + c] =
          static_cast<float>(static_cast<double>(scale) * table.data()[ids.data()[n] * d + c]);
}

inline void embedding_backward(Reference, View<Reference> dtable, CView<Reference> dy, IView<Reference> ids,
                               float scale, std::int32_t padding_idx = -1) {
  check::embedding_backward<Reference>(dtable, dy, ids, padding_idx);
  std::int64_t const d = dtable.size(1);
  // Sum every row's contributions in double first, then add once to the existing gradient.
  std::vector<double> acc(static_cast<std::size_t>(dtable.numel()), 0.0);
  std::vector<bool> touched(static_cast<std::size_t>(dtable.size(0)), false);
  for (std::int64_t n = 0; n < ids.numel(); ++n) {
    std::int32_t const id = ids.data()[n];
    if (id == padding_idx) continue;
    touched[static_cast<std::size_t>(id)] = true;
    for (std::int64_t c = 0; c < d; ++c)
      acc[static_cast<std::size_t>(id * d + c)] += static_cast<double>(scale) * dy.data()[n * d + c];
  }
  for (std::int64_t v = 0; v < dtable.size(0); ++v) {
    if (!touched[static_cast<std::size_t>(v)]) continue;  // untouched rows keep their bits exactly
    for (std::int64_t c = 0; c < d; ++c) {
      float& g = dtable.data()[v * d + c];
      g = static_cast<float>(g + acc[static_cast<std::size_t>(v * d + c)]);
    }
  }
}

}  // namespace lnformer::ops
