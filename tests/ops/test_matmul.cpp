// GEMMs: matmul (batched, broadcast, strided operands), matmul_backward, linear_forward/backward.
#include <lnformer/backend/cpu/activation.hpp>
#include <lnformer/backend/cpu/cpu.hpp>
#include <lnformer/backend/cpu/matmul.hpp>
#include <lnformer/backend/reference/matmul.hpp>
#include <lnformer/backend/reference/reference.hpp>

#include "ops/fixtures_matmul.hpp"
#include "support.hpp"

#include <doctest/doctest.h>
#include <omp.h>
#include <fmt/format.h>

#include <array>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <functional>
#include <limits>
#include <string>
#include <tuple>
#include <type_traits>
#include <utility>
#include <vector>

using namespace lnformer;
using test::check_close;
using test::check_matmul_agrees;
using test::heads_of;
using test::kMatmulAtol;
using test::kMatmulRtol;
using test::plain;
using test::random_tensor;
using test::to_backend;

namespace {

/// dw += dy^T @ x through linear_backward, for a projection [out, in] over `rows` rows: Cpu
/// against Reference, from the same random dw.
void check_weight_gradient(std::int64_t rows, std::int64_t out, std::int64_t in, std::uint64_t seed) {
  Rng rng(seed);
  auto const x = random_tensor<Reference>(Shape{rows, in}, rng), dy = random_tensor<Reference>(Shape{rows, out}, rng);
  auto const w = random_tensor<Reference>(Shape{out, in}, rng);
  auto dwr = random_tensor<Reference>(Shape{out, in}, rng);
  auto xc = to_backend<Cpu>(x), dyc = to_backend<Cpu>(dy), wc = to_backend<Cpu>(w), dwc = to_backend<Cpu>(dwr);
  ops::linear_backward(Reference{}, View<Reference>{}, dwr, View<Reference>{}, dy, x, w);
  ops::linear_backward(Cpu{}, View<Cpu>{}, dwc, View<Cpu>{}, dyc, xc, wc);
  check_close(dwc, dwr, kMatmulRtol, kMatmulAtol, fmt::format("dw of a [{}, {}] projection over {} rows", out, in, rows));
}

}  // namespace

TEST_CASE("matmul: Cpu agrees with Reference on 2-D shapes, alpha and beta") {
  struct Mkn {
    std::int64_t m, k, n;
  };
  std::vector<Mkn> const shapes{{1, 1, 1},    {1, 17, 33},  {3, 5, 7},   {17, 33, 3}, {33, 257, 17},
                                {64, 64, 64}, {257, 3, 33}, {1, 257, 1}, {5, 1, 9},   {2, 3, 257}};
  std::vector<std::pair<float, float>> const scalars{{1.f, 0.f}, {1.f, 1.f}, {0.5f, 0.f}, {-1.5f, 0.25f}};
  for (auto [m, k, n] : shapes)
    for (auto [alpha, beta] : scalars)
      check_matmul_agrees<Cpu>(fmt::format("[{}, {}] @ [{}, {}]", m, k, k, n), Shape{m, k}, Shape{k, n},
                               Shape{m, n}, plain, alpha, beta);
}

TEST_CASE("matmul: transposed operands are read through their strides") {
  for (auto [m, k, n] :
       std::vector<std::array<std::int64_t, 3>>{{1, 1, 1}, {3, 17, 5}, {33, 3, 257}, {64, 64, 64}}) {
    auto const name = fmt::format("m {} k {} n {}", m, k, n);
    // a stored as [k, m], b as [n, k].
    check_matmul_agrees<Cpu>("a^T " + name, Shape{k, m}, Shape{k, n}, Shape{m, n}, [](auto& c, auto& a, auto& b) {
      return std::tuple{c.view(), a.cview().transposed(), b.cview()};
    });
    check_matmul_agrees<Cpu>(
        "b^T " + name, Shape{m, k}, Shape{n, k}, Shape{m, n},
        [](auto& c, auto& a, auto& b) {
          return std::tuple{c.view(), a.cview(), b.cview().transposed()};
        },
        0.5f, 1.f);
    check_matmul_agrees<Cpu>("a^T b^T " + name, Shape{k, m}, Shape{n, k}, Shape{m, n},
                             [](auto& c, auto& a, auto& b) {
                               return std::tuple{c.view(), a.cview().transposed(), b.cview().transposed()};
                             });
  }
}

TEST_CASE("matmul: a b whose rows lie a power of two apart is re-laid with padded rows where that pays") {
  namespace gm = cpu::detail::gemm;
  // Shapes on both sides of padding_pays' bounds; b [k, n] is a window of a [k, ld] buffer.
  struct Case {
    std::int64_t m, k, n, ld;
    bool pays;
  };
  for (auto [m, k, n, ld, pays] : std::vector<Case>{{256, 1024, 256, 256, true},
                                                    {301, 1031, 263, 512, true},
                                                    {512, 1024, 512, 512, true},
                                                    {255, 1024, 256, 256, false},
                                                    {300, 1023, 300, 512, false},
                                                    {513, 1024, 300, 512, false},
                                                    {300, 1024, 300, 300, false}}) {
    auto const name = fmt::format("m {} k {} n {} ld {}", m, k, n, ld);
    CHECK_MESSAGE(gm::padding_pays(Shape{m, k}, gm::Dims{ld, 1}, Shape{m, n}, 2) == pays, name);
    // Never for a transposed b, nor for one matrix of a batch.
    CHECK_FALSE(gm::padding_pays(Shape{m, k}, gm::Dims{1, ld}, Shape{m, n}, 2));
    CHECK_FALSE(gm::padding_pays(Shape{2, m, k}, gm::Dims{k * ld, ld, 1}, Shape{2, m, n}, 3));
    // a transposed, as in a weight gradient.
    check_matmul_agrees<Cpu>(
        "a^T, " + name, Shape{k, m}, Shape{k, ld}, Shape{m, n},
        [=](auto& c, auto& a, auto& b) {
          using B = typename std::remove_reference_t<decltype(c)>::backend;
          return std::tuple{c.view(), a.cview().transposed(), CView<B>(b.data() + (ld - n), Shape{k, n}, Strides{ld, 1})};
        },
        0.5f, 1.f);
  }
  // The weight gradient of a d x d projection is this product.
  check_weight_gradient(1040, 270, 256, 7);
}

