// bf16 GEMM math on the CPU (cpu::set_gemm_math): operands rounded to bfloat16, f32 accumulation.
// Every GEMM must equal the f32 GEMM of the rounded operands (the Reference backend, in double),
// whether oneDNN runs bf16 kernels (AVX-512 CPUs) or the emulation (elsewhere); and it must differ
// from the f32 result, or the mode did nothing.
#include <lnformer/backend/cpu/cpu.hpp>
#include <lnformer/backend/cpu/matmul.hpp>
#include <lnformer/backend/reference/matmul.hpp>
#include <lnformer/backend/reference/reference.hpp>

#include "ops/fixtures_matmul.hpp"
#include "support.hpp"

#include <doctest/doctest.h>
#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <functional>
#include <limits>
#include <string>
#include <tuple>
#include <type_traits>
#include <vector>

using namespace lnformer;
using cpu::GemmMath;
using cpu::round_to_bf16;
using cpu::to_bf16_bits;
using test::heads_of;
using test::kMatmulAtol;
using test::kMatmulRtol;
using test::plain;
using test::random_tensor;
using test::to_backend;

namespace {

Tensor<Reference> rounded(Tensor<Reference> const& t) {
  auto out = t.clone();
  for (std::int64_t i = 0; i < out.numel(); ++i) out.data()[i] = round_to_bf16(out.data()[i]);
  return out;
}

double max_abs_diff(Tensor<Cpu> const& a, Tensor<Cpu> const& b) {
  double m = 0;
  for (std::int64_t i = 0; i < a.numel(); ++i) m = std::max(m, std::abs(double(a.data()[i]) - b.data()[i]));
  return m;
}

/// matmul in bf16 math on the Cpu against Reference on the rounded operands; and against the Cpu in
/// f32 math, from which it must differ by more than `min_change` (random values in [-1, 1] are
/// almost never bf16 values, so each product changes by ~2^-9 relative).
template <class Views>
void check_bf16_matmul(std::string const& what, Shape as, Shape bs, Shape cs, Views views, float alpha = 1.f,
                       float beta = 0.f, double min_change = 1e-3) {
  INFO(what, " (alpha ", alpha, ", beta ", beta, ")");
  Rng rng(static_cast<std::uint64_t>(std::hash<std::string>{}(what)));
  auto const ar = random_tensor<Reference>(as, rng), br = random_tensor<Reference>(bs, rng),
             cr = random_tensor<Reference>(cs, rng);
  auto ar16 = rounded(ar), br16 = rounded(br), want = cr.clone();
  {
    auto [c, a, b] = views(want, ar16, br16);
    matmul(Reference{}, c, a, b, alpha, beta);
  }
  auto ac = to_backend<Cpu>(ar), bc = to_backend<Cpu>(br);
  auto got = to_backend<Cpu>(cr), f32 = to_backend<Cpu>(cr);
  {
    cpu::ScopedGemmMath const bf16(GemmMath::bf16);
    auto [c, a, b] = views(got, ac, bc);
    ops::matmul(Cpu{}, c, a, b, alpha, beta);
  }
  {
    auto [c, a, b] = views(f32, ac, bc);
    ops::matmul(Cpu{}, c, a, b, alpha, beta);
  }
  test::check_close(got, want, kMatmulRtol, kMatmulAtol, what + ": bf16 math vs rounded operands");
  CHECK(max_abs_diff(got, f32) > min_change);
}

}  // namespace

TEST_CASE("bf16: rounding to the nearest bfloat16, ties to even") {
  float const inf = std::numeric_limits<float>::infinity();
  CHECK(to_bf16_bits(1.f) == 0x3f80);
  CHECK(to_bf16_bits(-2.f) == 0xc000);
  CHECK(round_to_bf16(1.f) == 1.f);
  CHECK(round_to_bf16(-2.5f) == -2.5f);
  CHECK(round_to_bf16(1.f + 0x1p-8f) == 1.f);                   // a tie: down to the even 1.0
  CHECK(round_to_bf16(1.f + 3 * 0x1p-8f) == 1.f + 0x1p-6f);     // a tie: up to the even neighbour
  CHECK(round_to_bf16(1.f + 0x1p-8f + 0x1p-20f) == 1.f + 0x1p-7f);  // just above a tie: up
  CHECK(round_to_bf16(1.f + 0x1p-8f - 0x1p-20f) == 1.f);             // just below: down
  CHECK(round_to_bf16(0.1f) == 0.10009765625f);
  CHECK(round_to_bf16(inf) == inf);
  CHECK(round_to_bf16(-inf) == -inf);
  CHECK(round_to_bf16(std::numeric_limits<float>::max()) == inf);  // beyond the largest bf16
  CHECK(std::isnan(round_to_bf16(std::numeric_limits<float>::quiet_NaN())));
  CHECK(std::isnan(round_to_bf16(std::bit_cast<float>(0x7f800001u))));  // a NaN whose top bits look like inf
}

