// Dropout with counter-based (Philox) masks: Cpu (tiled Philox blocks) against Reference
// (key.uniform per element), mask reproducibility, statistics, gradients and errors.
#include <lnformer/backend/cpu/dropout.hpp>
#include <lnformer/backend/reference/dropout.hpp>
#include <lnformer/backend/reference/elementwise.hpp>

#include "ops/fixtures_elementwise.hpp"
#include "support.hpp"

#include <doctest/doctest.h>

#include <bit>
#include <cmath>
#include <cstdint>
#include <limits>
#include <string_view>
#include <cstdlib>
#include <vector>

using namespace lnformer;
using namespace lnformer::test;

namespace {

std::vector<Shape> const kShapes = {Shape{1},    Shape{3},     Shape{17},   Shape{33},      Shape{257},
                                    Shape{4099}, Shape{5, 17}, Shape{2, 3}, Shape{301, 257}};

std::vector<bool> dropped(Tensor<Cpu> const& y) {
  std::vector<bool> m(static_cast<std::size_t>(y.numel()));
  for (std::int64_t i = 0; i < y.numel(); ++i) m[static_cast<std::size_t>(i)] = y.data()[i] == 0.f;
  return m;
}

}  // namespace

TEST_CASE("dropout: Cpu equals Reference and the definition key.uniform(i) < p, for every lane offset") {
  Rng rng(21);
  // 1/3 and 0.1 are not multiples of 2^-24 (the mask's integer threshold is a ceiling); 0.5 is.
  for_each_dropout_case({0.1f, 0.5f, 0.9f, 1.f / 3.f}, kShapes, [&](float p, RngKey const& key, Shape const& s) {
    auto const x = nonzero_tensor<Cpu>(s, rng);
    auto const xr = to_backend<Reference>(x);
    Tensor<Cpu> y(s);
    Tensor<Reference> yr(s);
    ops::dropout_forward(Cpu{}, y, x, p, key);
    ops::dropout_forward(Reference{}, yr, xr, p, key);
    check_close(y, yr, 1e-6, 0, "y");
    std::int64_t wrong = 0;
    for (std::int64_t i = 0; i < x.numel(); ++i) {
      bool const drop = key.uniform(static_cast<std::uint64_t>(i)) < p;
      wrong += (y.data()[i] == 0.f) != drop;
      wrong += (yr.data()[i] == 0.f) != drop;
    }
    CHECK(wrong == 0);

    auto const dy = nonzero_tensor<Cpu>(s, rng);
    auto const dyr = to_backend<Reference>(dy);
    Tensor<Cpu> dx(s);
    Tensor<Reference> dxr(s);
    ops::dropout_backward(Cpu{}, dx, dy, p, key);
    ops::dropout_backward(Reference{}, dxr, dyr, p, key);
    check_close(dx, dxr, 1e-6, 0, "dx");
    CHECK(dropped(dx) == dropped(y));  // the backward regenerates the forward's mask
  });
}