TEST_CASE("matmul: a c oneDNN would send to its no-copy kernel with power-of-two rows is computed wider") {
  namespace gm = cpu::detail::gemm;
  // widened_n's bounds: a^T [m, k] (dy^T of a weight gradient) and b [k, n] with leading strides ld.
  struct Case {
    std::int64_t m, k, n, ld, wide;
  };
  for (auto [m, k, n, ld, wide] : std::vector<Case>{{512, 1024, 512, 512, 544},
                                                    {512, 4096, 500, 512, 544},   // n not a multiple of 16
                                                    {512, 1023, 512, 512, 0},     // k too short to pay
                                                    {512, 1024, 512, 520, 0},     // no power-of-two rows
                                                    {512, 1024, 256, 256, 0},     // would need n' > 9n/8
                                                    {480, 1024, 512, 512, 0},     // likewise (n' 592)
                                                    {1024, 1024, 512, 512, 0}}) {  // oneDNN packs it already
    auto const name = fmt::format("m {} k {} n {} ld {}", m, k, n, ld);
    CHECK_MESSAGE(gm::widened_n(Shape{m, k}, gm::Dims{1, ld}, gm::Dims{ld, 1}, Shape{m, n}, 2, false) == wide, name);
    if (wide == 0) continue;
    CHECK(!gm::dnnl_forces_nocopy(m, wide));
    CHECK(gm::dnnl_forces_nocopy(m, wide - 16));
    CHECK(gm::widened_n(Shape{m, k}, gm::Dims{1, ld}, gm::Dims{ld, 1}, Shape{m, n}, 2, /*has_bias=*/true) == 0);
    CHECK(gm::widened_n(Shape{1, m, k}, gm::Dims{m * ld, 1, ld}, gm::Dims{k * ld, ld, 1}, Shape{1, m, n}, 3, false) == 0);
    // Only one operand with power-of-two rows is enough.
    CHECK(gm::widened_n(Shape{m, k}, gm::Dims{1, ld + 8}, gm::Dims{ld, 1}, Shape{m, n}, 2, false) == wide);
    CHECK(gm::widened_n(Shape{m, k}, gm::Dims{1, ld}, gm::Dims{ld + 8, 1}, Shape{m, n}, 2, false) == wide);
    // The product itself, with beta (applied when c is copied out of the workspace) and a strided c.
    check_matmul_agrees<Cpu>(
        "widened a^T, " + name, Shape{k, ld}, Shape{k, ld}, Shape{m, n + 3},
        [=](auto& c, auto& a, auto& b) {
          using B = typename std::remove_reference_t<decltype(c)>::backend;
          return std::tuple{View<B>(c.data() + 1, Shape{m, n}, Strides{n + 3, 1}),
                            CView<B>(a.data(), Shape{m, k}, Strides{1, ld}),
                            CView<B>(b.data() + (ld - n), Shape{k, n}, Strides{ld, 1})};
        },
        -0.5f, 1.f);
    // Widened where oneDNN runs the product on its gemm-based kernels (AVX2), whose no-copy kernel
    // is the slow one; not where it has another (brgemm, AVX-512), which needs no mending. Then
    // c [m, n'] went through the workspace (slot 3, which nothing else uses).
    Tensor<Cpu> ab(Shape{k, ld}), bb(Shape{k, ld}), cb(Shape{m, n + 3});
    auto const p = gm::plan(View<Cpu>(cb.data() + 1, Shape{m, n}, Strides{n + 3, 1}),
                            CView<Cpu>(ab.data(), Shape{m, k}, Strides{1, ld}),
                            CView<Cpu>(bb.data() + (ld - n), Shape{k, n}, Strides{ld, 1}), -0.5f, 1.f);
    bool const gemm_based = p.implementation.starts_with("gemm:");
    MESSAGE(name, ": oneDNN runs it on ", p.implementation);
    CHECK(p.wide_n == (gemm_based ? wide : 0));
    if (gemm_based) CHECK(cpu::context().workspace_bytes(3) >= static_cast<std::size_t>(m * wide) * sizeof(float));
  }
  // A weight gradient of a [512, 512] projection, through linear_backward (dw accumulates: beta 1).
  check_weight_gradient(1100, 512, 512, 11);
}

