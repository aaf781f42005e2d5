#pragma once
// Token embedding: a row lookup forward, a scatter-add backward (fairseq's padding_idx).
//
//   embedding_forward(B, View y, CView table, IView ids, float scale)
//     y[n, :] = scale * table[ids[n], :]                        (ASSIGN)
//   embedding_backward(B, View dtable, CView dy, IView ids, float scale, int32 padding_idx = -1)
//     dtable[ids[n], :] += scale * dy[n, :]  for every n with ids[n] != padding_idx   (ACCUMULATE)
//
// Shapes: table, dtable [V, d]; ids any shape with N elements (e.g. [batch, time]); y, dy [..., d]
// with N * d elements (typically ids.shape + [d]). All contiguous.
// Values: every id must lie in [0, V) (ValueError naming the id, its flat position and V; checked before
// anything is written). padding_idx < 0 means "no padding"; otherwise it must be < V. Repeated ids add
// up in dtable; the padding row receives no gradient, so it stays as initialised (zero in fairseq).
// `scale` is fairseq's sqrt(d_model) embedding scale (1 for none).
// Implementations: backend/cpu/embedding.hpp, backend/reference/embedding.hpp.

#include <lnformer/core/error.hpp>
#include <lnformer/core/tensor.hpp>

#include <cstdint>

namespace lnformer::ops {

/// Read-only view of int32 token ids (or class targets).
template <class B>
using IView = TensorView<B, std::int32_t const>;

namespace check {

/// Throws ValueError naming the first id outside [0, V). Reads the ids, so only for host-accessible
/// backends (a device backend checks on the device).
template <class B>
void ids_in_range(char const* op, IView<B> ids, std::int64_t V, Shape const& table_shape) {
  static_assert(BackendTraits<B>::host_accessible, "ids_in_range reads ids on the host");
  std::int32_t const* id = ids.data();
  for (std::int64_t n = 0; n < ids.numel(); ++n) {
    LNF_EXPECTS_AS(
        ValueError, id[n] >= 0 && id[n] < V,
        "{}: id {} at position {} of ids (shape {}) is out of range [0, V = {}) for a table of shape {}", op,
        id[n], n, ids.shape(), V, table_shape);
  }
}

/// y (or dy) must be [..., d] with ids.numel() * d elements; table (or dtable) [V, d]; all contiguous.
template <class B, class T>
void embedding_shapes(char const* op, char const* y_name, char const* table_name, TensorView<B, T> y,
                      Shape const& table, IView<B> ids) {
  LNF_EXPECTS(table.rank() == 2, "{}: {} has shape {}; it must be [V, d]", op, table_name, table);
  std::int64_t const d = table[1];
  LNF_EXPECTS(y.rank() >= 1 && y.size(-1) == d && y.numel() == ids.numel() * d,
              "{}: {} has shape {} but ids has shape {} and {} has shape {}; {} must be [..., {}] with {} "
              "elements (ids.numel() * d)",
              op, y_name, y.shape(), ids.shape(), table_name, table, y_name, d, ids.numel() * d);
  LNF_EXPECTS(y.is_contiguous() && ids.is_contiguous(),
              "{}: {} (shape {}) and ids (shape {}) must be contiguous", op, y_name, y.shape(), ids.shape());
}

template <class B>
void embedding_forward(View<B> y, CView<B> table, IView<B> ids) {
  embedding_shapes<B>("embedding_forward", "y", "table", y, table.shape(), ids);
  LNF_EXPECTS(table.is_contiguous(), "embedding_forward: table (shape {}) must be contiguous", table.shape());
  if constexpr (BackendTraits<B>::host_accessible)
    ids_in_range<B>("embedding_forward", ids, table.size(0), table.shape());
}

template <class B>
void embedding_backward(View<B> dtable, CView<B> dy, IView<B> ids, std::int32_t padding_idx) {
  embedding_shapes<B>("embedding_backward", "dy", "dtable", dy, dtable.shape(), ids);
  LNF_EXPECTS(dtable.is_contiguous(), "embedding_backward: dtable (shape {}) must be contiguous",
              dtable.shape());
  LNF_EXPECTS_AS(ValueError, padding_idx < dtable.size(0),
                 "embedding_backward: padding_idx {} is out of range for dtable of shape {} (use a negative "
                 "value for no padding)",
                 padding_idx, dtable.shape());
  if constexpr (BackendTraits<B>::host_accessible)
    ids_in_range<B>("embedding_backward", ids, dtable.size(0), dtable.shape());
}

}  // namespace check
}  // namespace lnformer::ops
