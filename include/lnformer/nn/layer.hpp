#pragma once
// The layer contract and the small helpers every layer shares. Layer headers include this first: it
// brings every backend available in the translation unit (backend/backends.hpp), which qualified op
// calls (ops::matmul(B{}, ...)) need to see before the layer's definition.
//
// Layer contract (every type in nn/, norm/ and model/):
//   forward(x, ctx) -> CView  computes the output into a buffer the layer owns and remembers views of
//                             its inputs for backward: inputs must stay alive and unchanged until
//                             backward has run (they are other layers' outputs, so they do).
//   backward(dy)    -> CView  returns the input gradient (ASSIGNED into a buffer the layer owns) and
//                             ACCUMULATES (+=) into the gradients of its parameters.
//   collect(prefix, list)     appends its parameters under fairseq-style names.

#include <lnformer/backend/backends.hpp>
#include <lnformer/core/shape.hpp>
#include <lnformer/core/tensor.hpp>

#include <cstdint>
#include <string>
#include <string_view>

namespace lnformer::detail {

/// Reshape `t` to `shape`, reallocating only when the element count changes.
template <class B, class T>
TensorView<B, T> ensure(Tensor<B, T>& t, Shape const& shape) {
  if (t.numel() != shape.numel()) t = Tensor<B, T>(shape);
  return t.view().reshape(shape);
}

/// A stable 64-bit id of a name (FNV-1a): dropout sites are keyed by their parameter-style name, so
/// masks do not depend on construction order.
constexpr std::uint64_t stable_hash(std::string_view s) {
  std::uint64_t h = 0xcbf29ce484222325ull;
  for (char c : s) {
    h ^= static_cast<unsigned char>(c);
    h *= 0x100000001b3ull;
  }
  return h;
}

inline std::string join_name(std::string_view prefix, std::string_view name) {
  if (prefix.empty()) return std::string(name);
  std::string s(prefix);
  s += '.';
  s += name;
  return s;
}

}  // namespace lnformer::detail
