// Core: shapes, views, tensors, errors and the counter-based RNG.
#include <lnformer/backend/cpu/cpu.hpp>
#include <lnformer/core/rng.hpp>

#include "support.hpp"

#include <doctest/doctest.h>

#include <set>

using namespace lnformer;

TEST_CASE("Philox4x32-10 matches the Random123 known-answer vectors") {
  auto const a = Philox4x32::block({0, 0, 0, 0}, {0, 0});
  CHECK(a == Philox4x32::Counter{0x6627e8d5, 0xe169c58d, 0xbc57ac4c, 0x9b00dbd8});
  auto const b = Philox4x32::block({~0u, ~0u, ~0u, ~0u}, {~0u, ~0u});
  CHECK(b == Philox4x32::Counter{0x408f276d, 0x41c83b0e, 0xa20bc7c6, 0x6d5451fd});
  auto const c = Philox4x32::block({0x243f6a88, 0x85a308d3, 0x13198a2e, 0x03707344}, {0xa4093822, 0x299f31d0});
  CHECK(c == Philox4x32::Counter{0xd16cfe09, 0x94fdcceb, 0x5001e420, 0x24126ea1});
  // The bijection is constexpr: masks can be reasoned about at compile time too.
  static_assert(Philox4x32::block({0, 0, 0, 0}, {0, 0})[0] == 0x6627e8d5u);
}

TEST_CASE("RngKey is a pure function of (seed, stream, offset)") {
  RngKey const k{42, 7, 100};
  RngKey const shifted{42, 7, 0};
  for (std::uint64_t i = 0; i < 50; ++i) CHECK(k.bits(i) == shifted.bits(i + 100));
  CHECK(RngKey{42, 8, 0}.bits(0) != RngKey{42, 7, 0}.bits(0));
  CHECK(RngKey{43, 7, 0}.bits(0) != RngKey{42, 7, 0}.bits(0));
  // Uniform values are in [0, 1) with mean near 1/2 and variance near 1/12.
  double s = 0, s2 = 0;
  int const n = 200000;
  for (int i = 0; i < n; ++i) {
    float const u = k.uniform(static_cast<std::uint64_t>(i));
    REQUIRE(u >= 0.f);
    REQUIRE(u < 1.f);
    s += u;
    s2 += static_cast<double>(u) * u;
  }
  CHECK(s / n == doctest::Approx(0.5).epsilon(0.01));
  CHECK(s2 / n - (s / n) * (s / n) == doctest::Approx(1.0 / 12).epsilon(0.01));
}

TEST_CASE("Rng normal and below") {
  Rng r(1);
  double s = 0, s2 = 0;
  int const n = 100000;
  for (int i = 0; i < n; ++i) {
    double const x = r.normal();
    s += x;
    s2 += x * x;
  }
  CHECK(std::abs(s / n) < 0.02);
  CHECK(s2 / n == doctest::Approx(1.0).epsilon(0.02));
  std::set<std::uint32_t> seen;
  for (int i = 0; i < 1000; ++i) {
    auto const v = r.below(7);
    REQUIRE(v < 7);
    seen.insert(v);
  }
  CHECK(seen.size() == 7);
  Rng a(5), b(5);
  b.seek(3);
  a.next_u32(), a.next_u32(), a.next_u32();
  CHECK(a.next_u32() == b.next_u32());
}

TEST_CASE("Shape basics and errors") {
  Shape const s{2, 3, 4};
  CHECK(s.rank() == 3);
  CHECK(s.numel() == 24);
  CHECK(s[-1] == 4);
  CHECK(s.str() == "[2, 3, 4]");
  CHECK_THROWS_AS((Shape{1, 2, 3, 4, 5, 6, 7}), ShapeError);
  CHECK_THROWS_AS((Shape{2, -1}), ValueError);
  CHECK_THROWS_WITH_AS((void)s[3], doctest::Contains("dimension index 3 out of range for a shape of rank 3"), ShapeError);
  CHECK(s.with_last(7) == Shape{2, 3, 7});
  CHECK(Shape{5}.with_last(0) == Shape{0});
  CHECK(s == Shape{2, 3, 4});  // unchanged
  CHECK_THROWS_AS((void)s.with_last(-1), ValueError);
  CHECK_THROWS_WITH_AS((void)Shape{}.with_last(1), doctest::Contains("with_last(1) of a rank-0 shape"), ShapeError);
}