TEST_CASE("matmul: strided attention heads leave oneDNN's gemm-based matmul where it has another") {
  // oneDNN 2.6's gemm-based matmul mallocs on every call on AVX-512 CPUs (once per batch member), and
  // there its brgemm matmul takes batched problems only with compact operands: the heads, strided
  // views of the q|k|v rows, are copied compact for it. Where gemm-based is all there is (AVX2), they
  // are read in place. Every product of attention's forward and backward, checked against Reference.
  namespace gm = cpu::detail::gemm;
  std::int64_t const n = 3, t = 7, h = 2, dh = 16, width = 3 * h * dh;
  Tensor<Cpu> dense_a(Shape{n, h, t, t}), dense_b(Shape{n, h, t, dh}), dense_c(Shape{n, h, t, dh});
  bool const brgemm = !gm::plan(dense_c, dense_a, dense_b).implementation.starts_with("gemm:");
  MESSAGE("compact batched products run on ", gm::plan(dense_c, dense_a, dense_b).implementation,
          std::string(brgemm ? ": strided heads are copied compact for it" : ": strided heads are read in place"));
  CHECK(brgemm == cpu::compact_batches_leave_gemm());
  Rng rng(21);
  auto const qkv = random_tensor<Cpu>(Shape{n, t, width}, rng);
  auto const probs = random_tensor<Cpu>(Shape{n, h, t, t}, rng);
  auto const dctx = random_tensor<Cpu>(Shape{n, t, h, dh}, rng);
  auto const qkv_r = to_backend<Reference>(qkv), probs_r = to_backend<Reference>(probs), dctx_r = to_backend<Reference>(dctx);
  // Product i of attention (a, b) over the given buffers, on backend B.
  auto product = [&]<class B>(int i, Tensor<B> const& x, Tensor<B> const& p, Tensor<B> const& d) {
    auto head = [&](std::int64_t slot) {  // [N, H, T, dh] in columns slot * h * dh.. of qkv
      return CView<B>(x.data() + slot * h * dh, Shape{n, h, t, dh}, Strides{t * width, dh, width, 1});
    };
    CView<B> const q = head(0), k = head(1), v = head(2), dctx_heads = d.cview().permute({0, 2, 1, 3});
    CView<B> const pv = p.cview(), pt = p.cview().transposed();
    std::array<std::pair<CView<B>, CView<B>>, 6> const all{{{q, k.transposed()}, {pv, v}, {dctx_heads, v.transposed()},
                                                            {pt, dctx_heads}, {pv, k}, {pt, q}}};
    return all[static_cast<std::size_t>(i)];
  };
  struct Product {
    char const* name;
    bool a_strided, b_strided;
  };
  std::array<Product, 6> const products{{{"scores = q @ k^T", true, true},
                                         {"ctx = p @ v", false, true},
                                         {"dp = dctx @ v^T", false, true},
                                         {"dv = p^T @ dctx", false, false},
                                         {"dq = ds @ k", false, true},
                                         {"dk = ds^T @ q", false, true}}};
  for (int i = 0; i < 6; ++i) {
    auto const& pr = products[static_cast<std::size_t>(i)];
    CAPTURE(pr.name);
    auto const [a, b] = product.template operator()<Cpu>(i, qkv, probs, dctx);
    auto const [ar, br] = product.template operator()<Reference>(i, qkv_r, probs_r, dctx_r);
    Tensor<Cpu> c(Shape{n, h, a.size(2), b.size(3)});
    auto const p = gm::plan(c, a, b, 0.5f);
    CHECK(p.implementation.starts_with("gemm:") == !brgemm);
    if (brgemm) {
      // Only what is strided is copied (dctx's heads are a compact permutation: read in place).
      CHECK((p.feed_a == gm::Feed::pack) == pr.a_strided);
      CHECK((p.feed_b == gm::Feed::pack) == pr.b_strided);
    } else {
      CHECK(p.feed_a == gm::Feed::as_is);
      CHECK(p.feed_b == gm::Feed::as_is);
    }
    ops::matmul(Cpu{}, c, a, b, 0.5f);
    Tensor<Reference> cr(c.shape());
    ops::matmul(Reference{}, cr, ar, br, 0.5f);
    check_close(c, cr, kMatmulRtol, kMatmulAtol, pr.name);
  }
  // compact_like keeps the order of the strides: a transposed view stays transposed.
  CHECK(gm::compact_like(Shape{2, 5, 3}, gm::Dims{15, 1, 5}, 3) == gm::Dims{15, 1, 5});
  CHECK(gm::compact_like(Shape{2, 5, 3}, gm::Dims{40, 1, 8}, 3) == gm::Dims{15, 1, 5});
  CHECK(gm::compact_like(Shape{2, 3, 4, 5}, gm::Dims{300, 5, 75, 1}, 4) == gm::Dims{60, 5, 15, 1});
}

TEST_CASE("matmul: operands with no unit stride, and a strided c") {
  std::int64_t const m = 17, k = 33, n = 9;
  // a: every other column of an [m, 2k] buffer; b: every third column of an [n, 3k] buffer, transposed.
  // Neither has a unit stride, so the Cpu backend packs them.
  check_matmul_agrees<Cpu>("strided a and b", Shape{m, 2 * k}, Shape{n, 3 * k}, Shape{m, n},
                           [=](auto& c, auto& a, auto& b) {
                             using B = typename std::remove_reference_t<decltype(c)>::backend;
                             CView<B> const av(a.data(), Shape{m, k}, Strides{2 * k, 2});
                             CView<B> const bv(b.data(), Shape{k, n}, Strides{3, 3 * k});
                             return std::tuple{c.view(), av, bv};
                           });
  // c: an [m, n] window (row stride n + 3) of a larger buffer, with beta = 1.
  check_matmul_agrees<Cpu>(
      "strided c", Shape{m, k}, Shape{k, n}, Shape{m, n + 3},
      [=](auto& c, auto& a, auto& b) {
        using B = typename std::remove_reference_t<decltype(c)>::backend;
        View<B> const cv(c.data() + 1, Shape{m, n}, Strides{n + 3, 1});
        return std::tuple{cv, a.cview(), b.cview()};
      },
      1.f, 1.f);
}

TEST_CASE("matmul: batched rank 3 and 4 with broadcast batch dims") {
  struct Case {
    Shape a, b, c;
  };
  std::vector<Case> const cases{
      {{4, 3, 5}, {4, 5, 2}, {4, 3, 2}},          {{1, 3, 5}, {4, 5, 2}, {4, 3, 2}},
      {{4, 3, 5}, {1, 5, 2}, {4, 3, 2}},          {{1, 3, 5}, {1, 5, 2}, {4, 3, 2}},
      {{3, 1, 1}, {3, 1, 1}, {3, 1, 1}},          {{2, 3, 4, 5}, {2, 3, 5, 6}, {2, 3, 4, 6}},
      {{2, 1, 4, 5}, {1, 3, 5, 6}, {2, 3, 4, 6}}, {{1, 3, 4, 5}, {2, 3, 5, 6}, {2, 3, 4, 6}},
      {{2, 3, 4, 5}, {2, 1, 5, 6}, {2, 3, 4, 6}}, {{1, 1, 17, 33}, {2, 3, 33, 3}, {2, 3, 17, 3}},
      {{2, 1, 3, 4}, {2, 1, 4, 5}, {2, 3, 3, 5}},
  };
  for (auto const& cs : cases)
    for (auto [alpha, beta] : std::vector<std::pair<float, float>>{{1.f, 0.f}, {0.5f, 1.f}})
      check_matmul_agrees<Cpu>(fmt::format("{} @ {} -> {}", cs.a, cs.b, cs.c), cs.a, cs.b, cs.c, plain, alpha,
                               beta);
}

TEST_CASE("matmul: per-head permuted views (attention)") {
  std::int64_t const batch = 2, t = 5, heads = 3, dh = 4;
  // q, k, v stored [B, T, H, dh], used as [B, H, T, dh]: scores = q @ k^T, [B, H, T, T].
  check_matmul_agrees<Cpu>(
      "q @ k^T", Shape{batch, t, heads, dh}, Shape{batch, t, heads, dh}, Shape{batch, heads, t, t},
      [&](auto& c, auto& q, auto& k) {
        return std::tuple{c.view(), heads_of(q), heads_of(k).transposed()};
      },
      0.5f, 0.f);
  // out = p @ v written straight into the per-head slices of an output stored [B, T, H, dh].
  check_matmul_agrees<Cpu>("p @ v into heads", Shape{batch, heads, t, t}, Shape{batch, t, heads, dh},
                           Shape{batch, t, heads, dh}, [&](auto& c, auto& p, auto& v) {
                             return std::tuple{c.view().permute({0, 2, 1, 3}), p.cview(), heads_of(v)};
                           });
}

