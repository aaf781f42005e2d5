// Layer norm: CPU against the reference, finite-difference gradients, statistics of the output,
// numerical care (large offsets, constant rows), aliasing, accumulate/assign semantics, shape errors.
#include <lnformer/backend/cpu/elementwise.hpp>
#include <lnformer/backend/cpu/layer_norm.hpp>
#include <lnformer/backend/reference/elementwise.hpp>
#include <lnformer/backend/reference/layer_norm.hpp>

#include "support.hpp"

#include <doctest/doctest.h>
#include <omp.h>

#include <cmath>
#include <string>
#include <vector>

using namespace lnformer;
using test::check_close;
using test::check_gradient;
using test::random_tensor;
using test::to_backend;
using test::weighted_sum;

namespace {

Shape rows_shape(Shape const& x) { return Shape{x.numel() / x[-1]}; }

/// Everything one forward + backward produces on backend B.
template <class B>
struct LnResult {
  Tensor<B> y, mean, rstd, dx, dgamma, dbeta;
};

/// Forward then backward on B, from inputs held by the CPU (copied over). dgamma/dbeta start from
/// `dgamma0`/`dbeta0` (they accumulate).
template <class B>
LnResult<B> run(Tensor<Cpu> const& x, Tensor<Cpu> const& gamma, Tensor<Cpu> const& beta,
                Tensor<Cpu> const& dy, Tensor<Cpu> const& dgamma0, Tensor<Cpu> const& dbeta0, float eps) {
  auto const bx = to_backend<B>(x);
  auto const bg = to_backend<B>(gamma);
  auto const bb = to_backend<B>(beta);
  auto const bdy = to_backend<B>(dy);
  LnResult<B> r{Tensor<B>(x.shape()), Tensor<B>(rows_shape(x.shape())), Tensor<B>(rows_shape(x.shape())),
                Tensor<B>(x.shape()), to_backend<B>(dgamma0),           to_backend<B>(dbeta0)};
  ops::layer_norm_forward(B{}, r.y, r.mean, r.rstd, bx, bg, bb, eps);
  ops::layer_norm_backward(B{}, r.dx, r.dgamma, r.dbeta, bdy, bx, r.mean, r.rstd, bg);
  return r;
}

void compare_backends(Shape const& shape, Rng& rng, float offset = 0.f, float spread = 2.f, float eps = 1e-5f,
                      double y_atol = 2e-5) {
  std::int64_t const d = shape[-1];
  auto x = random_tensor<Cpu>(shape, rng, offset - spread, offset + spread);
  auto const gamma = random_tensor<Cpu>(Shape{d}, rng, -1.5f, 1.5f);
  auto const beta = random_tensor<Cpu>(Shape{d}, rng, -0.5f, 0.5f);
  auto const dy = random_tensor<Cpu>(shape, rng);
  auto const dg0 = random_tensor<Cpu>(Shape{d}, rng);
  auto const db0 = random_tensor<Cpu>(Shape{d}, rng);
  auto const c = run<Cpu>(x, gamma, beta, dy, dg0, db0, eps);
  auto const r = run<Reference>(x, gamma, beta, dy, dg0, db0, eps);
  std::string const what = fmt::format("x {} offset {}", shape, offset);
  check_close(c.y, r.y, 1e-5, y_atol, what + ": y");
  check_close(c.mean, r.mean, 1e-6, 1e-6 + 1e-7 * (std::abs(offset) + spread), what + ": mean");
  check_close(c.rstd, r.rstd, 1e-5, 1e-6, what + ": rstd");
  // Gradients scale with rstd; dgamma/dbeta sum over rows.
  double const rows = static_cast<double>(shape.numel() / d);
  check_close(c.dx, r.dx, 1e-4, 1e-4, what + ": dx");
  check_close(c.dgamma, r.dgamma, 1e-4, 1e-5 * std::sqrt(rows) + 1e-5, what + ": dgamma");
  check_close(c.dbeta, r.dbeta, 1e-4, 1e-5 * std::sqrt(rows) + 1e-5, what + ": dbeta");
}

/// Restores the OpenMP thread count on scope exit.
struct ThreadCount {
  int saved = omp_get_max_threads();
  explicit ThreadCount(int n) { omp_set_num_threads(n); }
  ~ThreadCount() { omp_set_num_threads(saved); }
  ThreadCount(ThreadCount const&) = delete;
  ThreadCount& operator=(ThreadCount const&) = delete;
};

}  // namespace

