// Element-wise ops: add, the residual scale_add (Admin / DeepNorm / ReZero wiring) and its backward,
// scale, axpy, fill, strided copy, sum of squares and the global L2 norm. Cpu against Reference.
#include <lnformer/backend/cpu/elementwise.hpp>
#include <lnformer/backend/reference/elementwise.hpp>

#include "ops/fixtures_elementwise.hpp"
#include "support.hpp"

#include <doctest/doctest.h>

#include <cmath>
#include <limits>
#include <string>
#include <utility>
#include <vector>

using namespace lnformer;
using namespace lnformer::test;

TEST_CASE("add, scale, axpy, fill: Cpu agrees with Reference, in place too") {
  Rng rng(31);
  for (auto const& s : kElementwiseShapes) {
    CAPTURE(s.str());
    auto const a = random_tensor<Cpu>(s, rng);
    auto const b = random_tensor<Cpu>(s, rng);
    auto const ar = to_backend<Reference>(a);
    auto const br = to_backend<Reference>(b);

    Tensor<Cpu> y(s);
    Tensor<Reference> yr(s);
    ops::add(Cpu{}, y, a, b);
    ops::add(Reference{}, yr, ar, br);
    check_close(y, yr, 1e-6, 1e-7, "add");
    auto y2 = a.clone();
    ops::add(Cpu{}, y2, y2, b);  // y aliases a
    check_close(y2, yr, 1e-6, 1e-7, "add, y aliasing a");
    auto y3 = b.clone();
    ops::add(Cpu{}, y3, a, y3);  // y aliases b
    check_close(y3, yr, 1e-6, 1e-7, "add, y aliasing b");

    auto sc = a.clone();
    auto scr = ar.clone();
    ops::scale(Cpu{}, sc, -1.75f);
    ops::scale(Reference{}, scr, -1.75f);
    check_close(sc, scr, 1e-6, 1e-7, "scale");

    auto ax = a.clone();
    auto axr = ar.clone();
    ops::axpy(Cpu{}, ax, 0.3f, b);
    ops::axpy(Reference{}, axr, 0.3f, br);
    check_close(ax, axr, 1e-6, 1e-7, "axpy");
    ops::axpy(Cpu{}, ax, 0.3f, b);  // accumulates
    ops::axpy(Reference{}, axr, 0.3f, br);
    check_close(ax, axr, 1e-6, 1e-7, "axpy twice");

    auto fl = a.clone();
    auto flr = ar.clone();
    ops::fill(Cpu{}, fl, 2.5f);
    ops::fill(Reference{}, flr, 2.5f);
    check_close(fl, flr, 0, 0, "fill");
    CHECK(fl.data()[s.numel() - 1] == 2.5f);
  }
}

TEST_CASE("scale_add: Cpu agrees with Reference for every gate shape and alpha, in place too") {
  Rng rng(32);
  for_each_gate_case({1.f, 0.7f, -2.f}, kElementwiseShapes, [&](Gate g, float alpha, Shape const& s) {
    auto const [x, f, w, xr, fr, wr] = gated_operands<Cpu, Reference>(g, s, rng);
    Tensor<Cpu> y(s);
    Tensor<Reference> yr(s);
    ops::scale_add(Cpu{}, y, x, w, alpha, f);
    ops::scale_add(Reference{}, yr, xr, wr, alpha, fr);
    check_close(y, yr, 1e-6, 1e-6, "y");
    // Spot check the definition y = alpha * x ⊙ w + f on the last element.
    std::int64_t const last = s.numel() - 1;
    float const wl = g == Gate::none ? 1.f : g == Gate::scalar ? w.data()[0] : w.data()[s[-1] - 1];
    CHECK(y.data()[last] == doctest::Approx(alpha * x.data()[last] * wl + f.data()[last]).epsilon(1e-5));

    auto yx = x.clone();
    ops::scale_add(Cpu{}, yx, yx, w, alpha, f);  // y aliases x
    check_close(yx, yr, 1e-6, 1e-6, "y aliasing x");
    auto yf = f.clone();
    ops::scale_add(Cpu{}, yf, x, w, alpha, yf);  // y aliases f
    check_close(yf, yr, 1e-6, 1e-6, "y aliasing f");
    auto yfr = fr.clone();
    ops::scale_add(Reference{}, yfr, xr, wr, alpha, yfr);
    check_close(yfr, yr, 1e-6, 1e-6, "reference y aliasing f");
  });
}