TEST_CASE("dropout: the AVX2 and the portable Philox paths give key.bits exactly") {
  using cpu::detail::kDropoutBlocks;
  // Block counts around the AVX2 path's 8-counter groups; first blocks whose low word wraps inside
  // a group (the carry into the counter's high word).
  for (std::uint64_t first : {std::uint64_t{0}, std::uint64_t{5}, (std::uint64_t{1} << 32) - 3, (std::uint64_t{7} << 32) - 8})
    for (std::int64_t blocks : {std::int64_t{1}, std::int64_t{7}, std::int64_t{8}, std::int64_t{13}, kDropoutBlocks}) {
      CAPTURE(first);
      CAPTURE(blocks);
      RngKey const key{0x9e3779b97f4a7c15ull, 0x0123456789abcdefull, 0};
      auto const k0 = static_cast<std::uint32_t>(key.seed), k1 = static_cast<std::uint32_t>(key.seed >> 32);
      auto const s0 = static_cast<std::uint32_t>(key.stream), s1 = static_cast<std::uint32_t>(key.stream >> 32);
      std::vector<std::uint32_t> expected(static_cast<std::size_t>(4 * blocks)), bits(expected.size());
      for (std::size_t i = 0; i < expected.size(); ++i) expected[i] = key.bits(4 * first + i);
      cpu::detail::philox_bits(bits.data(), first, blocks, k0, k1, s0, s1, /*avx2=*/false);
      CHECK(bits == expected);
      if (cpu::detail::philox_uses_avx2()) {
        std::fill(bits.begin(), bits.end(), 0u);
        cpu::detail::philox_bits(bits.data(), first, blocks, k0, k1, s0, s1, /*avx2=*/true);
        CHECK(bits == expected);
      }
    }
  if (!cpu::detail::philox_uses_avx2()) MESSAGE("the AVX2 Philox path is off here (no AVX2, or LNF_SCALAR_PHILOX)");
}

TEST_CASE("dropout: LNF_SCALAR_PHILOX forces the portable Philox path") {
  // scripts/test.sh runs the CPU tests again with it set, so the portable path's dropout is exercised
  // end to end on machines with AVX2 too.
  char const* forced = std::getenv("LNF_SCALAR_PHILOX");
  if (forced != nullptr && std::string_view(forced) != "0") {
    CHECK_FALSE(cpu::detail::philox_uses_avx2());
    MESSAGE("LNF_SCALAR_PHILOX is set: dropout draws its bits on the portable path in this run");
  } else {
#if LNF_DROPOUT_AVX2
    CHECK(cpu::detail::philox_uses_avx2() == (__builtin_cpu_supports("avx2") != 0));
#else
    CHECK_FALSE(cpu::detail::philox_uses_avx2());
#endif
  }
}

TEST_CASE("dropout: the integer threshold is exactly the float test key.uniform(i) < p") {
  Rng rng(25);
  std::vector<float> ps{0.1f, 0.5f, 1.f / 3.f, 0x1.0p-24f, 0x1.8p-24f, 0x1.0p-30f, 0.999999f, std::nextafter(1.f, 0.f)};
  for (int i = 0; i < 1000; ++i) ps.push_back(rng.uniform(0.f, 1.f));
  for (float p : ps) {
    CAPTURE(p);
    std::uint32_t const t = cpu::detail::drop_below(p);
    REQUIRE(t >= 1);
    REQUIRE(t <= (1u << 24));
    CHECK(static_cast<float>(t - 1) * 0x1.0p-24f < p);    // the largest dropped value is dropped
    if (t < (1u << 24)) CHECK_FALSE(static_cast<float>(t) * 0x1.0p-24f < p);  // the smallest kept is kept
  }
}

TEST_CASE("dropout: a dropped inf or NaN is +0, a kept one stays inf or NaN") {
  Shape const s{4099};
  Tensor<Cpu> x(s), y(s);
  for (std::int64_t i = 0; i < x.numel(); ++i)
    x.data()[i] = i % 3 == 0 ? std::numeric_limits<float>::infinity()
                  : i % 3 == 1 ? -std::numeric_limits<float>::quiet_NaN()
                               : -2.f;
  RngKey const key{5, 6, 7};
  ops::dropout_forward(Cpu{}, y, x, 0.5f, key);
  std::int64_t dropped_count = 0;
  for (std::int64_t i = 0; i < x.numel(); ++i) {
    CAPTURE(i);
    if (key.uniform(static_cast<std::uint64_t>(i)) < 0.5f) {
      ++dropped_count;
      REQUIRE(std::bit_cast<std::uint32_t>(y.data()[i]) == 0u);
    } else if (i % 3 == 0) {
      REQUIRE(y.data()[i] == std::numeric_limits<float>::infinity());
    } else if (i % 3 == 1) {
      REQUIRE(std::isnan(y.data()[i]));
    } else {
      REQUIRE(y.data()[i] == -4.f);
    }
  }
  CHECK(dropped_count > 1000);
}