TEST_CASE("layer_norm: CPU agrees with the reference over many shapes") {
  Rng rng(11);
  for (std::int64_t d : {1, 3, 17, 33, 257, 512, 1024}) {
    compare_backends(Shape{1, d}, rng);  // one row
    compare_backends(Shape{d}, rng);     // rank 1: one row
    compare_backends(Shape{5, d}, rng);
    compare_backends(Shape{2, 3, d}, rng);
  }
  compare_backends(Shape{2, 2, 3, 5}, rng);
  compare_backends(Shape{64, 512}, rng);                         // parallel path
  compare_backends(Shape{333, 257}, rng);                        // rows not a multiple of the thread count
  compare_backends(Shape{4096, 8}, rng);                         // many short rows
  compare_backends(Shape{0, 7}, rng);                            // no rows at all
  compare_backends(Shape{40, 64}, rng, 0.f, 1e-3f);              // tiny variance, comparable to eps
  compare_backends(Shape{40, 64}, rng, 0.f, 3e3f, 1e-5f, 1e-4);  // large values
}

TEST_CASE("layer_norm: rows with a large common offset stay accurate (corrected two-pass)") {
  Rng rng(12);
  // x = offset + U(-1, 1): a float mean of 1000 has an error of ~6e-5, which the correction term removes.
  compare_backends(Shape{16, 1024}, rng, 1e3f, 1.f);
  compare_backends(Shape{16, 512}, rng, -1e3f, 1.f);
  compare_backends(Shape{16, 33}, rng, 1e4f, 1.f, 1e-5f, 1e-4);
}

TEST_CASE("layer_norm: with gamma = 1 and beta = 0 every row has mean 0 and variance 1") {
  Rng rng(13);
  for (std::int64_t d : {3, 17, 512, 1024}) {
    Shape const shape{6, d};
    auto const x = random_tensor<Cpu>(shape, rng, -3.f, 5.f);  // var ~ 16/3, so var / (var + eps) ~ 1
    std::vector<float> const ones(static_cast<std::size_t>(d), 1.f);
    Tensor<Cpu> const gamma(Shape{d}, std::span<float const>(ones));
    Tensor<Cpu> const beta(Shape{d});
    Tensor<Cpu> y(shape), mean(Shape{6}), rstd(Shape{6});
    ops::layer_norm_forward(Cpu{}, y, mean, rstd, x, gamma, beta, 1e-5f);
    for (std::int64_t r = 0; r < 6; ++r) {
      double xm = 0, xv = 0, ym = 0, yv = 0;
      for (std::int64_t j = 0; j < d; ++j) {
        xm += x(r, j);
        ym += y(r, j);
      }
      xm /= static_cast<double>(d);
      ym /= static_cast<double>(d);
      for (std::int64_t j = 0; j < d; ++j) {
        xv += (x(r, j) - xm) * (x(r, j) - xm);
        yv += (y(r, j) - ym) * (y(r, j) - ym);
      }
      xv /= static_cast<double>(d);
      yv /= static_cast<double>(d);
      INFO("d = ", d, ", row ", r);
      CHECK(std::abs(ym) < 1e-5);
      CHECK(yv == doctest::Approx(1.0).epsilon(1e-4));
      CHECK(mean(r) == doctest::Approx(xm).epsilon(1e-6));
      CHECK(rstd(r) == doctest::Approx(1.0 / std::sqrt(xv + 1e-5)).epsilon(1e-5));
    }
  }
}