TEST_CASE("Tensor ownership, views, reshape, transpose, slice, permute") {
  std::vector<float> const h{0, 1, 2, 3, 4, 5};
  Tensor<Cpu> t(Shape{2, 3}, std::span<float const>(h));
  CHECK(t(1, 2) == 5.f);
  CHECK(reinterpret_cast<std::uintptr_t>(t.data()) % 64 == 0);
  auto v = t.view();
  CHECK(v.is_contiguous());
  auto tr = v.transposed();
  CHECK(tr.shape() == Shape{3, 2});
  CHECK(!tr.is_contiguous());
  CHECK(tr(2, 1) == 5.f);
  CHECK(tr(0, 1) == 3.f);
  auto r = v.reshape(Shape{3, 2});
  CHECK(r(2, 0) == 4.f);
  CHECK_THROWS_WITH_AS((void)v.reshape(Shape{4, 2}),
                       doctest::Contains("cannot reshape [2, 3] (6 elements) to [4, 2] (8 elements)"), ShapeError);
  CHECK_THROWS_AS((void)tr.reshape(Shape{6}), ShapeError);
  auto s = v.slice(1, 2);
  CHECK(s.shape() == Shape{1, 3});
  CHECK(s(0, 0) == 3.f);
  CHECK_THROWS_WITH_AS((void)v.slice(1, 3), doctest::Contains("slice [1, 3) out of range for shape [2, 3]"), ShapeError);
  CHECK_THROWS_WITH_AS((void)v(2, 0), doctest::Contains("index 2 out of range in dimension 0 of shape [2, 3]"), ShapeError);
  auto p = t.view().reshape(Shape{1, 2, 3}).permute({2, 0, 1});
  CHECK(p.shape() == Shape{3, 1, 2});
  CHECK(p(2, 0, 1) == 5.f);
  CHECK_THROWS_AS((void)v.permute({0, 0}), ShapeError);
  CView<Cpu> cv = v;  // const conversion
  CHECK(cv(0, 1) == 1.f);

  Tensor<Cpu> moved = std::move(t);
  CHECK(t.data() == nullptr);
  CHECK(moved.numel() == 6);
  auto c = moved.clone();
  c(0, 0) = 9.f;
  CHECK(moved(0, 0) == 0.f);
  CHECK(c.to_host()[0] == 9.f);
  c.zero();
  CHECK(c(1, 1) == 0.f);
  CHECK_THROWS_AS((Tensor<Cpu>(Shape{2, 2}, std::span<float const>(h))), ShapeError);
  Tensor<Cpu> empty(Shape{0, 5});
  CHECK(empty.numel() == 0);
  CHECK(empty.view().empty());
}

TEST_CASE("Errors carry the message and the source location") {
  try {
    LNF_EXPECTS(1 == 2, "rows {} vs {}", 3, 4);
    FAIL("no throw");
  } catch (ShapeError const& e) {
    std::string const m = e.what();
    CHECK(m.find("rows 3 vs 4") != std::string::npos);
    CHECK(m.find("1 == 2") != std::string::npos);
    CHECK(m.find("test_core.cpp") != std::string::npos);
  }
}

TEST_CASE("CPU context is per thread and caches by key") {
  struct Entry : cpu::detail::CacheEntryBase {
    int v;
    explicit Entry(int x) : v(x) {}
  };
  auto& ctx = cpu::context();
  int made = 0;
  auto& e1 = ctx.cached<Entry>("k", [&] { ++made; return Entry(3); });
  auto& e2 = ctx.cached<Entry>("k", [&] { ++made; return Entry(4); });
  CHECK(made == 1);
  CHECK(&e1 == &e2);
  CHECK(e2.v == 3);
  CHECK(&cpu::context() == &ctx);
}