TEST_CASE("scale_add expresses the residual connections") {
  Rng rng(33);
  Shape const s{6, 9};
  auto const x = random_tensor<Cpu>(s, rng);
  auto const fx = random_tensor<Cpu>(s, rng);  // the sublayer output f(x)
  Tensor<Cpu> y(s);
  // ReZero: y = x + r * f(x), with the roles of x and f swapped.
  std::vector<float> const r_host{0.25f};
  Tensor<Cpu> const r(Shape{1}, std::span<float const>(r_host));
  ops::scale_add(Cpu{}, y, fx, r, 1.f, x);
  for (std::int64_t i = 0; i < y.numel(); ++i)
    REQUIRE(y.data()[i] == doctest::Approx(x.data()[i] + 0.25f * fx.data()[i]));
  // DeepNorm: y = alpha * x + f(x).
  ops::scale_add(Cpu{}, y, x, CView<Cpu>{}, 3.f, fx);
  for (std::int64_t i = 0; i < y.numel(); ++i)
    REQUIRE(y.data()[i] == doctest::Approx(3.f * x.data()[i] + fx.data()[i]));
  // Admin: y = x ⊙ w + f(x), w per feature.
  auto const w = random_tensor<Cpu>(Shape{9}, rng);
  ops::scale_add(Cpu{}, y, x, w, 1.f, fx);
  for (std::int64_t i = 0; i < 6; ++i)
    for (std::int64_t j = 0; j < 9; ++j) REQUIRE(y(i, j) == doctest::Approx(x(i, j) * w(j) + fx(i, j)));
}

/// dw of scale_add_backward alone (no dx), from zero, on the Reference backend.
template <class G>
Tensor<Reference> dw_only_r_of(Tensor<Reference> const& dy, Tensor<Reference> const& x, G const& w, float alpha) {
  auto dw = zeros_like_gate(w);
  ops::scale_add_backward(Reference{}, View<Reference>{}, dw, dy, x, w, alpha);
  return dw;
}