TEST_CASE_TEMPLATE("layer_norm: a constant row gives beta and a finite rstd", B, Cpu, Reference) {
  std::int64_t const d = 33;
  std::vector<float> const xs(3 * d, 5.f);
  Tensor<B> const x(Shape{3, d}, std::span<float const>(xs));
  Rng rng(14);
  auto const gamma = random_tensor<B>(Shape{d}, rng);
  auto const beta = random_tensor<B>(Shape{d}, rng);
  Tensor<B> y(Shape{3, d}), mean(Shape{3}), rstd(Shape{3});
  ops::layer_norm_forward(B{}, y, mean, rstd, x, gamma, beta, 1e-5f);
  for (std::int64_t r = 0; r < 3; ++r) {
    CHECK(mean(r) == 5.f);
    CHECK(rstd(r) == doctest::Approx(1.0 / std::sqrt(1e-5)).epsilon(1e-6));
    for (std::int64_t j = 0; j < d; ++j) CHECK(y(r, j) == doctest::Approx(beta(j)).epsilon(1e-6));
  }
  // d = 1 is the degenerate case of the same thing: y = beta, dx = 0.
  Tensor<B> const x1 = random_tensor<B>(Shape{4, 1}, rng);
  Tensor<B> const g1 = random_tensor<B>(Shape{1}, rng), b1 = random_tensor<B>(Shape{1}, rng);
  auto const dy1 = random_tensor<B>(Shape{4, 1}, rng);
  Tensor<B> y1(Shape{4, 1}), m1(Shape{4}), s1(Shape{4}), dx1(Shape{4, 1}), dg1(Shape{1}), db1(Shape{1});
  ops::layer_norm_forward(B{}, y1, m1, s1, x1, g1, b1, 1e-5f);
  ops::layer_norm_backward(B{}, dx1, dg1, db1, dy1, x1, m1, s1, g1);
  double sum_dy = 0;
  for (std::int64_t r = 0; r < 4; ++r) {
    CHECK(y1(r, 0) == doctest::Approx(b1(0)).epsilon(1e-6));
    CHECK(dx1(r, 0) == 0.f);
    sum_dy += dy1(r, 0);
  }
  CHECK(dg1(0) == 0.f);
  CHECK(db1(0) == doctest::Approx(sum_dy).epsilon(1e-6));
}

TEST_CASE_TEMPLATE("layer_norm: finite-difference gradients of x, gamma and beta", B, Cpu, Reference) {
  Rng rng(15);
  for (Shape const shape : {Shape{3, 8}, Shape{2, 3, 17}, Shape{1, 33}, Shape{5}}) {
    std::int64_t const d = shape[-1];
    auto x = random_tensor<B>(shape, rng, -2.f, 2.f);
    auto gamma = random_tensor<B>(Shape{d}, rng, -1.5f, 1.5f);
    auto beta = random_tensor<B>(Shape{d}, rng);
    auto const w = random_tensor<B>(shape, rng);  // loss = sum(w * y), so dy = w
    Tensor<B> y(shape), mean(rows_shape(shape)), rstd(rows_shape(shape));
    float const eps = 1e-5f;
    ops::layer_norm_forward(B{}, y, mean, rstd, x, gamma, beta, eps);
    Tensor<B> dx(shape), dgamma(Shape{d}), dbeta(Shape{d});
    ops::layer_norm_backward(B{}, dx, dgamma, dbeta, w, x, mean, rstd, gamma);

    Tensor<B> yt(shape);
    auto const loss = [&] {
      ops::layer_norm_forward(B{}, yt, View<B>{}, View<B>{}, x, gamma, beta, eps);
      return weighted_sum<B>(yt.cview(), w.cview());
    };
    std::string const s = shape.str();
    check_gradient("layer_norm x " + s, x, dx, loss, 1e-2, 1e-2, 5e-4);
    check_gradient("layer_norm gamma " + s, gamma, dgamma, loss, 1e-2, 1e-3, 1e-4);
    check_gradient("layer_norm beta " + s, beta, dbeta, loss, 1e-2, 1e-3, 1e-4);
  }
}