TEST_CASE("dropout: kept values are x / (1 - p); p = 0 copies") {
  Rng rng(22);
  Shape const s{1000, 37};
  auto const x = nonzero_tensor<Cpu>(s, rng);
  for (float p : {0.1f, 0.3f, 0.77f}) {
    CAPTURE(p);
    Tensor<Cpu> y(s);
    ops::dropout_forward(Cpu{}, y, x, p, RngKey{5, 1, 0});
    std::int64_t bad = 0;
    for (std::int64_t i = 0; i < x.numel(); ++i) {
      float const v = y.data()[i];
      double const want = static_cast<double>(x.data()[i]) / (1.0 - p);
      if (v != 0.f && std::abs(v - want) > 2e-7 * std::abs(want)) ++bad;
    }
    CHECK(bad == 0);
  }
  Tensor<Cpu> y(s);
  ops::dropout_forward(Cpu{}, y, x, 0.f, RngKey{5, 1, 0});
  check_close(y, x, 0, 0, "p = 0");
  auto const xr = to_backend<Reference>(x);
  Tensor<Reference> yr(s);
  ops::dropout_forward(Reference{}, yr, xr, 0.f, RngKey{5, 1, 0});
  check_close(yr, x, 0, 0, "reference p = 0");
  Tensor<Cpu> dx(s);
  ops::dropout_backward(Cpu{}, dx, x, 0.f, RngKey{5, 1, 0});
  check_close(dx, x, 0, 0, "backward p = 0");
}

TEST_CASE("dropout: keep fraction is within 1% of 1 - p over 1e6 elements") {
  Shape const s{1000, 1000};
  Tensor<Cpu> x(s), y(s);
  for (std::int64_t i = 0; i < x.numel(); ++i) x.data()[i] = 1.f;
  for (float p : {0.05f, 0.1f, 0.3f, 0.5f, 0.9f}) {
    CAPTURE(p);
    ops::dropout_forward(Cpu{}, y, x, p, RngKey{99, 4, 12345});
    std::int64_t kept = 0;
    for (std::int64_t i = 0; i < y.numel(); ++i) kept += y.data()[i] != 0.f;
    double const frac = static_cast<double>(kept) / static_cast<double>(y.numel());
    CHECK(std::abs(frac - (1.0 - p)) <= 0.01 * (1.0 - p));
  }
}

TEST_CASE("dropout: same key gives the same mask; another stream, offset or seed another") {
  Rng rng(23);
  Shape const s{64, 129};
  auto const x = nonzero_tensor<Cpu>(s, rng);
  RngKey const key{3, 10, 256};
  auto mask = [&](RngKey k) {
    Tensor<Cpu> y(s);
    ops::dropout_forward(Cpu{}, y, x, 0.5f, k);
    return dropped(y);
  };
  auto const m = mask(key);
  CHECK(mask(key) == m);
  auto differ = [&](std::vector<bool> const& other) {
    std::int64_t d = 0;
    for (std::size_t i = 0; i < m.size(); ++i) d += m[i] != other[i];
    return static_cast<double>(d) / static_cast<double>(m.size());
  };
  // Independent masks with p = 1/2 disagree on about half of the elements.
  CHECK(differ(mask(RngKey{3, 11, 256})) > 0.4);
  CHECK(differ(mask(RngKey{3, 10, 256 + static_cast<std::uint64_t>(x.numel())})) > 0.4);
  CHECK(differ(mask(RngKey{4, 10, 256})) > 0.4);
  // Shifting the offset by k shifts the mask by k elements.
  auto const shifted = mask(RngKey{3, 10, 256 + 5});
  for (std::size_t i = 0; i + 5 < m.size(); ++i) REQUIRE(shifted[i] == m[i + 5]);
}