TEST_CASE("scale_add_backward: Cpu agrees with Reference; dx assigns, dw accumulates; either may be absent") {
  Rng rng(34);
  for_each_gate_case({1.f, -0.6f}, kElementwiseShapes, [&](Gate g, float alpha, Shape const& s) {
    auto const [x, dy, w, xr, dyr, wr] = gated_operands<Cpu, Reference>(g, s, rng);
    Tensor<Cpu> dx(s);
    Tensor<Reference> dxr(s);
    auto dw = zeros_like_gate(w);
    auto dwr = gate_to<Reference>(dw);
    if (g != Gate::none) {  // dw accumulates onto what is there
      ops::fill(Cpu{}, dw, 0.5f);
      ops::fill(Reference{}, dwr, 0.5f);
    }
    ops::fill(Cpu{}, dx, 9.f);  // dx assigns over whatever is there
    ops::scale_add_backward(Cpu{}, dx, dw, dy, x, w, alpha);
    ops::scale_add_backward(Reference{}, dxr, dwr, dyr, xr, wr, alpha);
    check_close(dx, dxr, 1e-6, 1e-7, "dx");
    if (g != Gate::none) check_close(dw, dwr, 1e-5, 1e-5, "dw");

    // A second call: dx is the same, dw gains the same increment again.
    auto const dx1 = dx.clone();
    auto const dw1 = g != Gate::none ? dw.clone() : Tensor<Cpu>();  // (clone of an absent tensor: none)
    ops::scale_add_backward(Cpu{}, dx, dw, dy, x, w, alpha);
    check_close(dx, dx1, 0, 0, "dx after a second call");
    if (g != Gate::none) {
      for (std::int64_t i = 0; i < dw.numel(); ++i)
        CHECK(dw.data()[i] - 0.5f ==
              doctest::Approx(2 * (dw1.data()[i] - 0.5f)).epsilon(1e-5).scale(1e-3));
    }

    // Only one of the two gradients wanted.
    Tensor<Cpu> dx_only(s);
    ops::scale_add_backward(Cpu{}, dx_only, View<Cpu>{}, dy, x, w, alpha);
    check_close(dx_only, dxr, 1e-6, 1e-7, "dx alone");
    if (g != Gate::none) {
      auto dw_only = zeros_like_gate(w);
      auto dw_only_r = gate_to<Reference>(dw_only);
      ops::scale_add_backward(Cpu{}, View<Cpu>{}, dw_only, dy, x, w, alpha);
      ops::scale_add_backward(Reference{}, View<Reference>{}, dw_only_r, dyr, xr, wr, alpha);
      check_close(dw_only, dw_only_r, 1e-5, 1e-5, "dw alone");
    }
    // dx may alias dy, also when dw (which reads dy) is wanted in the same call.
    auto g2 = dy.clone();
    ops::scale_add_backward(Cpu{}, g2, View<Cpu>{}, g2, x, w, alpha);
    check_close(g2, dxr, 1e-6, 1e-7, "dx aliasing dy");
    if (g != Gate::none) {
      auto g3 = dy.clone();
      auto g3r = dyr.clone();
      auto dw3 = zeros_like_gate(w);
      auto dw3r = gate_to<Reference>(dw3);
      ops::scale_add_backward(Cpu{}, g3, dw3, g3, x, w, alpha);
      ops::scale_add_backward(Reference{}, g3r, dw3r, g3r, xr, wr, alpha);
      check_close(g3, dxr, 1e-6, 1e-7, "dx aliasing dy, with dw");
      check_close(g3r, dxr, 1e-6, 1e-7, "Reference: dx aliasing dy, with dw");
      check_close(dw3, dw_only_r_of(dyr, xr, wr, alpha), 1e-5, 1e-5, "dw with dx aliasing dy");
      check_close(dw3r, dw_only_r_of(dyr, xr, wr, alpha), 1e-5, 1e-5, "Reference: dw with dx aliasing dy");
    }
  });
}

TEST_CASE("scale_add_backward matches central finite differences for x and w") {
  Rng rng(35);
  std::vector<Shape> const shapes{Shape{1}, Shape{7}, Shape{5, 3}, Shape{2, 3, 4}};
  for_each_gate_case({1.f, 0.37f}, shapes, [&](Gate g, float alpha, Shape const& s) {
    auto x = random_tensor<Cpu>(s, rng);
    auto const f = random_tensor<Cpu>(s, rng);
    auto w = make_gate<Cpu>(g, s, rng);
    auto const wt = random_tensor<Cpu>(s, rng);  // loss weights = dy
    Tensor<Cpu> y(s);
    auto loss = [&] {
      ops::scale_add(Cpu{}, y, x, w, alpha, f);
      return weighted_sum<Cpu>(y, wt);
    };
    Tensor<Cpu> dx(s);
    auto dw = zeros_like_gate(w);
    ops::scale_add_backward(Cpu{}, dx, dw, wt, x, w, alpha);
    check_gradient("x", x, dx, loss, 1e-2, 1e-3, 1e-5);
    if (g != Gate::none) check_gradient("w", w, dw, loss, 1e-2, 1e-3, 1e-5);
  });
}