TEST_CASE("matmul: empty dims") {
  // k = 0: the product is zero, so c = beta c; m = 0: nothing to do.
  check_matmul_agrees<Cpu>("k = 0", Shape{3, 0}, Shape{0, 4}, Shape{3, 4}, plain, 1.f, 0.5f);
  check_matmul_agrees<Cpu>("k = 0, beta 0", Shape{2, 3, 0}, Shape{1, 0, 4}, Shape{2, 3, 4}, plain, 1.f, 0.f);
  check_matmul_agrees<Cpu>("m = 0", Shape{0, 3}, Shape{3, 4}, Shape{0, 4}, plain);
}

TEST_CASE_TEMPLATE("matmul: beta = 0 assigns (ignores NaN in c), beta = 1 accumulates", B, Cpu, Reference) {
  Rng rng(3);
  auto a = random_tensor<B>(Shape{5, 7}, rng), b = random_tensor<B>(Shape{7, 6}, rng);
  Tensor<B> c(Shape{5, 6}), once(Shape{5, 6});
  for (std::int64_t i = 0; i < c.numel(); ++i) c.data()[i] = std::numeric_limits<float>::quiet_NaN();
  ops::matmul(B{}, c, a, b);
  ops::matmul(B{}, once, a, b, 1.f, 1.f);  // once was zero: the same product
  check_close(c, once, 1e-6, 1e-6, "beta 0 over NaN vs beta 1 over zeros");
  ops::matmul(B{}, c, a, b, 1.f, 1.f);
  for (std::int64_t i = 0; i < c.numel(); ++i)
    REQUIRE(c.data()[i] == doctest::Approx(2 * once.data()[i]).epsilon(1e-5));
  ops::matmul(B{}, c, a, b, 2.f, 0.f);
  for (std::int64_t i = 0; i < c.numel(); ++i)
    REQUIRE(c.data()[i] == doctest::Approx(2 * once.data()[i]).epsilon(1e-5));
}

TEST_CASE("matmul: repeated calls with the same shapes do not grow the primitive cache") {
  auto& ctx = cpu::context();
  Rng rng(4);
  auto step = [&] {
    // Fresh buffers each time: the cache is keyed by shapes and strides, not by pointers.
    auto a = random_tensor<Cpu>(Shape{2, 3, 17, 9}, rng), b = random_tensor<Cpu>(Shape{1, 3, 9, 5}, rng);
    Tensor<Cpu> c(Shape{2, 3, 17, 5}), da(a.shape()), db(b.shape());
    ops::matmul(Cpu{}, c, a, b, 0.5f, 1.f);
    ops::matmul(Cpu{}, c.view(), a.cview(), b.cview().permute({0, 1, 3, 2}).transposed());
    ops::matmul_backward(Cpu{}, da, db, c, a, b, 0.5f);  // db sums over the broadcast dim: several GEMMs
    auto x = random_tensor<Cpu>(Shape{4, 6, 9}, rng), w = random_tensor<Cpu>(Shape{5, 9}, rng),
         bias = random_tensor<Cpu>(Shape{5}, rng);
    Tensor<Cpu> y(Shape{4, 6, 5}), dx(x.shape()), dw(w.shape()), dbias(bias.shape());
    ops::linear_forward(Cpu{}, y, x, w, bias);
    ops::linear_backward(Cpu{}, dx, dw, dbias, y, x, w);
  };
  step();
  std::size_t const after_first = ctx.cached_primitives();
  for (int i = 0; i < 5; ++i) step();
  CHECK(ctx.cached_primitives() == after_first);
  // A different alpha is a different primitive (output scale), so it adds exactly one entry.
  Rng r2(5);
  auto a = random_tensor<Cpu>(Shape{3, 4}, r2), b = random_tensor<Cpu>(Shape{4, 2}, r2);
  Tensor<Cpu> c(Shape{3, 2});
  ops::matmul(Cpu{}, c, a, b, 0.25f);
  std::size_t const with_alpha = ctx.cached_primitives();
  ops::matmul(Cpu{}, c, a, b, 0.25f);
  CHECK(ctx.cached_primitives() == with_alpha);
}

TEST_CASE("matmul: the primitive cache keeps the most recently used entries and stays correct") {
  auto& ctx = cpu::context();
  std::size_t const saved = ctx.capacity();
  CHECK_THROWS_WITH_AS(ctx.set_capacity(3), doctest::Contains("3 entries is too few"), ValueError);
  ctx.set_capacity(16);
  CHECK(ctx.cached_primitives() <= 16);  // shrinking evicts at once
  Rng rng(17);
  auto product = [&](std::int64_t m) {  // one new primitive per m
    auto ar = random_tensor<Reference>(Shape{m, 7}, rng), br = random_tensor<Reference>(Shape{7, 3}, rng);
    Tensor<Reference> cr(Shape{m, 3});
    Tensor<Cpu> c(Shape{m, 3});
    ops::matmul(Reference{}, cr, ar, br);
    ops::matmul(Cpu{}, c, to_backend<Cpu>(ar), to_backend<Cpu>(br));
    check_close(c, cr, kMatmulRtol, kMatmulAtol, fmt::format("matmul m={} with a 16-entry cache", m));
  };
  for (std::int64_t m = 1; m <= 40; ++m) product(m);
  CHECK(ctx.cached_primitives() == 16);
  std::uint64_t const misses = ctx.cache_misses(), lookups = ctx.cache_lookups();
  product(40);  // still cached: a hit
  CHECK(ctx.cache_lookups() == lookups + 1);
  CHECK(ctx.cache_misses() == misses);
  product(1);  // evicted long ago: rebuilt, still right
  CHECK(ctx.cache_misses() == misses + 1);
  CHECK(ctx.cached_primitives() == 16);
  ctx.set_capacity(saved);
}

TEST_CASE("matmul: oneDNN's own primitive cache is off unless the user sized it") {
  (void)cpu::context();
  // Evicted primitives must not live on in oneDNN's process-wide cache (gigabytes on a translation
  // run); a user's ONEDNN_PRIMITIVE_CACHE_CAPACITY is left alone.
  if (std::getenv("ONEDNN_PRIMITIVE_CACHE_CAPACITY") == nullptr && std::getenv("DNNL_PRIMITIVE_CACHE_CAPACITY") == nullptr)
    CHECK(dnnl::get_primitive_cache_capacity() == 0);
  else
    MESSAGE("ONEDNN_PRIMITIVE_CACHE_CAPACITY is set: oneDNN's cache capacity is the user's (",
            dnnl::get_primitive_cache_capacity(), ")");
  CHECK(cpu::context().capacity() >= 16);
}