TEST_CASE("bf16: rows convert bit for bit as to_bf16_bits, on the path this CPU takes") {
  // Every sign/exponent pattern with edge mantissas (ties, just above and below, NaN payloads,
  // denormals, zero, infinities, the largest finite values), then random bits; lengths that leave
  // every tail of a 16-wide vector.
  std::vector<std::uint32_t> bits;
  for (std::uint32_t top = 0; top < 512; ++top)
    for (std::uint32_t low : {0x0u, 0x1u, 0x7fffu, 0x8000u, 0x8001u, 0xffffu, 0x18000u, 0x17fffu, 0x7fffffu, 0x400000u})
      bits.push_back(top << 23 | low);
  Rng rng(3);
  for (int i = 0; i < 4096; ++i) bits.push_back(rng.next_u32());
  std::vector<float> in(bits.size());
  std::transform(bits.begin(), bits.end(), in.begin(), [](std::uint32_t u) { return std::bit_cast<float>(u); });
  for (std::size_t n : {in.size(), std::size_t{1}, std::size_t{15}, std::size_t{16}, std::size_t{17}, std::size_t{33}}) {
    std::vector<std::uint16_t> out(n, 0xdead);
    cpu::to_bf16_row(out.data(), in.data(), static_cast<std::int64_t>(n));
    std::size_t wrong = 0, first = n;
    for (std::size_t j = 0; j < n; ++j)
      if (out[j] != to_bf16_bits(in[j])) first = std::min(first, j), ++wrong;
    INFO(fmt::format("n {}, AVX-512 path {}: first mismatch at {} (input bits {:#010x})", n,
                     cpu::detail::bf16_rows_use_avx512(), first, first < n ? bits[first] : 0u));
    CHECK(wrong == 0);
  }
}

TEST_CASE("bf16: the GEMM math setting, its parser and its scope guard") {
  CHECK(cpu::gemm_math() == GemmMath::f32);
  CHECK(cpu::parse_gemm_math("bf16") == GemmMath::bf16);
  CHECK(cpu::parse_gemm_math("f32") == GemmMath::f32);
  CHECK_THROWS_WITH_AS((void)cpu::parse_gemm_math("fp16"), "GEMM math 'fp16': expected f32 or bf16", ValueError);
  {
    cpu::ScopedGemmMath const outer(GemmMath::bf16);
    CHECK(cpu::gemm_math() == GemmMath::bf16);
    {
      cpu::ScopedGemmMath const inner(GemmMath::f32);
      CHECK(cpu::gemm_math() == GemmMath::f32);
    }
    CHECK(cpu::gemm_math() == GemmMath::bf16);
  }
  CHECK(cpu::gemm_math() == GemmMath::f32);
  std::string const kernels = cpu::native_bf16_gemm() ? "yes" : "no (emulated)";
  MESSAGE("oneDNN bf16 matmul kernels on this CPU: " << kernels);
}

TEST_CASE("bf16: matmul equals the f32 GEMM of the rounded operands, for every operand layout") {
  check_bf16_matmul("[33, 257] @ [257, 17]", Shape{33, 257}, Shape{257, 17}, Shape{33, 17}, plain);
  check_bf16_matmul("[64, 64] @ [64, 64], alpha and beta", Shape{64, 64}, Shape{64, 64}, Shape{64, 64}, plain,
                    -1.5f, 0.25f);
  check_bf16_matmul("a^T b^T", Shape{65, 17}, Shape{33, 65}, Shape{17, 33}, [](auto& c, auto& a, auto& b) {
    return std::tuple{c.view(), a.cview().transposed(), b.cview().transposed()};
  });
  std::int64_t const m = 17, k = 65, n = 9;
  check_bf16_matmul("no unit stride in a or b", Shape{m, 2 * k}, Shape{n, 3 * k}, Shape{m, n},
                    [=](auto& c, auto& a, auto& b) {
                      using B = typename std::remove_reference_t<decltype(c)>::backend;
                      CView<B> const av(a.data(), Shape{m, k}, Strides{2 * k, 2});
                      CView<B> const bv(b.data(), Shape{k, n}, Strides{3, 3 * k});
                      return std::tuple{c.view(), av, bv};
                    });
  check_bf16_matmul("strided c, beta 1", Shape{m, k}, Shape{k, n}, Shape{m, n + 3},
                    [=](auto& c, auto& a, auto& b) {
                      using B = typename std::remove_reference_t<decltype(c)>::backend;
                      View<B> const cv(c.data() + 1, Shape{m, n}, Strides{n + 3, 1});
                      return std::tuple{cv, a.cview(), b.cview()};
                    },
                    1.f, 1.f);
  check_bf16_matmul("broadcast batch", Shape{2, 1, 17, 65}, Shape{1, 3, 65, 6}, Shape{2, 3, 17, 6}, plain);
  // Attention: heads as permuted views, q @ k^T and p @ v into the heads of the output.
  std::int64_t const batch = 2, t = 9, heads = 3, dh = 32;
  check_bf16_matmul(
      "q @ k^T", Shape{batch, t, heads, dh}, Shape{batch, t, heads, dh}, Shape{batch, heads, t, t},
      [&](auto& c, auto& q, auto& kk) {
        return std::tuple{c.view(), heads_of(q), heads_of(kk).transposed()};
      },
      0.5f, 0.f, 2e-4);
  check_bf16_matmul("p @ v into heads", Shape{batch, heads, t, t}, Shape{batch, t, heads, dh},
                    Shape{batch, t, heads, dh}, [&](auto& c, auto& p, auto& v) {
                      return std::tuple{c.view().permute({0, 2, 1, 3}), p.cview(), heads_of(v)};
                    }, 1.f, 0.f, 2e-4);
}