TEST_CASE("copy makes strided views contiguous") {
  Rng rng(36);
  // [B, H, T, dh] viewed as [B, T, H, dh]: the attention head merge.
  for (auto const& s : {Shape{2, 3, 5, 4}, Shape{3, 8, 37, 64}, Shape{1, 1, 1, 1}, Shape{2, 1, 3, 1}}) {
    CAPTURE(s.str());
    auto const x = random_tensor<Cpu>(s, rng);
    auto const xr = to_backend<Reference>(x);
    auto const p = x.view().permute({0, 2, 1, 3});
    Tensor<Cpu> y(p.shape());
    Tensor<Reference> yr(p.shape());
    ops::copy(Cpu{}, y, p);
    ops::copy(Reference{}, yr, xr.view().permute({0, 2, 1, 3}));
    check_close(y.cview(), CView<Cpu>(p), 0, 0, "permuted copy vs the view");
    check_close(yr, y, 0, 0, "reference permuted copy");
    for (std::int64_t b = 0; b < s[0]; ++b)
      for (std::int64_t t = 0; t < s[2]; ++t)
        for (std::int64_t h = 0; h < s[1]; ++h)
          for (std::int64_t e = 0; e < s[3]; ++e) REQUIRE(y(b, t, h, e) == x(b, h, t, e));
  }
  // Any strides: transposes (inner stride != 1), full permutations, slices, contiguous.
  auto const x = random_tensor<Cpu>(Shape{6, 7, 300}, rng);
  auto const xr = to_backend<Reference>(x);
  auto const big = random_tensor<Cpu>(Shape{64, 1030}, rng);  // above the threads' threshold
  auto const bigr = to_backend<Reference>(big);
  std::vector<std::pair<CView<Cpu>, CView<Reference>>> const cases = {
      {x.view(), xr.view()},
      {x.view().transposed(), xr.view().transposed()},
      {x.view().permute({2, 0, 1}), xr.view().permute({2, 0, 1})},
      {x.view().permute({1, 2, 0}), xr.view().permute({1, 2, 0})},
      {x.view().slice(2, 5).permute({1, 0, 2}), xr.view().slice(2, 5).permute({1, 0, 2})},
      {x.view().reshape(Shape{42, 300}).transposed(), xr.view().reshape(Shape{42, 300}).transposed()},
      {big.view().transposed(), bigr.view().transposed()},
      {big.view().reshape(Shape{8, 8, 2, 515}).permute({2, 1, 0, 3}),
       bigr.view().reshape(Shape{8, 8, 2, 515}).permute({2, 1, 0, 3})},
  };
  for (auto const& [v, vr] : cases) {
    CAPTURE(v.shape().str());
    Tensor<Cpu> y(v.shape());
    Tensor<Reference> yr(v.shape());
    ops::copy(Cpu{}, y, v);
    ops::copy(Reference{}, yr, vr);
    check_close(y.cview(), v, 0, 0, "copy vs the view");
    check_close(yr, y, 0, 0, "reference copy");
  }
  // Small sizes and rank 1.
  for (auto const& s : kElementwiseShapes) {
    auto const a = random_tensor<Cpu>(s, rng);
    Tensor<Cpu> b(s);
    ops::copy(Cpu{}, b, a);
    check_close(b, a, 0, 0, "contiguous copy");
  }
}

TEST_CASE("sum_squares and global_l2_norm accumulate in double and propagate NaN and inf") {
  Rng rng(37);
  std::vector<Tensor<Cpu>> xs;
  for (auto const& s : kElementwiseShapes) xs.push_back(random_tensor<Cpu>(s, rng, -3.f, 3.f));
  double want = 0;
  for (auto const& t : xs)
    for (std::int64_t i = 0; i < t.numel(); ++i) want += static_cast<double>(t.data()[i]) * t.data()[i];
  std::vector<CView<Cpu>> views(xs.begin(), xs.end());
  std::vector<Tensor<Reference>> rs;
  for (auto const& t : xs) rs.push_back(to_backend<Reference>(t));
  std::vector<CView<Reference>> rviews(rs.begin(), rs.end());

  CHECK(ops::global_l2_norm(Cpu{}, views) == doctest::Approx(std::sqrt(want)).epsilon(1e-12));
  CHECK(ops::global_l2_norm(Reference{}, rviews) == doctest::Approx(std::sqrt(want)).epsilon(1e-12));
  CHECK(ops::sum_squares(Cpu{}, xs.back()) ==
        doctest::Approx(ops::sum_squares(Reference{}, rs.back())).epsilon(1e-12));
  CHECK(ops::global_l2_norm(Cpu{}, std::span<CView<Cpu> const>{}) == 0.0);
  CHECK(ops::sum_squares(Cpu{}, CView<Cpu>{}) == 0.0);
  CHECK(ops::sum_squares(Reference{}, CView<Reference>{}) == 0.0);

  // Values whose squares overflow float stay finite in double.
  std::vector<float> const big{3e20f, -4e20f};
  Tensor<Cpu> const tb(Shape{2}, std::span<float const>(big));
  CHECK(ops::sum_squares(Cpu{}, tb) == doctest::Approx(25e40).epsilon(1e-6));

  // A NaN or an inf anywhere (small or large tensor, first or last) makes the norm non-finite.
  for (std::size_t k : {std::size_t{0}, xs.size() - 1}) {
    for (float bad : kNonFinite) {
      CAPTURE(k);
      CAPTURE(bad);
      float& e = xs[k].data()[xs[k].numel() / 2];
      float const saved = e;
      e = bad;
      double const n = ops::global_l2_norm(Cpu{}, views);
      CHECK(!std::isfinite(n));
      CHECK(std::isnan(n) == std::isnan(bad));
      CHECK(!std::isfinite(ops::sum_squares(Cpu{}, xs[k])));
      rs[k].data()[rs[k].numel() / 2] = bad;
      CHECK(!std::isfinite(ops::global_l2_norm(Reference{}, rviews)));
      rs[k].data()[rs[k].numel() / 2] = saved;
      e = saved;
    }
  }
}