// ---- matmul_backward ------------------------------------------------------------------------------

TEST_CASE("matmul_backward: Cpu agrees with Reference, including broadcast batch dims") {
  struct Case {
    Shape a, b, c;
  };
  std::vector<Case> const cases{
      {{1, 1}, {1, 1}, {1, 1}},
      {{17, 33}, {33, 3}, {17, 3}},
      {{1, 257}, {257, 5}, {1, 5}},
      {{4, 3, 5}, {4, 5, 2}, {4, 3, 2}},
      {{1, 3, 5}, {4, 5, 2}, {4, 3, 2}},
      {{4, 3, 5}, {1, 5, 2}, {4, 3, 2}},
      {{1, 3, 5}, {1, 5, 2}, {4, 3, 2}},
      {{2, 1, 4, 5}, {1, 3, 5, 6}, {2, 3, 4, 6}},
      {{1, 1, 4, 5}, {2, 3, 5, 6}, {2, 3, 4, 6}},
  };
  for (auto const& cs : cases) test::check_matmul_backward_agrees<Cpu>(cs.a, cs.b, cs.c);
}

TEST_CASE("matmul_backward: transposed and per-head operands, one gradient skipped") {
  Rng rng(6);
  std::int64_t const batch = 2, t = 5, heads = 3, dh = 4;
  // scores = q @ k^T with q, k stored [B, T, H, dh]; the gradients go to [B, H, T, dh] buffers.
  auto qr = random_tensor<Reference>(Shape{batch, t, heads, dh}, rng),
       kr = random_tensor<Reference>(qr.shape(), rng);
  auto dsr = random_tensor<Reference>(Shape{batch, heads, t, t}, rng);
  auto qc = to_backend<Cpu>(qr), kc = to_backend<Cpu>(kr), dsc = to_backend<Cpu>(dsr);
  Tensor<Reference> dqr(Shape{batch, heads, t, dh}), dktr(Shape{batch, heads, dh, t});
  Tensor<Cpu> dqc(dqr.shape()), dktc(dktr.shape());
  ops::matmul_backward(Reference{}, dqr, dktr, dsr, heads_of(qr), heads_of(kr).transposed(), 0.5f);
  ops::matmul_backward(Cpu{}, dqc, dktc, dsc, heads_of(qc), heads_of(kc).transposed(), 0.5f);
  check_close(dqc, dqr, kMatmulRtol, kMatmulAtol, "dq");
  check_close(dktc, dktr, kMatmulRtol, kMatmulAtol, "dk^T");
  // Skipping da leaves it alone and still computes db.
  Tensor<Cpu> db2(dktc.shape());
  ops::matmul_backward(Cpu{}, View<Cpu>{}, db2, dsc, heads_of(qc), heads_of(kc).transposed(), 0.5f);
  check_close(db2, dktc, 0, 0, "db alone");
}

TEST_CASE("matmul_backward: finite differences, broadcast batch dims, alpha") {
  struct Case {
    Shape a, b, c;
  };
  for (auto const& cs : std::vector<Case>{{{3, 4}, {4, 5}, {3, 5}},
                                          {{2, 1, 3, 4}, {1, 3, 4, 5}, {2, 3, 3, 5}},
                                          {{1, 3, 4}, {1, 4, 2}, {3, 3, 2}}}) {
    float const alpha = 0.7f;
    Rng rng(7);
    auto a = random_tensor<Cpu>(cs.a, rng), b = random_tensor<Cpu>(cs.b, rng),
         w = random_tensor<Cpu>(cs.c, rng);
    Tensor<Cpu> c(cs.c), da(cs.a), db(cs.b);
    ops::matmul_backward(Cpu{}, da, db, w, a, b, alpha);
    auto loss = [&] {
      ops::matmul(Cpu{}, c, a, b, alpha);
      return test::weighted_sum<Cpu>(c, w);
    };
    test::check_gradient(fmt::format("a of {} @ {}", cs.a, cs.b), a, da, loss);
    test::check_gradient(fmt::format("b of {} @ {}", cs.a, cs.b), b, db, loss);
    // Both assign: a second call gives the same gradients.
    auto const da1 = da.clone(), db1 = db.clone();
    ops::matmul_backward(Cpu{}, da, db, w, a, b, alpha);
    check_close(da, da1, 0, 0, "da assigns");
    check_close(db, db1, 0, 0, "db assigns");
  }
}

// ---- linear ---------------------------------------------------------------------------------------

TEST_CASE("linear_forward: Cpu agrees with Reference (rows, odd sizes, rank 3, with and without bias)") {
  for (std::int64_t rows : {1, 3, 17, 257})
    for (auto [in, out] :
         std::vector<std::pair<std::int64_t, std::int64_t>>{{1, 1}, {3, 5}, {33, 17}, {64, 64}})
      for (bool with_bias : {true, false}) {
        std::string const what = fmt::format("rows {} in {} out {} bias {}", rows, in, out, with_bias);
        Rng rng(static_cast<std::uint64_t>(std::hash<std::string>{}(what)));
        auto xr = random_tensor<Reference>(Shape{rows, in}, rng),
             wr = random_tensor<Reference>(Shape{out, in}, rng),
             br = random_tensor<Reference>(Shape{out}, rng);
        auto xc = to_backend<Cpu>(xr), wc = to_backend<Cpu>(wr), bc = to_backend<Cpu>(br);
        Tensor<Reference> yr(Shape{rows, out});
        Tensor<Cpu> yc(Shape{rows, out});
        ops::linear_forward(Reference{}, yr, xr, wr, with_bias ? br.cview() : CView<Reference>{});
        ops::linear_forward(Cpu{}, yc, xc, wc, with_bias ? bc.cview() : CView<Cpu>{});
        check_close(yc, yr, kMatmulRtol, kMatmulAtol, what);
      }
  // Rank 3 x, and w given as a transposed view of an [in, out] buffer.
  Rng rng(8);
  auto xr = random_tensor<Reference>(Shape{2, 3, 7}, rng), wtr = random_tensor<Reference>(Shape{7, 5}, rng),
       br = random_tensor<Reference>(Shape{5}, rng);
  auto xc = to_backend<Cpu>(xr), wtc = to_backend<Cpu>(wtr), bc = to_backend<Cpu>(br);
  Tensor<Reference> yr(Shape{2, 3, 5});
  Tensor<Cpu> yc(yr.shape());
  ops::linear_forward(Reference{}, yr, xr, wtr.cview().transposed(), br);
  ops::linear_forward(Cpu{}, yc, xc, wtc.cview().transposed(), bc);
  check_close(yc, yr, kMatmulRtol, kMatmulAtol, "rank 3, transposed w");
  // in = 0: y is the bias.
  Tensor<Reference> x0r(Shape{2, 3, 0}), w0r(Shape{5, 0});
  Tensor<Cpu> x0c(Shape{2, 3, 0}), w0c(Shape{5, 0});
  ops::linear_forward(Reference{}, yr, x0r, w0r, br);
  ops::linear_forward(Cpu{}, yc, x0c, w0c, bc);
  check_close(yc, yr, 0, 0, "in = 0");
  CHECK(yc(1, 2, 4) == bc(4));
}