TEST_CASE_TEMPLATE("layer_norm: in place (y = x, dx = dy) gives the out-of-place result", B, Cpu, Reference) {
  Rng rng(16);
  Shape const shape{70, 257};  // above the CPU's parallel threshold
  auto const x = random_tensor<B>(shape, rng);
  auto const gamma = random_tensor<B>(Shape{257}, rng);
  auto const beta = random_tensor<B>(Shape{257}, rng);
  auto const dy = random_tensor<B>(shape, rng);
  Tensor<B> y(shape), mean(Shape{70}), rstd(Shape{70}), dx(shape), dg(Shape{257}), db(Shape{257});
  ops::layer_norm_forward(B{}, y, mean, rstd, x, gamma, beta, 1e-5f);
  ops::layer_norm_backward(B{}, dx, dg, db, dy, x, mean, rstd, gamma);

  auto yi = x.clone();
  Tensor<B> mi(Shape{70}), si(Shape{70});
  ops::layer_norm_forward(B{}, yi, mi, si, yi, gamma, beta, 1e-5f);
  check_close(yi, y, 0, 0, "in-place y");
  check_close(mi, mean, 0, 0, "in-place mean");
  auto dxi = dy.clone();
  Tensor<B> dgi(Shape{257}), dbi(Shape{257});
  ops::layer_norm_backward(B{}, dxi, dgi, dbi, dxi, x, mean, rstd, gamma);
  check_close(dxi, dx, 0, 0, "in-place dx = dy");
  check_close(dgi, dg, 0, 0, "dgamma with dx = dy");
  check_close(dbi, db, 0, 0, "dbeta with dx = dy");
  // dx may also alias x (x is not needed after the backward).
  auto xi = x.clone();
  ops::layer_norm_backward(B{}, xi, View<B>{}, View<B>{}, dy, xi, mean, rstd, gamma);
  check_close(xi, dx, 0, 0, "in-place dx = x");
}

TEST_CASE_TEMPLATE("layer_norm: dgamma/dbeta accumulate, dx is assigned, absent outputs are skipped", B, Cpu,
                   Reference) {
  Rng rng(17);
  Shape const shape{50, 512};
  auto const x = random_tensor<B>(shape, rng);
  auto const gamma = random_tensor<B>(Shape{512}, rng);
  auto const beta = random_tensor<B>(Shape{512}, rng);
  auto const dy = random_tensor<B>(shape, rng);
  Tensor<B> y(shape), mean(Shape{50}), rstd(Shape{50});
  ops::layer_norm_forward(B{}, y, mean, rstd, x, gamma, beta, 1e-5f);

  Tensor<B> dx(shape), dg(Shape{512}), db(Shape{512});
  ops::layer_norm_backward(B{}, dx, dg, db, dy, x, mean, rstd, gamma);
  auto const dx1 = dx.clone();
  auto const dg1 = dg.clone();
  auto const db1 = db.clone();
  ops::layer_norm_backward(B{}, dx, dg, db, dy, x, mean, rstd, gamma);
  check_close(dx, dx1, 0, 0, "dx after a second call (assign)");
  for (std::int64_t j = 0; j < 512; ++j) {
    REQUIRE(dg(j) == 2 * dg1(j));
    REQUIRE(db(j) == 2 * db1(j));
  }

  // Each output on its own, the others absent.
  Tensor<B> dx_only(shape), dg_only(Shape{512}), db_only(Shape{512});
  ops::layer_norm_backward(B{}, dx_only, View<B>{}, View<B>{}, dy, x, mean, rstd, gamma);
  ops::layer_norm_backward(B{}, View<B>{}, dg_only, View<B>{}, dy, x, mean, rstd, gamma);
  ops::layer_norm_backward(B{}, View<B>{}, View<B>{}, db_only, dy, x, mean, rstd, gamma);
  check_close(dx_only, dx1, 0, 0, "dx alone");
  check_close(dg_only, dg1, 1e-6, 1e-6, "dgamma alone");
  check_close(db_only, db1, 1e-6, 1e-6, "dbeta alone");

  // Forward without the cache (inference).
  Tensor<B> y2(shape);
  ops::layer_norm_forward(B{}, y2, View<B>{}, View<B>{}, x, gamma, beta, 1e-5f);
  check_close(y2, y, 0, 0, "forward without mean/rstd");
}