TEST_CASE("bf16: linear_forward and linear_backward (bias and dbias stay f32)") {
  std::int64_t const rows = 129, in = 96, out = 40;
  Rng rng(21);
  auto xr = random_tensor<Reference>(Shape{rows, in}, rng), wr = random_tensor<Reference>(Shape{out, in}, rng),
       br = random_tensor<Reference>(Shape{out}, rng), dyr = random_tensor<Reference>(Shape{rows, out}, rng);
  auto const x16 = rounded(xr), w16 = rounded(wr), dy16 = rounded(dyr);
  Tensor<Reference> y(Shape{rows, out}), dx(Shape{rows, in}), dw(Shape{out, in}), db(Shape{out});
  ops::linear_forward(Reference{}, y, x16, w16, br);
  ops::linear_backward(Reference{}, dx, dw, db, dy16, x16, w16);
  // dbias is a plain sum of dy, in f32 (no GEMM): the Reference sums the unrounded dy.
  Tensor<Reference> db_f32(Shape{out}), unused_dx(Shape{rows, in}), unused_dw(Shape{out, in});
  ops::linear_backward(Reference{}, unused_dx, unused_dw, db_f32, dyr, xr, wr);

  auto xc = to_backend<Cpu>(xr), wc = to_backend<Cpu>(wr), bc = to_backend<Cpu>(br), dyc = to_backend<Cpu>(dyr);
  Tensor<Cpu> yc(y.shape()), dxc(dx.shape()), dwc(dw.shape()), dbc(db.shape());
  {
    cpu::ScopedGemmMath const bf16(GemmMath::bf16);
    ops::linear_forward(Cpu{}, yc, xc, wc, bc);
    ops::linear_backward(Cpu{}, dxc, dwc, dbc, dyc, xc, wc);
  }
  test::check_close(yc, y, kMatmulRtol, kMatmulAtol, "y");
  test::check_close(dxc, dx, kMatmulRtol, kMatmulAtol, "dx");
  test::check_close(dwc, dw, kMatmulRtol, kMatmulAtol, "dw");
  test::check_close(dbc, db_f32, 1e-5, 1e-5, "dbias");
  // The f32 GEMM differs.
  Tensor<Cpu> y32(y.shape());
  ops::linear_forward(Cpu{}, y32, xc, wc, bc);
  CHECK(max_abs_diff(y32, yc) > 1e-3);
}

TEST_CASE("bf16: switching the math back and forth reuses each cached primitive") {
  Rng rng(22);
  auto a = random_tensor<Cpu>(Shape{48, 80}, rng), b = random_tensor<Cpu>(Shape{80, 24}, rng);
  Tensor<Cpu> c16(Shape{48, 24}), c32(Shape{48, 24}), again(Shape{48, 24});
  auto& ctx = cpu::context();
  for (int round = 0; round < 3; ++round) {
    std::uint64_t const misses = ctx.cache_misses();
    {
      cpu::ScopedGemmMath const bf16(GemmMath::bf16);
      ops::matmul(Cpu{}, round == 0 ? c16.view() : again.view(), a, b);
    }
    ops::matmul(Cpu{}, c32, a, b);
    if (round > 0) {
      CHECK(ctx.cache_misses() == misses);  // both entries were already there
      test::check_close(again, c16, 0, 0, "bf16 result repeats bit for bit");
    }
  }
  CHECK(max_abs_diff(c16, c32) > 1e-3);
}