TEST_CASE("dropout_backward matches central finite differences and assigns; so does dropout_add's gradient") {
  Rng rng(24);
  for (auto const& s : {Shape{17}, Shape{9, 33}}) {
    CAPTURE(s.str());
    auto x = random_tensor<Cpu>(s, rng);
    auto const w = random_tensor<Cpu>(s, rng);
    RngKey const key{8, 2, 3};
    float const p = 0.3f;
    Tensor<Cpu> y(s), dx(s);
    auto loss = [&] {
      ops::dropout_forward(Cpu{}, y, x, p, key);
      return weighted_sum<Cpu>(y, w);
    };
    for (std::int64_t i = 0; i < dx.numel(); ++i)
      dx.data()[i] = 123.f;  // assign overwrites whatever was there
    ops::dropout_backward(Cpu{}, dx, w, p, key);
    check_gradient("x", x, dx, loss, 1e-2, 1e-3, 1e-5);
    auto const first = dx.clone();
    ops::dropout_backward(Cpu{}, dx, w, p, key);
    check_close(dx, first, 0, 0, "dx after a second call");

    // y = r + drop(x): the same gradient for x, and dy itself for r.
    auto r = random_tensor<Cpu>(s, rng);
    auto sum_loss = [&] {
      ops::dropout_add(Cpu{}, y, r, x, p, key);
      return weighted_sum<Cpu>(y, w);
    };
    check_gradient("x of dropout_add", x, dx, sum_loss, 1e-2, 1e-3, 1e-5);
    auto const dr = w.clone();
    check_gradient("r of dropout_add", r, dr, sum_loss, 1e-2, 1e-3, 1e-5);
  }
}

TEST_CASE("dropout works in place") {
  Rng rng(25);
  Shape const s{300, 301};
  RngKey const key{1, 2, 7};
  auto const x = nonzero_tensor<Cpu>(s, rng);
  Tensor<Cpu> y(s), dx(s);
  ops::dropout_forward(Cpu{}, y, x, 0.25f, key);
  ops::dropout_backward(Cpu{}, dx, x, 0.25f, key);
  auto a = x.clone();
  ops::dropout_forward(Cpu{}, a, a, 0.25f, key);
  check_close(a, y, 0, 0, "y in place over x");
  auto b = x.clone();
  ops::dropout_backward(Cpu{}, b, b, 0.25f, key);
  check_close(b, dx, 0, 0, "dx in place over dy");
  auto ar = to_backend<Reference>(x);
  ops::dropout_forward(Reference{}, ar, ar, 0.25f, key);
  check_close(ar, y, 1e-6, 0, "reference y in place");
}

TEST_CASE("dropout_add: x + drop(h) equals dropout_forward then add, bit for bit, for every lane offset") {
  Rng rng(26);
  for_each_dropout_case({0.f, 0.1f, 1.f / 3.f}, kShapes, [&](float p, RngKey const& key, Shape const& s) {
    auto const x = random_tensor<Cpu>(s, rng, -3.f, 3.f);
    auto const h = nonzero_tensor<Cpu>(s, rng);
    Tensor<Cpu> dropped_h(s), unfused(s), y(s);
    ops::dropout_forward(Cpu{}, dropped_h, h, p, key);
    ops::add(Cpu{}, unfused, x, dropped_h);
    ops::dropout_add(Cpu{}, y, x, h, p, key);
    check_close(y, unfused, 0, 0, "Cpu y");

    auto const xr = to_backend<Reference>(x);
    auto const hr = to_backend<Reference>(h);
    Tensor<Reference> dropped_hr(s), unfused_r(s), yr(s);
    ops::dropout_forward(Reference{}, dropped_hr, hr, p, key);
    ops::add(Reference{}, unfused_r, xr, dropped_hr);
    ops::dropout_add(Reference{}, yr, xr, hr, p, key);
    check_close(yr, unfused_r, 0, 0, "Reference y");
    check_close(y, yr, 1e-6, 1e-6, "Cpu against Reference");

    auto over_x = x.clone();  // y may alias x or h
    ops::dropout_add(Cpu{}, over_x, over_x, h, p, key);
    check_close(over_x, y, 0, 0, "y over x");
    auto over_h = h.clone();
    ops::dropout_add(Cpu{}, over_h, x, over_h, p, key);
    check_close(over_h, y, 0, 0, "y over h");
  });
}