TEST_CASE("layer_norm: the CPU dgamma/dbeta reduction is right and deterministic for any thread count") {
  Rng rng(18);
  Shape const shape{1000, 33};
  auto const x = random_tensor<Cpu>(shape, rng);
  auto const gamma = random_tensor<Cpu>(Shape{33}, rng);
  auto const beta = random_tensor<Cpu>(Shape{33}, rng);
  auto const dy = random_tensor<Cpu>(shape, rng);
  Tensor<Cpu> const zero(Shape{33});
  auto const ref = run<Reference>(x, gamma, beta, dy, zero, zero, 1e-5f);
  for (int threads : {1, 2, 3, 5}) {
    ThreadCount const tc(threads);
    auto const a = run<Cpu>(x, gamma, beta, dy, zero, zero, 1e-5f);
    auto const b = run<Cpu>(x, gamma, beta, dy, zero, zero, 1e-5f);
    std::string const what = fmt::format("{} threads", threads);
    check_close(a.dgamma, ref.dgamma, 1e-5, 1e-5, what + ": dgamma");
    check_close(a.dbeta, ref.dbeta, 1e-5, 1e-5, what + ": dbeta");
    check_close(a.dx, ref.dx, 1e-4, 1e-5, what + ": dx");
    check_close(a.dgamma, b.dgamma, 0, 0, what + ": dgamma run to run");
    check_close(a.dbeta, b.dbeta, 0, 0, what + ": dbeta run to run");
  }
}

