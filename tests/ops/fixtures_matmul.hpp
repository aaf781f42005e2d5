#pragma once
// GEMM fixtures shared by tests/ops/test_matmul.cpp (Cpu) and tests/gpu/test_gpu_matmul.cu (Gpu): the
// tolerances, matmul and matmul_backward of one backend against the Reference backend on the same random
// operands, and the operand views they are called with. Backend-neutral templates.

#include <lnformer/backend/reference/matmul.hpp>
#include <lnformer/core/rng.hpp>
#include <lnformer/core/shape.hpp>
#include <lnformer/core/tensor.hpp>
#include <lnformer/ops/matmul.hpp>

#include "support.hpp"

#include <fmt/format.h>

#include <cstdint>
#include <functional>
#include <string>
#include <tuple>

namespace lnformer::test {

// float GEMMs (oneDNN, cuBLAS accumulate in float) against the double reference, k up to 257.
inline constexpr double kMatmulRtol = 1e-4;
inline constexpr double kMatmulAtol = 1e-4;

// The ops below are called unqualified: argument-dependent lookup finds backend B's overload where the
// templates are instantiated, whether or not B's header came before this one.

/// Runs matmul on Reference and on B with operands built by `views(c, a, b)` (Tensor& -> (View, CView,
/// CView)) from the same random buffers (drawn from a seed hashed from `what`), and compares the whole c
/// buffers (so elements outside a strided c view must stay untouched too).
template <class B, class Views>
void check_matmul_agrees(std::string const& what, Shape as, Shape bs, Shape cs, Views views, float alpha = 1.f,
                         float beta = 0.f) {
  Rng rng(static_cast<std::uint64_t>(std::hash<std::string>{}(what)));
  auto ar = random_tensor<Reference>(as, rng), br = random_tensor<Reference>(bs, rng),
       cr = random_tensor<Reference>(cs, rng);
  auto ab = to_backend<B>(ar), bb = to_backend<B>(br), cb = to_backend<B>(cr);
  {
    auto [c, a, b] = views(cr, ar, br);
    matmul(Reference{}, c, a, b, alpha, beta);
  }
  {
    auto [c, a, b] = views(cb, ab, bb);
    matmul(B{}, c, a, b, alpha, beta);
  }
  check_close_to(cb, cr, kMatmulRtol, kMatmulAtol, fmt::format("{} (alpha {}, beta {})", what, alpha, beta));
}

/// matmul_backward (alpha 0.75) on Reference and on B for a [as] @ b [bs] -> c [cs], from the same random
/// operands (drawn from a seed hashed from the shapes) and garbage in da and db (both assign).
template <class B>
void check_matmul_backward_agrees(Shape as, Shape bs, Shape cs) {
  std::string const what = fmt::format("{} @ {} -> {}", as, bs, cs);
  Rng rng(static_cast<std::uint64_t>(std::hash<std::string>{}(what)));
  auto ar = random_tensor<Reference>(as, rng), br = random_tensor<Reference>(bs, rng),
       dcr = random_tensor<Reference>(cs, rng);
  auto dar = random_tensor<Reference>(as, rng, 100.f, 200.f), dbr = random_tensor<Reference>(bs, rng, 100.f, 200.f);
  auto ab = to_backend<B>(ar), bb = to_backend<B>(br), dcb = to_backend<B>(dcr);
  auto dab = to_backend<B>(dar), dbb = to_backend<B>(dbr);
  matmul_backward(Reference{}, dar, dbr, dcr, ar, br, 0.75f);
  matmul_backward(B{}, dab, dbb, dcb, ab, bb, 0.75f);
  check_close_to(dab, dar, kMatmulRtol, kMatmulAtol, "da of " + what);
  check_close_to(dbb, dbr, kMatmulRtol, kMatmulAtol, "db of " + what);
}

/// c, a and b as they are.
inline constexpr auto plain = [](auto& c, auto& a, auto& b) { return std::tuple{c.view(), a.cview(), b.cview()}; };
/// x stored [B, T, H, dh] seen as [B, H, T, dh]: the attention heads.
inline constexpr auto heads_of = [](auto const& x) { return x.cview().permute({0, 2, 1, 3}); };

}  // namespace lnformer::test