TEST_CASE("linear_backward: Cpu agrees with Reference; dx assigns, dw and dbias accumulate") {
  for (std::int64_t rows : {1, 3, 17, 257})
    for (auto [in, out] :
         std::vector<std::pair<std::int64_t, std::int64_t>>{{1, 1}, {3, 5}, {33, 17}, {64, 64}}) {
      std::string const what = fmt::format("rows {} in {} out {}", rows, in, out);
      Rng rng(static_cast<std::uint64_t>(std::hash<std::string>{}(what)));
      auto xr = random_tensor<Reference>(Shape{rows, in}, rng),
           wr = random_tensor<Reference>(Shape{out, in}, rng),
           dyr = random_tensor<Reference>(Shape{rows, out}, rng);
      // Prior contents: dx is overwritten, dw and dbias are added to.
      auto dxr = random_tensor<Reference>(Shape{rows, in}, rng),
           dwr = random_tensor<Reference>(Shape{out, in}, rng),
           dbr = random_tensor<Reference>(Shape{out}, rng);
      auto xc = to_backend<Cpu>(xr), wc = to_backend<Cpu>(wr), dyc = to_backend<Cpu>(dyr);
      auto dxc = to_backend<Cpu>(dxr), dwc = to_backend<Cpu>(dwr), dbc = to_backend<Cpu>(dbr);
      auto const dw0 = dwc.clone(), db0 = dbc.clone();
      ops::linear_backward(Reference{}, dxr, dwr, dbr, dyr, xr, wr);
      ops::linear_backward(Cpu{}, dxc, dwc, dbc, dyc, xc, wc);
      check_close(dxc, dxr, kMatmulRtol, kMatmulAtol, "dx " + what);
      check_close(dwc, dwr, kMatmulRtol, kMatmulAtol, "dw " + what);
      check_close(dbc, dbr, kMatmulRtol, kMatmulAtol, "dbias " + what);

      // A second call: dx unchanged, dw - dw0 and dbias - db0 double.
      auto const dx1 = dxc.clone(), dw1 = dwc.clone(), db1 = dbc.clone();
      ops::linear_backward(Cpu{}, dxc, dwc, dbc, dyc, xc, wc);
      check_close(dxc, dx1, 0, 0, "dx assigns " + what);
      for (std::int64_t i = 0; i < dwc.numel(); ++i)
        REQUIRE(dwc.data()[i] - dw0.data()[i] ==
                doctest::Approx(2.0 * (dw1.data()[i] - dw0.data()[i])).epsilon(1e-4).scale(1.0));
      for (std::int64_t i = 0; i < dbc.numel(); ++i)
        REQUIRE(dbc.data()[i] - db0.data()[i] ==
                doctest::Approx(2.0 * (db1.data()[i] - db0.data()[i])).epsilon(1e-4).scale(1.0));
    }
}

TEST_CASE("linear_backward: rank 3, strided w, skipped gradients") {
  Rng rng(9);
  auto xr = random_tensor<Reference>(Shape{2, 3, 7}, rng), wtr = random_tensor<Reference>(Shape{7, 5}, rng),
       dyr = random_tensor<Reference>(Shape{2, 3, 5}, rng);
  auto xc = to_backend<Cpu>(xr), wtc = to_backend<Cpu>(wtr), dyc = to_backend<Cpu>(dyr);
  Tensor<Reference> dxr(xr.shape()), dwr(Shape{5, 7}), dbr(Shape{5});
  Tensor<Cpu> dxc(xr.shape()), dwc(Shape{5, 7}), dbc(Shape{5});
  ops::linear_backward(Reference{}, dxr, dwr, dbr, dyr, xr, wtr.cview().transposed());
  ops::linear_backward(Cpu{}, dxc, dwc, dbc, dyc, xc, wtc.cview().transposed());
  check_close(dxc, dxr, kMatmulRtol, kMatmulAtol, "dx");
  check_close(dwc, dwr, kMatmulRtol, kMatmulAtol, "dw");
  check_close(dbc, dbr, kMatmulRtol, kMatmulAtol, "dbias");
  // Only dbias: the others are empty views.
  Tensor<Cpu> db2(Shape{5});
  ops::linear_backward(Cpu{}, View<Cpu>{}, View<Cpu>{}, db2, dyc, xc, wtc.cview().transposed());
  check_close(db2, dbc, 0, 0, "dbias alone");
  // Large rows x wide out: the parallel column reduction.
  auto dy_big = random_tensor<Cpu>(Shape{1000, 300}, rng);
  auto dy_big_r = to_backend<Reference>(dy_big);
  Tensor<Cpu> x_big(Shape{1000, 1}), w_big(Shape{300, 1}), db_big(Shape{300});
  Tensor<Reference> x_big_r(Shape{1000, 1}), w_big_r(Shape{300, 1}), db_big_r(Shape{300});
  ops::linear_backward(Cpu{}, View<Cpu>{}, View<Cpu>{}, db_big, dy_big, x_big, w_big);
  ops::linear_backward(Reference{}, View<Reference>{}, View<Reference>{}, db_big_r, dy_big_r, x_big_r,
                       w_big_r);
  check_close(db_big, db_big_r, 1e-5, 1e-5, "dbias [1000, 300]");
  // The same sums with one thread: the row chunks are fixed, so the result is bit for bit the same.
  int const threads = omp_get_max_threads();
  omp_set_num_threads(1);
  Tensor<Cpu> db_one(Shape{300});
  ops::linear_backward(Cpu{}, View<Cpu>{}, View<Cpu>{}, db_one, dy_big, x_big, w_big);
  omp_set_num_threads(threads);
  check_close(db_one, db_big, 0, 0, "dbias with 1 thread vs " + std::to_string(threads));
  // dy whose columns are not contiguous (a transposed view).
  auto dyt = random_tensor<Cpu>(Shape{7, 1000}, rng);
  auto dyt_r = to_backend<Reference>(dyt);
  Tensor<Cpu> x7(Shape{1000, 1}), w7(Shape{7, 1}), db7(Shape{7});
  Tensor<Reference> x7r(Shape{1000, 1}), w7r(Shape{7, 1}), db7r(Shape{7});
  ops::linear_backward(Cpu{}, View<Cpu>{}, View<Cpu>{}, db7, dyt.cview().transposed(), x7, w7);
  ops::linear_backward(Reference{}, View<Reference>{}, View<Reference>{}, db7r, dyt_r.cview().transposed(), x7r, w7r);
  check_close(db7, db7r, 1e-5, 1e-5, "dbias of a transposed dy");
}