TEST_CASE_TEMPLATE("layer_norm: shape and value errors name the shapes", B, Cpu, Reference) {
  Tensor<B> const x(Shape{4, 7}), gamma(Shape{7}), beta(Shape{7}), g8(Shape{8});
  Tensor<B> y(Shape{4, 7}), mean(Shape{4}), rstd(Shape{4}), y48(Shape{4, 8}), m3(Shape{3});
  auto fwd = [&](View<B> yy, View<B> mm, View<B> ss, CView<B> xx, CView<B> gg, CView<B> bb,
                 float eps = 1e-5f) { ops::layer_norm_forward(B{}, yy, mm, ss, xx, gg, bb, eps); };
  CHECK_THROWS_WITH_AS(
      fwd(y, mean, rstd, x, g8, beta),
      doctest::Contains("layer_norm_forward: x has shape [4, 7] but gamma has shape [8]; gamma must "
                        "be [7] (the last dim of x)"),
      ShapeError);
  CHECK_THROWS_WITH_AS(fwd(y, mean, rstd, x, gamma, g8),
                       doctest::Contains("x has shape [4, 7] but beta has shape [8]"), ShapeError);
  CHECK_THROWS_WITH_AS(fwd(y48, mean, rstd, x, gamma, beta),
                       doctest::Contains("x has shape [4, 7] but y has shape [4, 8]"), ShapeError);
  CHECK_THROWS_WITH_AS(fwd(y, m3, rstd, x, gamma, beta),
                       doctest::Contains("x has shape [4, 7] (4 rows of 7) but mean has shape [3]"),
                       ShapeError);
  CHECK_THROWS_WITH_AS(fwd(y, mean, m3, x, gamma, beta), doctest::Contains("but rstd has shape [3]"),
                       ShapeError);
  Tensor<B> x74(Shape{7, 4});
  CHECK_THROWS_WITH_AS(fwd(y, mean, rstd, x74.view().transposed(), gamma, beta),
                       doctest::Contains("x (shape [4, 7]) must be contiguous"), ShapeError);
  Tensor<B> x40(Shape{4, 0}), g0(Shape{0});
  CHECK_THROWS_WITH_AS(fwd(x40, mean, rstd, x40, g0, g0),
                       doctest::Contains("x has shape [4, 0]; the normalised (last) dim must be at least 1"),
                       ShapeError);
  CHECK_THROWS_WITH_AS(fwd(y, mean, rstd, x, gamma, beta, -1.f),
                       doctest::Contains("eps = -1 must be finite and >= 0"), ValueError);
  Tensor<B> big(Shape{29});
  CHECK_THROWS_WITH_AS(
      fwd(View<B>(big.data() + 1, Shape{4, 7}), mean, rstd, CView<B>(big.data(), Shape{4, 7}), gamma, beta),
      doctest::Contains("y (shape [4, 7]) partially overlaps x"), ShapeError);

  Tensor<B> dx(Shape{4, 7}), dg(Shape{7}), db(Shape{7}), dy(Shape{4, 7}), dy5(Shape{5, 7}), dg8(Shape{8});
  auto bwd = [&](View<B> ddx, View<B> ddg, View<B> ddb, CView<B> ddy, CView<B> mm) {
    ops::layer_norm_backward(B{}, ddx, ddg, ddb, ddy, x, mm, rstd, gamma);
  };
  CHECK_THROWS_WITH_AS(bwd(dx, dg, db, dy5, mean),
                       doctest::Contains("layer_norm_backward: x has shape [4, 7] but dy has shape [5, 7]"),
                       ShapeError);
  CHECK_THROWS_WITH_AS(bwd(y48, dg, db, dy, mean),
                       doctest::Contains("x has shape [4, 7] but dx has shape [4, 8]"), ShapeError);
  CHECK_THROWS_WITH_AS(bwd(dx, dg8, db, dy, mean),
                       doctest::Contains("x has shape [4, 7] but dgamma has shape [8]; dgamma must be [7]"),
                       ShapeError);
  CHECK_THROWS_WITH_AS(bwd(dx, dg, dg8, dy, mean), doctest::Contains("but dbeta has shape [8]"), ShapeError);
  CHECK_THROWS_WITH_AS(bwd(dx, dg, db, dy, m3), doctest::Contains("but mean has shape [3]"), ShapeError);
  CHECK_THROWS_WITH_AS(bwd(dx, dg, db, dy, CView<B>{}), doctest::Contains("but mean has shape [0]"),
                       ShapeError);
  // mean/rstd may also carry the leading dims of x.
  Tensor<B> x234(Shape{2, 3, 7}), m23(Shape{2, 3}), s23(Shape{2, 3}), y234(Shape{2, 3, 7});
  CHECK_NOTHROW(ops::layer_norm_forward(B{}, y234, m23, s23, x234, gamma, beta, 1e-5f));
}

TEST_CASE_TEMPLATE("layer_norm: a residual gradient is added to dx in the same pass, in place or not", B, Cpu,
                   Reference) {
  Rng rng(19);
  for (Shape const shape : {Shape{70, 257}, Shape{3, 5}, Shape{4, 2, 512}}) {
    CAPTURE(shape.str());
    std::int64_t const d = shape[-1];
    Shape const rows = rows_shape(shape);
    auto const x = random_tensor<B>(shape, rng);
    auto const gamma = random_tensor<B>(Shape{d}, rng);
    auto const beta = random_tensor<B>(Shape{d}, rng);
    auto const dy = random_tensor<B>(shape, rng);
    auto const res = random_tensor<B>(shape, rng, -3.f, 3.f);
    Tensor<B> y(shape), mean(rows), rstd(rows);
    ops::layer_norm_forward(B{}, y, mean, rstd, x, gamma, beta, 1e-5f);

    // The unfused result: the norm's gradient, then add.
    Tensor<B> dx(shape), dg(Shape{d}), db(Shape{d}), sum(shape);
    ops::layer_norm_backward(B{}, dx, dg, db, dy, x, mean, rstd, gamma);
    ops::add(B{}, sum, res, dx);

    Tensor<B> fused(shape), dgf(Shape{d}), dbf(Shape{d});
    ops::layer_norm_backward(B{}, fused, dgf, dbf, dy, x, mean, rstd, gamma, res);
    check_close(fused, sum, 1e-6, 1e-6, "dx with the residual");
    check_close(dgf, dg, 0, 0, "dgamma is unchanged by the residual");
    check_close(dbf, db, 0, 0, "dbeta is unchanged by the residual");

    auto in_place = res.clone();  // dx = the residual itself
    ops::layer_norm_backward(B{}, in_place, View<B>{}, View<B>{}, dy, x, mean, rstd, gamma, in_place);
    check_close(in_place, fused, 0, 0, "dx over the residual");
    auto over_dy = dy.clone();  // dx = dy, the residual elsewhere
    ops::layer_norm_backward(B{}, over_dy, View<B>{}, View<B>{}, over_dy, x, mean, rstd, gamma, res);
    check_close(over_dy, fused, 0, 0, "dx over dy");
  }
}

