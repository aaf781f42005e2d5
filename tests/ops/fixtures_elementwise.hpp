#pragma once
// Element-wise fixtures shared by tests/ops/test_elementwise.cpp, tests/ops/test_dropout.cpp (Cpu) and
// tests/gpu/test_gpu_elementwise.cu (Gpu): the shapes, the residual gates of scale_add and the operands
// drawn with them, dropout's keys and nonzero inputs. Backend-neutral templates.

#include <lnformer/core/rng.hpp>
#include <lnformer/core/shape.hpp>
#include <lnformer/core/tensor.hpp>

#include "support.hpp"

#include <doctest/doctest.h>

#include <array>
#include <cstddef>
#include <cstdint>
#include <initializer_list>
#include <span>
#include <string>
#include <utility>
#include <vector>

namespace lnformer::test {

/// Odd sizes, one element, a row of one, and larger tensors.
inline std::vector<Shape> const kElementwiseShapes = {
    Shape{1},    Shape{3},     Shape{17},    Shape{33},      Shape{257},
    Shape{4099}, Shape{1, 17}, Shape{5, 33}, Shape{2, 3, 7}, Shape{301, 257},
};

// --- residual gates ---------------------------------------------------------------------------------

enum class Gate { none, per_feature, scalar };
inline constexpr std::array kGates = {Gate::none, Gate::per_feature, Gate::scalar};
inline std::string gate_name(Gate g) {
  return g == Gate::none ? "w absent" : g == Gate::per_feature ? "w [d]" : "w [1]";
}

/// The residual gate w for x of shape s: absent, [d] or [1] (an empty tensor is "absent").
template <class B>
Tensor<B> make_gate(Gate g, Shape const& s, Rng& rng) {
  if (g == Gate::none) return Tensor<B>();
  return random_tensor<B>(g == Gate::per_feature ? Shape{s[-1]} : Shape{1}, rng, 0.5f, 2.f);
}

/// A default-constructed Tensor (shape [], no data) is "absent": keep it absent across backends.
template <class To, class From>
Tensor<To> gate_to(Tensor<From> const& w) {
  return w.data() == nullptr ? Tensor<To>() : to_backend<To>(w);
}
template <class B>
Tensor<B> zeros_like_gate(Tensor<B> const& w) {
  return w.data() == nullptr ? Tensor<B>() : Tensor<B>(w.shape());
}

/// Calls body(g, alpha, s) for every gate, each alpha and each shape, with the three captured for the
/// failure messages.
template <class Body>
void for_each_gate_case(std::initializer_list<float> alphas, std::vector<Shape> const& shapes, Body&& body) {
  for (auto g : kGates) {
    for (float alpha : alphas) {
      for (auto const& s : shapes) {
        CAPTURE(gate_name(g));
        CAPTURE(alpha);
        CAPTURE(s.str());
        body(g, alpha, s);
      }
    }
  }
}

/// The operands of one scale_add (x, f, w) or scale_add_backward (x, dy, w) call, drawn from rng in that
/// order on backend Made, and the same values on backend Copy (an absent w stays absent).
template <class Made, class Copy>
struct GatedOperands {
  Tensor<Made> x, f, w;
  Tensor<Copy> x_copy, f_copy, w_copy;
};
template <class Made, class Copy>
GatedOperands<Made, Copy> gated_operands(Gate g, Shape const& s, Rng& rng) {
  auto x = random_tensor<Made>(s, rng);
  auto f = random_tensor<Made>(s, rng);
  auto w = make_gate<Made>(g, s, rng);
  auto x_copy = to_backend<Copy>(x);
  auto f_copy = to_backend<Copy>(f);
  auto w_copy = gate_to<Copy>(w);
  return {std::move(x), std::move(f), std::move(w), std::move(x_copy), std::move(f_copy), std::move(w_copy)};
}

// --- dropout ----------------------------------------------------------------------------------------

/// Offsets that start a tensor at every Philox lane, and keys whose counter uses its high words.
inline std::vector<RngKey> const kDropoutKeys = {
    {1, 0, 0},
    {1, 0, 1},
    {1, 0, 2},
    {1, 0, 3},
    {7, 3, 4101},
    {0x123456789abcdefull, 0xfedcba9876543210ull, (std::uint64_t{1} << 34) - 5},  // block index crosses 2^32
};

/// Calls body(p, key, s) for each dropout probability p, each of kDropoutKeys and each shape, with the
/// four captured for the failure messages.
template <class Body>
void for_each_dropout_case(std::initializer_list<float> ps, std::vector<Shape> const& shapes, Body&& body) {
  for (float p : ps) {
    for (auto const& key : kDropoutKeys) {
      for (auto const& s : shapes) {
        CAPTURE(p);
        CAPTURE(key.seed);
        CAPTURE(key.offset);
        CAPTURE(s.str());
        body(p, key, s);
      }
    }
  }
}

/// Nonzero values (of alternating sign) so that a zero output always means "dropped".
template <class B>
Tensor<B> nonzero_tensor(Shape s, Rng& rng) {
  auto h = random_tensor<B>(s, rng, 0.5f, 1.5f).to_host();
  for (std::size_t i = 1; i < h.size(); i += 2) h[i] = -h[i];
  return Tensor<B>(s, std::span<float const>(h));
}

}  // namespace lnformer::test