TEST_CASE("linear_backward: finite differences of dx, dw and dbias") {
  Rng rng(10);
  auto x = random_tensor<Cpu>(Shape{2, 3, 6}, rng), w = random_tensor<Cpu>(Shape{4, 6}, rng),
       bias = random_tensor<Cpu>(Shape{4}, rng), g = random_tensor<Cpu>(Shape{2, 3, 4}, rng);
  Tensor<Cpu> y(Shape{2, 3, 4}), dx(x.shape()), dw(w.shape()), dbias(bias.shape());
  ops::linear_backward(Cpu{}, dx, dw, dbias, g, x, w);  // dw, dbias start at zero
  auto loss = [&] {
    ops::linear_forward(Cpu{}, y, x, w, bias);
    return test::weighted_sum<Cpu>(y, g);
  };
  test::check_gradient("x", x, dx, loss);
  test::check_gradient("w", w, dw, loss);
  test::check_gradient("bias", bias, dbias, loss);
}

TEST_CASE("linear_forward with a relu epilogue: relu(x w^T + b) as linear then relu, in every GEMM path") {
  struct Case {
    Shape x;
    std::int64_t out;
    bool bias;
  };
  // Rows, rank 3, no bias, and [512, 1024] @ [1024, 512] without bias: the widened path
  // (cpu::detail::gemm::widened_n), where c goes through the workspace on its way out.
  std::vector<Case> const cases = {{Shape{17, 33}, 9, true},   {Shape{2, 3, 64}, 64, true}, {Shape{257, 5}, 3, false},
                                   {Shape{512, 1024}, 512, false}, {Shape{2, 3, 0}, 5, true}};
  for (auto const& c : cases) {
    std::string const what = fmt::format("x {} out {} bias {}", c.x, c.out, c.bias);
    CAPTURE(what);
    Rng rng(static_cast<std::uint64_t>(std::hash<std::string>{}(what)));
    std::int64_t const in = c.x[-1];
    auto const x = random_tensor<Cpu>(c.x, rng);
    auto const w = random_tensor<Cpu>(Shape{c.out, in}, rng);
    auto b = random_tensor<Cpu>(Shape{c.out}, rng);
    b.data()[0] = -0.5f;  // so that the ReLU clips something even where in = 0 (y = relu(b))
    CView<Cpu> const bias = c.bias ? b.cview() : CView<Cpu>{};
    Shape const ys = c.x.with_last(c.out);
    Tensor<Cpu> plain_y(ys), y(ys);
    ops::linear_forward(Cpu{}, plain_y, x, w, bias);
    ops::linear_forward(Cpu{}, y, x, w, bias, ops::Epilogue::relu);
    std::int64_t wrong = 0, zeros = 0;
    for (std::int64_t i = 0; i < y.numel(); ++i) {
      float const h = plain_y.data()[i];
      wrong += y.data()[i] != (h > 0.f ? h : 0.f);
      zeros += y.data()[i] == 0.f;
    }
    CHECK(wrong == 0);
    CHECK(zeros > 0);  // the ReLU did something
    auto const xr = to_backend<Reference>(x), wr = to_backend<Reference>(w), br = to_backend<Reference>(b);
    Tensor<Reference> yr(ys);
    ops::linear_forward(Reference{}, yr, xr, wr, c.bias ? br.cview() : CView<Reference>{}, ops::Epilogue::relu);
    check_close(y, yr, kMatmulRtol, in >= 1024 ? 1e-4 : kMatmulAtol, what + ": against the Reference");
  }
  namespace gm = cpu::detail::gemm;
  CHECK(gm::widened_n(Shape{512, 1024}, gm::Dims{1024, 1}, gm::Dims{1, 1024}, Shape{512, 512}, 2, false) != 0);
  // The relu and the plain product are separate primitives: alternating calls stay right.
  Rng rng(12);
  auto const x = random_tensor<Cpu>(Shape{8, 16}, rng), w = random_tensor<Cpu>(Shape{8, 16}, rng);
  Tensor<Cpu> a(Shape{8, 8}), r(Shape{8, 8});
  ops::linear_forward(Cpu{}, r, x, w, {}, ops::Epilogue::relu);
  ops::linear_forward(Cpu{}, a, x, w, {});
  std::int64_t negative = 0;
  for (std::int64_t i = 0; i < a.numel(); ++i) negative += a.data()[i] < 0.f;
  CHECK(negative > 0);
}