TEST_CASE_TEMPLATE("layer_norm: finite-difference gradient of x through two paths (the residual)", B, Cpu,
                   Reference) {
  Rng rng(20);
  Shape const shape{3, 17};
  auto x = random_tensor<B>(shape, rng, -2.f, 2.f);
  auto const gamma = random_tensor<B>(Shape{17}, rng, -1.5f, 1.5f);
  auto const beta = random_tensor<B>(Shape{17}, rng);
  auto const w = random_tensor<B>(shape, rng);  // loss = sum(w * LN(x)) + sum(v * x)
  auto const v = random_tensor<B>(shape, rng);
  Tensor<B> y(shape), mean(Shape{3}), rstd(Shape{3}), dx(shape);
  ops::layer_norm_forward(B{}, y, mean, rstd, x, gamma, beta, 1e-5f);
  ops::layer_norm_backward(B{}, dx, View<B>{}, View<B>{}, w, x, mean, rstd, gamma, v);
  Tensor<B> yt(shape);
  auto const loss = [&] {
    ops::layer_norm_forward(B{}, yt, View<B>{}, View<B>{}, x, gamma, beta, 1e-5f);
    return weighted_sum<B>(yt.cview(), w.cview()) + weighted_sum<B>(x.cview(), v.cview());
  };
  check_gradient("layer_norm x with a residual", x, dx, loss, 1e-2, 1e-2, 5e-4);
}

TEST_CASE_TEMPLATE("layer_norm: a bad residual names its shape", B, Cpu, Reference) {
  Tensor<B> const x(Shape{4, 7}), gamma(Shape{7}), dy(Shape{4, 7}), mean(Shape{4}), rstd(Shape{4});
  Tensor<B> dx(Shape{4, 7}), r47(Shape{4, 7}), r48(Shape{4, 8}), big(Shape{8, 7});
  CHECK_THROWS_WITH_AS(ops::layer_norm_backward(B{}, dx, View<B>{}, View<B>{}, dy, x, mean, rstd, gamma, r48),
                       doctest::Contains("layer_norm_backward: x has shape [4, 7] but residual has shape [4, 8]"),
                       ShapeError);
  CHECK_THROWS_WITH_AS(
      ops::layer_norm_backward(B{}, View<B>{}, View<B>{}, View<B>{}, dy, x, mean, rstd, gamma, r47),
      doctest::Contains("a residual (shape [4, 7]) is given but dx is not"), ShapeError);
  // dx one row into the residual: neither the same tensor nor disjoint.
  auto const shifted = big.view().slice(1, 5);
  auto const first = big.view().slice(0, 4);
  CHECK_THROWS_WITH_AS(
      ops::layer_norm_backward(B{}, shifted, View<B>{}, View<B>{}, dy, x, mean, rstd, gamma, first),
      doctest::Contains("dx (shape [4, 7]) partially overlaps the residual (shape [4, 7])"), ShapeError);
}
