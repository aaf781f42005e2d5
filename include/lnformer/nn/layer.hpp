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
//   share_backward_buffers(other)  (optional) makes the buffers that only backward uses (the input
//                             gradient it returns and the intermediate gradients) those of `other`, a
//                             layer of the same type whose backward never runs while this one's result
//                             is still being read (see BackwardBuffer).

#include <lnformer/backend/backends.hpp>
#include <lnformer/core/shape.hpp>
#include <lnformer/core/tensor.hpp>

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

namespace lnformer::detail {

/// Reshape `t` to `shape`, reallocating only when the element count changes.
template <class B, class T>
TensorView<B, T> ensure(Tensor<B, T>& t, Shape const& shape) {
  if (t.numel() != shape.numel()) t = Tensor<B, T>(shape);
  return t.view().reshape(shape);
}

/// A buffer that only backward writes and reads: an input gradient a layer returns, or an intermediate
/// gradient inside its backward. Forward's outputs must live until backward, so every layer owns its
/// own; backward's are dead once the layer below has read the gradient it was handed. A stack of
/// identical layers therefore keeps two sets, used alternately (layer l shares those of layer l % 2):
/// the gradient layer l returns lives in the other set from the one layer l - 1 writes, and layer
/// l - 2 overwrites layer l's set only after layer l - 1 has finished reading it. (Today's layers would
/// get by with one set, since each writes the buffer it returns only after reading all of dy; two sets
/// do not depend on that order.) Forward's outputs never go here: a layer reads them in backward.
///
/// The handle shares its tensor after share(); a copy gets a fresh, empty tensor of its own (a copied
/// layer never writes into the original's buffers).
template <class B, class T = float>
class BackwardBuffer {
 public:
  BackwardBuffer() : t_(std::make_shared<Tensor<B, T>>()) {}
  BackwardBuffer(BackwardBuffer const&) : BackwardBuffer() {}
  BackwardBuffer& operator=(BackwardBuffer const& o) {
    if (this != &o) t_ = std::make_shared<Tensor<B, T>>();
    return *this;
  }
  // A move keeps the sharing and leaves the source usable (it still refers to the same tensor).
  BackwardBuffer(BackwardBuffer&& o) noexcept : t_(o.t_) {}
  BackwardBuffer& operator=(BackwardBuffer&& o) noexcept {
    t_ = o.t_;
    return *this;
  }
  ~BackwardBuffer() = default;

  /// From now on the tensor of `other` (this one's own is released).
  void share(BackwardBuffer const& other) { t_ = other.t_; }
  [[nodiscard]] Tensor<B, T>& tensor() { return *t_; }

 private:
  std::shared_ptr<Tensor<B, T>> t_;
};

/// ensure() on the tensor a BackwardBuffer refers to.
template <class B, class T>
TensorView<B, T> ensure(BackwardBuffer<B, T>& b, Shape const& shape) {
  return ensure(b.tensor(), shape);
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