TEST_CASE("linear_forward with a relu epilogue: finite differences through activation_backward of y") {
  // A central difference with step h moves a pre-activation by at most h (inputs in [-1, 1], 6 terms:
  // 6 h for x), so the inputs are drawn again until every pre-activation is clear of the kink by
  // more than that: the check then compares gradients, not the kink.
  double const step = 1e-3;
  Rng rng(13);
  Tensor<Cpu> x, w, bias, g;
  Tensor<Cpu> plain(Shape{3, 5, 7});
  for (int draw = 0;; ++draw) {
    REQUIRE(draw < 100);
    x = random_tensor<Cpu>(Shape{3, 5, 6}, rng), w = random_tensor<Cpu>(Shape{7, 6}, rng);
    bias = random_tensor<Cpu>(Shape{7}, rng), g = random_tensor<Cpu>(Shape{3, 5, 7}, rng);
    ops::linear_forward(Cpu{}, plain, x, w, bias);
    float nearest = 1e30f;
    for (std::int64_t i = 0; i < plain.numel(); ++i) nearest = std::min(nearest, std::abs(plain.data()[i]));
    if (nearest > 8 * step) break;
  }
  Tensor<Cpu> y(g.shape()), dh(g.shape()), dx(x.shape()), dw(w.shape()), dbias(bias.shape());
  ops::linear_forward(Cpu{}, y, x, w, bias, ops::Epilogue::relu);
  ops::activation_backward(Cpu{}, dh, g, y, ops::Activation::relu);  // from the output alone
  ops::linear_backward(Cpu{}, dx, dw, dbias, dh, x, w);
  auto loss = [&] {
    ops::linear_forward(Cpu{}, y, x, w, bias, ops::Epilogue::relu);
    return test::weighted_sum<Cpu>(y, g);
  };
  test::check_gradient("x", x, dx, loss, step, 2e-2, 2e-3);
  test::check_gradient("w", w, dw, loss, step, 2e-2, 2e-3);
  test::check_gradient("bias", bias, dbias, loss, step, 2e-2, 2e-3);
}

// ---- shape errors -----------------------------------------------------------------------------------

TEST_CASE_TEMPLATE("matmul family: shape errors name the arguments and their shapes", B, Cpu, Reference) {
  auto t = [](Shape s) { return Tensor<B>(s); };
  auto a = t({3, 4}), b = t({5, 6}), c = t({3, 6});
  CHECK_THROWS_WITH_AS(
      ops::matmul(B{}, c, a, b),
      doctest::Contains("matmul: inner dimensions mismatch: a has shape [3, 4] and b has shape [5, 6]"),
      ShapeError);
  auto b45 = t({4, 5}), c35 = t({3, 5});
  CHECK_THROWS_WITH_AS(
      ops::matmul(B{}, c, a, b45),
      doctest::Contains("c has shape [3, 6] but a has shape [3, 4] and b has shape [4, 5]; c must be "
                        "[..., 3, 5]"),
      ShapeError);
  auto a3 = t({2, 3, 4});
  CHECK_THROWS_WITH_AS(
      ops::matmul(B{}, c35, a3, b45),
      doctest::Contains("a has shape [2, 3, 4], b has shape [4, 5] and c has shape [3, 5]; all three "
                        "must have the same rank, 2, 3 or 4"),
      ShapeError);
  auto b3 = t({3, 4, 5}), c3 = t({2, 3, 5});
  CHECK_THROWS_WITH_AS(
      ops::matmul(B{}, c3, a3, b3),
      doctest::Contains("batch dim 0 of a (shape [2, 3, 4]) and b (shape [3, 4, 5]) must each be 1 or "
                        "equal c's (shape [2, 3, 5])"),
      ShapeError);
  auto a5 = t({1, 1, 1, 3, 4}), b5 = t({1, 1, 1, 4, 5}), c5 = t({1, 1, 1, 3, 5});
  CHECK_THROWS_WITH_AS(ops::matmul(B{}, c5, a5, b5), doctest::Contains("2, 3 or 4"), ShapeError);
  auto c53 = t({5, 3});
  CHECK_THROWS_WITH_AS(
      ops::matmul(B{}, c53.view().transposed(), a, b45),
      doctest::Contains("c (shape [3, 5], strides [1, 3]) must have unit stride in its last dim"),
      ShapeError);
  CHECK_THROWS_AS(ops::matmul(B{}, c35, a, b45, std::numeric_limits<float>::quiet_NaN()), ValueError);

  auto da = t({4, 3});
  CHECK_THROWS_WITH_AS(ops::matmul_backward(B{}, da, View<B>{}, c35, a, b45),
                       doctest::Contains("matmul_backward: da has shape [4, 3] but a has shape [3, 4]"),
                       ShapeError);
  CHECK_THROWS_WITH_AS(
      ops::matmul_backward(B{}, View<B>{}, View<B>{}, c, a, b45),
      doctest::Contains("matmul_backward: dc has shape [3, 6] but a has shape [3, 4] and b has shape "
                        "[4, 5]"),
      ShapeError);

  auto x = t({4, 7}), w = t({5, 8}), y = t({4, 5}), bias = t({4});
  CHECK_THROWS_WITH_AS(
      ops::linear_forward(B{}, y, x, w, CView<B>{}),
      doctest::Contains("linear_forward: inner dimensions mismatch: x has shape [4, 7] but w has shape "
                        "[5, 8]"),
      ShapeError);
  auto x8 = t({4, 8}), y6 = t({4, 6});
  CHECK_THROWS_WITH_AS(
      ops::linear_forward(B{}, y6, x8, w, CView<B>{}),
      doctest::Contains("y has shape [4, 6] but x has shape [4, 8] and w has shape [5, 8]; y must be "
                        "[4, 5]"),
      ShapeError);
  CHECK_THROWS_WITH_AS(ops::linear_forward(B{}, y, x8, w, bias),
                       doctest::Contains("bias has shape [4] but w has shape [5, 8]; bias must be [5]"),
                       ShapeError);
  auto x3 = t({3, 2, 8}), y3 = t({2, 3, 5});
  CHECK_THROWS_WITH_AS(
      ops::linear_forward(B{}, y3, x3.cview().permute({1, 0, 2}), w, CView<B>{}),
      doctest::Contains("x (shape [2, 3, 8], strides [8, 16, 1]) has rank > 2 and must be contiguous"),
      ShapeError);

  auto dy = t({4, 6}), dw = t({5, 7});
  CHECK_THROWS_WITH_AS(
      ops::linear_backward(B{}, View<B>{}, View<B>{}, View<B>{}, dy, x8, w),
      doctest::Contains("linear_backward: dy has shape [4, 6] but x has shape [4, 8] and w has shape "
                        "[5, 8]; dy must be [4, 5]"),
      ShapeError);
  CHECK_THROWS_WITH_AS(ops::linear_backward(B{}, View<B>{}, dw, View<B>{}, y, x8, w),
                       doctest::Contains("linear_backward: dw has shape [5, 7] but w has shape [5, 8]"),
                       ShapeError);
  CHECK_THROWS_WITH_AS(ops::linear_backward(B{}, View<B>{}, View<B>{}, bias, y, x8, w),
                       doctest::Contains("linear_backward: dbias has shape [4] but w has shape [5, 8]"),
                       ShapeError);
}
