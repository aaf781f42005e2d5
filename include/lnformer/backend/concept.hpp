#pragma once
// The Backend concept: the complete list of ops a backend must provide. A backend that misses one
// fails at its own static_assert(Backend<...>) with the missing op named in the diagnostic, not deep
// inside Encoder<...>. Calls are unqualified on purpose: every tag derives from ops::BackendTag, so
// argument-dependent lookup finds the ops in lnformer::ops whatever the include order. (The layers
// call ops qualified, which does depend on include order: see backend/tag.hpp and backends.hpp.)

#include <lnformer/backend/tag.hpp>
#include <lnformer/core/rng.hpp>
#include <lnformer/core/tensor.hpp>
#include <lnformer/ops/activation.hpp>
#include <lnformer/ops/optimizer.hpp>

#include <concepts>
#include <cstdint>
#include <span>
#include <type_traits>

namespace lnformer {

template <class B>
concept BackendMemory = requires(void* p, void const* cp, std::size_t n) {
  { BackendTraits<B>::allocate(n) } -> std::same_as<void*>;
  BackendTraits<B>::deallocate(p);
  BackendTraits<B>::copy(p, cp, n);
  BackendTraits<B>::to_host(p, cp, n);
  BackendTraits<B>::from_host(p, cp, n);
  BackendTraits<B>::fill_zero(p, n);
  { BackendTraits<B>::host_accessible } -> std::convertible_to<bool>;
};

template <class B>
concept HasGemmOps = requires(B b, View<B> y, CView<B> x, float s) {
  matmul(b, y, x, x, s, s);
  matmul_backward(b, y, y, x, x, x, s);
  linear_forward(b, y, x, x, x);
  linear_forward(b, y, x, x, x, ::lnformer::ops::Epilogue::relu);
  linear_backward(b, y, y, y, x, x, x);
};

template <class B>
concept HasNormalizationOps = requires(B b, View<B> y, CView<B> x, float s) {
  layer_norm_forward(b, y, y, y, x, x, x, s);
  layer_norm_backward(b, y, y, y, x, x, x, x, x);
  layer_norm_backward(b, y, y, y, x, x, x, x, x, x);  // with a residual gradient
  softmax_forward(b, y, x, x, s);
  softmax_backward(b, y, x, x, s);
};

template <class B>
concept HasElementwiseOps = requires(B b, View<B> y, CView<B> x, float s, ops::Activation act, RngKey key,
                                     std::span<CView<B> const> xs) {
  activation_forward(b, y, x, act);
  activation_backward(b, y, x, x, act);
  dropout_forward(b, y, x, s, key);
  dropout_backward(b, y, x, s, key);
  dropout_add(b, y, x, x, s, key);
  add(b, y, x, x);
  scale_add(b, y, x, x, s, x);
  scale_add_backward(b, y, y, x, x, x, s);
  scale(b, y, s);
  axpy(b, y, s, x);
  fill(b, y, s);
  copy(b, y, x);
  { sum_squares(b, x) } -> std::convertible_to<double>;
  { global_l2_norm(b, xs) } -> std::convertible_to<double>;
};

template <class B>
concept HasTokenOps = requires(B b, View<B> y, CView<B> x, TensorView<B, std::int32_t const> ids, float s,
                               std::int32_t pad) {
  embedding_forward(b, y, x, ids, s);
  embedding_backward(b, y, x, ids, s, pad);
  cross_entropy_forward(b, y, y, y, x, ids, s, pad);
  cross_entropy_backward(b, y, x, x, x, ids, s, pad);
};

/// The fused optimizer updates (ops/optimizer.hpp); the buffers are read and written in place.
template <class B>
concept HasOptimizerOps = requires(B b, View<B> p, CView<B> g, ops::SgdCoefficients const& sgd,
                                   ops::AdamCoefficients const& adam, ops::RAdamCoefficients const& radam) {
  sgd_update(b, p, p, g, sgd);
  adam_update(b, p, p, p, g, adam);
  radam_update(b, p, p, p, g, radam);
};

/// A backend: an empty tag deriving from ops::BackendTag, memory traits, and every op.
template <class B>
concept Backend = std::is_empty_v<B> && std::derived_from<B, ops::BackendTag> && BackendMemory<B> &&
                  HasGemmOps<B> && HasNormalizationOps<B> && HasElementwiseOps<B> && HasTokenOps<B> &&
                  HasOptimizerOps<B>;

}  // namespace lnformer