TEST_CASE("element-wise shape errors name the shapes") {
  Tensor<Cpu> a(Shape{4, 7}), b(Shape{4, 8}), y(Shape{4, 7}), w8(Shape{8}), w7(Shape{7});
  CHECK_THROWS_WITH_AS(ops::add(Cpu{}, y, a, b),
                       doctest::Contains("add: a has shape [4, 7] but b has shape [4, 8]"), ShapeError);
  CHECK_THROWS_WITH_AS(ops::axpy(Cpu{}, y, 1.f, b),
                       doctest::Contains("axpy: y has shape [4, 7] but x has shape [4, 8]"), ShapeError);
  CHECK_THROWS_WITH_AS(
      ops::scale_add(Cpu{}, y, a, w8, 1.f, a),
      doctest::Contains("scale_add: x has shape [4, 7] but w has shape [8]; w must be [7] (the last "
                        "dim of x) or [1]"),
      ShapeError);
  CHECK_THROWS_WITH_AS(ops::scale_add(Cpu{}, y, a, w7, 1.f, b),
                       doctest::Contains("scale_add: f has shape [4, 8] but x has shape [4, 7]"), ShapeError);
  CHECK_THROWS_WITH_AS(ops::scale_add_backward(Cpu{}, View<Cpu>{}, w8, a, a, w7, 1.f),
                       doctest::Contains("scale_add_backward: dw has shape [8] but w has shape [7]"),
                       ShapeError);
  CHECK_THROWS_WITH_AS(ops::scale_add_backward(Cpu{}, View<Cpu>{}, w7, a, a, CView<Cpu>{}, 1.f),
                       doctest::Contains("dw has shape [7] but w is absent"), ShapeError);
  CHECK_THROWS_WITH_AS(ops::scale_add_backward(Cpu{}, b, View<Cpu>{}, a, a, w7, 1.f),
                       doctest::Contains("scale_add_backward: dx has shape [4, 8] but dy has shape [4, 7]"),
                       ShapeError);
  CHECK_THROWS_WITH_AS(ops::scale_add_backward(Cpu{}, View<Cpu>{}, w7, a, b, w7, 1.f),
                       doctest::Contains("scale_add_backward: x has shape [4, 8] but dy has shape [4, 7]"),
                       ShapeError);
  Tensor<Cpu> t(Shape{7, 4});
  CHECK_THROWS_WITH_AS(ops::copy(Cpu{}, y, t),
                       doctest::Contains("copy: y has shape [4, 7] but x has shape [7, 4]"), ShapeError);
  CHECK_THROWS_WITH_AS(ops::copy(Cpu{}, y.view().transposed(), t),
                       doctest::Contains("copy: y (shape [7, 4], strides [1, 7]) must be contiguous"),
                       ShapeError);
  CHECK_THROWS_WITH_AS((void)ops::sum_squares(Cpu{}, a.view().transposed()),
                       doctest::Contains("must be contiguous"), ShapeError);
  Tensor<Reference> ra(Shape{3}), rb(Shape{4});
  CHECK_THROWS_WITH_AS(ops::add(Reference{}, ra, ra, rb),
                       doctest::Contains("a has shape [3] but b has shape [4]"), ShapeError);
}