TEST_CASE("dropout_add: p out of [0, 1) is a ValueError; shape errors name all three shapes") {
  Tensor<Cpu> x(Shape{4, 5}), h(Shape{4, 5}), y(Shape{4, 5}), z(Shape{5, 4});
  RngKey const key{};
  CHECK_THROWS_WITH_AS(ops::dropout_add(Cpu{}, y, x, h, 1.f, key),
                       doctest::Contains("dropout_add: dropout probability p = 1 must be in [0, 1)"), ValueError);
  CHECK_THROWS_WITH_AS(ops::dropout_add(Cpu{}, y, x, z, 0.1f, key),
                       doctest::Contains("dropout_add: y has shape [4, 5], x [4, 5] and h [5, 4]; they must match"),
                       ShapeError);
  CHECK_THROWS_WITH_AS(ops::dropout_add(Cpu{}, y, x, z.view().transposed(), 0.1f, key),
                       doctest::Contains("dropout_add: y (shape [4, 5]), x (shape [4, 5]) and h (shape [4, 5]) must "
                                         "be contiguous"),
                       ShapeError);
  Tensor<Reference> xr(Shape{4, 5}), yr(Shape{4, 5});
  CHECK_THROWS_WITH_AS(ops::dropout_add(Reference{}, yr, xr, xr, -1.f, key), doctest::Contains("p = -1 must be"),
                       ValueError);
}

TEST_CASE("dropout: p out of [0, 1) is a ValueError naming p; shape errors name the shapes") {
  Tensor<Cpu> x(Shape{4, 5}), y(Shape{4, 5});
  RngKey const key{};
  CHECK_THROWS_WITH_AS(ops::dropout_forward(Cpu{}, y, x, 1.f, key),
                       doctest::Contains("dropout_forward: dropout probability p = 1 must be in [0, 1)"),
                       ValueError);
  CHECK_THROWS_WITH_AS(ops::dropout_forward(Cpu{}, y, x, -0.1f, key),
                       doctest::Contains("p = -0.1 must be in [0, 1)"), ValueError);
  CHECK_THROWS_WITH_AS(ops::dropout_backward(Cpu{}, y, x, 1.5f, key),
                       doctest::Contains("dropout_backward: dropout probability p = 1.5"), ValueError);
  CHECK_THROWS_AS(ops::dropout_forward(Cpu{}, y, x, std::numeric_limits<float>::quiet_NaN(), key),
                  ValueError);
  Tensor<Reference> xr(Shape{4, 5}), yr(Shape{4, 5});
  CHECK_THROWS_WITH_AS(ops::dropout_forward(Reference{}, yr, xr, 2.f, key),
                       doctest::Contains("p = 2 must be"), ValueError);

  Tensor<Cpu> z(Shape{5, 4});
  CHECK_THROWS_WITH_AS(ops::dropout_forward(Cpu{}, z, x, 0.1f, key),
                       doctest::Contains("dropout_forward: y has shape [5, 4] but x has shape [4, 5]"),
                       ShapeError);
  CHECK_THROWS_WITH_AS(ops::dropout_backward(Cpu{}, z, x, 0.1f, key),
                       doctest::Contains("dropout_backward: dx has shape [5, 4] but dy has shape [4, 5]"),
                       ShapeError);
  CHECK_THROWS_WITH_AS(ops::dropout_forward(Cpu{}, z, x.view().transposed(), 0.1f, key),
                       doctest::Contains("must be contiguous"), ShapeError);
}
