// The GPU's row-wise ops (layer norm, softmax, cross-entropy) against the Reference backend: forward
// and backward over many shapes (rows of 1, not a multiple of 32, longer than a block, more rows
// than the grid), in-place forms, absent outputs, accumulate/assign semantics, every mask broadcast
// form including fully masked rows and strided masks, label smoothing, padding targets, bad target
// ids. Skipped, with the reason printed, without a CUDA device.
#include "gpu_support.cuh"

#include <lnformer/backend/cuda/cross_entropy.cuh>
#include <lnformer/backend/cuda/layer_norm.cuh>
#include <lnformer/backend/cuda/softmax.cuh>

#include "ops/fixtures_cross_entropy.hpp"
#include "ops/fixtures_softmax.hpp"

#include <doctest/doctest.h>
#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <span>
#include <string>
#include <vector>

using namespace lnformer;
using test::check_gpu_close;
using test::make_targets;
using test::mask_patterns;
using test::random_mask;
using test::random_targets;
using test::random_tensor;
using test::to_gpu;
using test::to_reference;
using test::XentForward;

namespace {

/// A GPU result equal, bit for bit, to another GPU result.
void check_gpu_same(Tensor<Gpu> const& a, Tensor<Gpu> const& b, std::string const& what) {
  check_gpu_close(a, to_reference(b), 0, 0, what);
}

// --- layer norm -------------------------------------------------------------------------------------

Shape rows_shape(Shape const& x) { return Shape{x.numel() / x[-1]}; }

/// Inputs of one layer-norm forward + backward, held by the reference backend.
struct LnInputs {
  Tensor<Reference> x, gamma, beta, dy, dgamma0, dbeta0;
};

LnInputs ln_inputs(Shape const& shape, Rng& rng, float offset = 0.f, float spread = 2.f) {
  std::int64_t const d = shape[-1];
  return {random_tensor<Reference>(shape, rng, offset - spread, offset + spread),
          random_tensor<Reference>(Shape{d}, rng, -1.5f, 1.5f),
          random_tensor<Reference>(Shape{d}, rng, -0.5f, 0.5f),
          random_tensor<Reference>(shape, rng),
          random_tensor<Reference>(Shape{d}, rng),
          random_tensor<Reference>(Shape{d}, rng)};
}

/// Forward then backward on the Reference backend; dgamma/dbeta start from the inputs' (accumulate).
struct LnRef {
  Tensor<Reference> y, mean, rstd, dx, dgamma, dbeta;
};
LnRef ln_reference(LnInputs const& in, float eps) {
  Shape const shape = in.x.shape();
  LnRef r{Tensor<Reference>(shape), Tensor<Reference>(rows_shape(shape)), Tensor<Reference>(rows_shape(shape)),
          Tensor<Reference>(shape), in.dgamma0.clone(),                    in.dbeta0.clone()};
  ops::layer_norm_forward(Reference{}, r.y, r.mean, r.rstd, in.x, in.gamma, in.beta, eps);
  ops::layer_norm_backward(Reference{}, r.dx, r.dgamma, r.dbeta, in.dy, in.x, r.mean, r.rstd, in.gamma);
  return r;
}

/// The same inputs on the GPU.
struct LnGpu {
  Tensor<Gpu> x, gamma, beta, dy, dgamma0, dbeta0;
  explicit LnGpu(LnInputs const& in)
      : x(to_gpu(in.x)),
        gamma(to_gpu(in.gamma)),
        beta(to_gpu(in.beta)),
        dy(to_gpu(in.dy)),
        dgamma0(to_gpu(in.dgamma0)),
        dbeta0(to_gpu(in.dbeta0)) {}
};

/// The three gradients of one GPU backward: dgamma and dbeta start from the inputs' (they accumulate);
/// dx is a new buffer or, in place, a copy of dy or of x that the backward reads and overwrites.
struct LnGrads {
  Tensor<Gpu> dx, dgamma, dbeta;
};
enum class InPlace { no, over_dy, over_x };
LnGrads ln_backward(LnGpu const& g, CView<Gpu> mean, CView<Gpu> rstd, InPlace in_place = InPlace::no) {
  LnGrads o{in_place == InPlace::over_dy  ? g.dy.clone()
            : in_place == InPlace::over_x ? g.x.clone()
                                          : Tensor<Gpu>(g.x.shape()),
            g.dgamma0.clone(), g.dbeta0.clone()};
  ops::layer_norm_backward(Gpu{}, o.dx, o.dgamma, o.dbeta, in_place == InPlace::over_dy ? o.dx : g.dy,
                           in_place == InPlace::over_x ? o.dx : g.x, mean, rstd, g.gamma);
  return o;
}

/// GPU forward and backward against the reference. The GPU backward is given the reference's mean
/// and rstd, so that it is checked on its own (its own statistics are checked by the forward).
void ln_compare(Shape const& shape, Rng& rng, float offset = 0.f, float spread = 2.f, float eps = 1e-5f,
                double y_atol = 1e-5) {
  auto const in = ln_inputs(shape, rng, offset, spread);
  auto const r = ln_reference(in, eps);
  LnGpu const g(in);
  Tensor<Gpu> y(shape), mean(rows_shape(shape)), rstd(rows_shape(shape));
  ops::layer_norm_forward(Gpu{}, y, mean, rstd, g.x, g.gamma, g.beta, eps);
  std::string const what = fmt::format("layer norm x {} offset {} spread {}", shape, offset, spread);
  check_gpu_close(y, r.y, 1e-4, y_atol, what + ": y");
  check_gpu_close(mean, r.mean, 1e-5, 1e-6 + 1e-7 * (std::abs(offset) + spread), what + ": mean");
  check_gpu_close(rstd, r.rstd, 1e-4, 1e-6, what + ": rstd");

  auto const [dx, dgamma, dbeta] = ln_backward(g, to_gpu(r.mean), to_gpu(r.rstd));
  // Gradients scale with rstd; dgamma/dbeta sum over rows.
  double const rows = static_cast<double>(rows_shape(shape).numel());
  double const max_rstd = [&] {
    double m = 0;
    for (float v : r.rstd.to_host()) m = std::max(m, static_cast<double>(v));
    return m;
  }();
  check_gpu_close(dx, r.dx, 1e-4, 1e-5 * std::max(1.0, max_rstd), what + ": dx");
  check_gpu_close(dgamma, r.dgamma, 1e-4, 1e-5 * std::sqrt(rows) + 1e-5, what + ": dgamma");
  check_gpu_close(dbeta, r.dbeta, 1e-4, 1e-5 * std::sqrt(rows) + 1e-5, what + ": dbeta");
}

// --- softmax ----------------------------------------------------------------------------------------

/// Softmax forward of x with the mask (the same view of the same values on each side; empty = no
/// mask) on both backends, then backward of a random dy from the reference's y on both.
void sm_compare(Tensor<Reference> const& x, CView<Reference> rmask, CView<Gpu> gmask, float scale,
                std::string const& what, Rng& rng, double y_rtol = 1e-4) {
  Tensor<Reference> ry(x.shape());
  ops::softmax_forward(Reference{}, ry, x, rmask, scale);
  auto const gx = to_gpu(x);
  Tensor<Gpu> gy(x.shape());
  ops::softmax_forward(Gpu{}, gy, gx, gmask, scale);
  check_gpu_close(gy, ry, y_rtol, 1e-6, what + ": y");

  auto const dy = random_tensor<Reference>(x.shape(), rng);
  Tensor<Reference> rdx(x.shape());
  ops::softmax_backward(Reference{}, rdx, dy, ry, scale);
  Tensor<Gpu> gdx(x.shape());
  ops::softmax_backward(Gpu{}, gdx, to_gpu(dy), to_gpu(ry), scale);  // the same y on both sides
  check_gpu_close(gdx, rdx, 1e-4, 1e-6, what + ": dx");
}

/// sm_compare with a contiguous mask tensor (null: no mask).
void sm_compare(Tensor<Reference> const& x, Tensor<Reference> const* mask, float scale, std::string const& what,
                Rng& rng, double y_rtol = 1e-4) {
  if (mask == nullptr) {
    sm_compare(x, CView<Reference>{}, CView<Gpu>{}, scale, what, rng, y_rtol);
    return;
  }
  auto const gmask = to_gpu(*mask);
  sm_compare(x, mask->cview(), gmask.cview(), scale, what, rng, y_rtol);
}

// --- cross-entropy ----------------------------------------------------------------------------------

/// Forward (loss, nll, lse) and backward (from each backend's own lse, or from the reference's when
/// `shared_lse`) on both backends.
void xent_compare(Tensor<Reference> const& logits, std::vector<std::int32_t> const& t, float eps, std::int32_t pad,
                  std::string const& what, Rng& rng, bool shared_lse = false) {
  std::int64_t const N = logits.size(0), V = logits.size(1);
  auto const rt = make_targets<Reference>(t);
  auto const dloss = random_tensor<Reference>(Shape{N}, rng, 0.5f, 2.f);
  XentForward<Reference> ref(N);
  ref.run(logits, rt, eps, pad);
  Tensor<Reference> rd(Shape{N, V});
  ops::cross_entropy_backward(Reference{}, rd, dloss, logits, ref.lse, rt, eps, pad);

  auto const glogits = to_gpu(logits);
  auto const gt = make_targets<Gpu>(t);
  XentForward<Gpu> gpu(N);
  gpu.run(glogits, gt, eps, pad);
  check_gpu_close(gpu.lse, ref.lse, 1e-5, 1e-6, what + ": lse");
  check_gpu_close(gpu.nll, ref.nll, 1e-4, 1e-5, what + ": nll");
  check_gpu_close(gpu.loss, ref.loss, 1e-4, 1e-5, what + ": loss");
  Tensor<Gpu> gd(Shape{N, V});
  auto const ref_lse = to_gpu(ref.lse);
  ops::cross_entropy_backward(Gpu{}, gd, to_gpu(dloss), glogits, shared_lse ? ref_lse.cview() : gpu.lse.cview(), gt,
                              eps, pad);
  check_gpu_close(gd, rd, 1e-4, 1e-6, what + ": dlogits");
}

}  // namespace

// ====================================================================================================
// layer norm

LNF_GPU_TEST_CASE("gpu layer_norm: agrees with the reference over many shapes") {
  Rng rng(101);
  for (std::int64_t d : {1, 3, 17, 32, 33, 257, 512, 1024, 1500, 4097}) {
    ln_compare(Shape{1, d}, rng);  // one row
    ln_compare(Shape{d}, rng);     // rank 1: one row
    ln_compare(Shape{5, d}, rng);
    ln_compare(Shape{2, 3, d}, rng);
  }
  ln_compare(Shape{2, 2, 3, 5}, rng);
  ln_compare(Shape{64, 512}, rng);
  ln_compare(Shape{333, 257}, rng);
  ln_compare(Shape{4096, 8}, rng);                          // many short rows
  ln_compare(Shape{3000, 33}, rng);                         // many row chunks in the dgamma/dbeta reduction
  ln_compare(Shape{70001, 3}, rng);                         // more rows than row blocks (grid-stride)
  ln_compare(Shape{0, 7}, rng);                             // no rows at all
  ln_compare(Shape{40, 64}, rng, 0.f, 1e-3f);               // tiny variance, comparable to eps
  ln_compare(Shape{40, 64}, rng, 0.f, 3e3f, 1e-5f, 1e-4);   // large values
  ln_compare(Shape{7, 100}, rng, 0.f, 2.f, 0.1f);           // a large eps
}

LNF_GPU_TEST_CASE("gpu layer_norm: rows with a large common offset stay accurate (corrected two-pass)") {
  Rng rng(102);
  ln_compare(Shape{16, 1024}, rng, 1e3f, 1.f, 1e-5f, 1e-4);
  ln_compare(Shape{16, 512}, rng, -1e3f, 1.f, 1e-5f, 1e-4);
  ln_compare(Shape{16, 33}, rng, 1e4f, 1.f, 1e-5f, 1e-4);
  ln_compare(Shape{4, 3000}, rng, 1e3f, 1.f, 1e-5f, 1e-4);
}

LNF_GPU_TEST_CASE("gpu layer_norm: a constant row gives beta and rstd = 1 / sqrt(eps)") {
  std::int64_t const d = 33;
  std::vector<float> const xs(static_cast<std::size_t>(3 * d), 5.f);
  Tensor<Reference> const rx(Shape{3, d}, std::span<float const>(xs));
  Rng rng(103);
  auto const gamma = random_tensor<Reference>(Shape{d}, rng);
  auto const beta = random_tensor<Reference>(Shape{d}, rng);
  Tensor<Gpu> y(Shape{3, d}), mean(Shape{3}), rstd(Shape{3});
  ops::layer_norm_forward(Gpu{}, y, mean, rstd, to_gpu(rx), to_gpu(gamma), to_gpu(beta), 1e-5f);
  auto const m = mean.to_host();
  auto const s = rstd.to_host();
  auto const yh = y.to_host();
  auto const bh = beta.to_host();
  for (std::size_t r = 0; r < 3; ++r) {
    CHECK(m[r] == doctest::Approx(5.0).epsilon(1e-6));
    CHECK(s[r] == doctest::Approx(1.0 / std::sqrt(1e-5)).epsilon(1e-5));
    for (std::size_t j = 0; j < static_cast<std::size_t>(d); ++j)
      REQUIRE(yh[r * static_cast<std::size_t>(d) + j] == doctest::Approx(bh[j]).epsilon(1e-4));
  }
}

LNF_GPU_TEST_CASE("gpu layer_norm: in place (y = x, dx = dy, dx = x) gives the out-of-place result") {
  Rng rng(104);
  for (Shape const shape : {Shape{6, 37}, Shape{3, 2, 1500}, Shape{200, 64}}) {
    auto const in = ln_inputs(shape, rng);
    LnGpu const g(in);
    std::string const what = fmt::format("x {}", shape);
    Tensor<Gpu> y(shape), mean(rows_shape(shape)), rstd(rows_shape(shape));
    ops::layer_norm_forward(Gpu{}, y, mean, rstd, g.x, g.gamma, g.beta, 1e-5f);
    auto yi = g.x.clone();
    Tensor<Gpu> mean_i(rows_shape(shape)), rstd_i(rows_shape(shape));
    ops::layer_norm_forward(Gpu{}, yi, mean_i, rstd_i, yi, g.gamma, g.beta, 1e-5f);
    check_gpu_same(yi, y, what + ": forward y = x");
    check_gpu_same(mean_i, mean, what + ": forward y = x, mean");
    check_gpu_same(rstd_i, rstd, what + ": forward y = x, rstd");

    auto const [dx, dgamma, dbeta] = ln_backward(g, mean, rstd);

    auto const [dxi, dgamma_i, dbeta_i] = ln_backward(g, mean, rstd, InPlace::over_dy);
    check_gpu_same(dxi, dx, what + ": backward dx = dy");
    check_gpu_same(dgamma_i, dgamma, what + ": backward dx = dy, dgamma");
    check_gpu_same(dbeta_i, dbeta, what + ": backward dx = dy, dbeta");

    // dx = x: dgamma must still see the original x.
    auto const [dxx, dgamma_x, dbeta_x] = ln_backward(g, mean, rstd, InPlace::over_x);
    check_gpu_same(dxx, dx, what + ": backward dx = x");
    check_gpu_same(dgamma_x, dgamma, what + ": backward dx = x, dgamma");
    check_gpu_same(dbeta_x, dbeta, what + ": backward dx = x, dbeta");

    // And the whole thing agrees with the reference.
    auto const r = ln_reference(in, 1e-5f);
    check_gpu_close(dxx, r.dx, 1e-4, 1e-5, what + ": dx vs reference");
    double const rows = static_cast<double>(rows_shape(shape).numel());
    check_gpu_close(dgamma_x, r.dgamma, 1e-4, 1e-5 * std::sqrt(rows) + 1e-5, what + ": dgamma vs reference");
  }
}

LNF_GPU_TEST_CASE("gpu layer_norm: dgamma/dbeta accumulate deterministically, dx is assigned, absent outputs") {
  Rng rng(105);
  Shape const shape{517, 129};
  auto const in = ln_inputs(shape, rng);
  auto const r = ln_reference(in, 1e-5f);
  LnGpu const g(in);
  Shape const rs = rows_shape(shape);
  double const rows = static_cast<double>(rs.numel());

  // Forward without mean and rstd, or with only one of them: the same y.
  Tensor<Gpu> y(shape), mean(rs), rstd(rs);
  ops::layer_norm_forward(Gpu{}, y, mean, rstd, g.x, g.gamma, g.beta, 1e-5f);
  Tensor<Gpu> y_none(shape), y_mean(shape), y_rstd(shape), mean_only(rs), rstd_only(rs);
  ops::layer_norm_forward(Gpu{}, y_none, View<Gpu>{}, View<Gpu>{}, g.x, g.gamma, g.beta, 1e-5f);
  ops::layer_norm_forward(Gpu{}, y_mean, mean_only, View<Gpu>{}, g.x, g.gamma, g.beta, 1e-5f);
  ops::layer_norm_forward(Gpu{}, y_rstd, View<Gpu>{}, rstd_only, g.x, g.gamma, g.beta, 1e-5f);
  check_gpu_same(y_none, y, "forward without mean and rstd");
  check_gpu_same(y_mean, y, "forward with mean only");
  check_gpu_same(y_rstd, y, "forward with rstd only");
  check_gpu_same(mean_only, mean, "mean only");
  check_gpu_same(rstd_only, rstd, "rstd only");
  check_gpu_close(y, r.y, 1e-4, 1e-5, "y");

  auto const rmean = to_gpu(r.mean);
  auto const rrstd = to_gpu(r.rstd);
  // All three gradients, twice: dx is assigned (the same both times), dgamma/dbeta accumulate.
  auto [dx, dgamma, dbeta] = ln_backward(g, rmean, rrstd);
  check_gpu_close(dx, r.dx, 1e-4, 1e-5, "dx");
  check_gpu_close(dgamma, r.dgamma, 1e-4, 1e-5 * std::sqrt(rows) + 1e-5, "dgamma");
  check_gpu_close(dbeta, r.dbeta, 1e-4, 1e-5 * std::sqrt(rows) + 1e-5, "dbeta");
  auto const dx1 = dx.clone();
  auto const dgamma1 = dgamma.clone();
  auto const dbeta1 = dbeta.clone();
  ops::layer_norm_backward(Gpu{}, dx, dgamma, dbeta, g.dy, g.x, rmean, rrstd, g.gamma);
  check_gpu_same(dx, dx1, "dx after a second call (assign)");
  {
    // dgamma after two calls = dgamma0 + 2 * sum (the reference's sum, computed in double).
    auto const g0 = in.dgamma0.to_host();
    auto const b0 = in.dbeta0.to_host();
    auto const g1 = r.dgamma.to_host();
    auto const b1 = r.dbeta.to_host();
    std::vector<float> g2(g0.size()), b2(b0.size());
    for (std::size_t j = 0; j < g0.size(); ++j) {
      g2[j] = g0[j] + 2.f * (g1[j] - g0[j]);
      b2[j] = b0[j] + 2.f * (b1[j] - b0[j]);
    }
    Tensor<Reference> const rg2(Shape{shape[-1]}, std::span<float const>(g2));
    Tensor<Reference> const rb2(Shape{shape[-1]}, std::span<float const>(b2));
    check_gpu_close(dgamma, rg2, 1e-4, 2e-5 * std::sqrt(rows) + 1e-5, "dgamma after two calls (accumulate)");
    check_gpu_close(dbeta, rb2, 1e-4, 2e-5 * std::sqrt(rows) + 1e-5, "dbeta after two calls (accumulate)");
  }

  // Deterministic: the same inputs give the same bits.
  auto dgamma_again = g.dgamma0.clone();
  auto dbeta_again = g.dbeta0.clone();
  ops::layer_norm_backward(Gpu{}, View<Gpu>{}, dgamma_again, dbeta_again, g.dy, g.x, rmean, rrstd, g.gamma);
  check_gpu_same(dgamma_again, dgamma1, "dgamma is deterministic");
  check_gpu_same(dbeta_again, dbeta1, "dbeta is deterministic");

  // One gradient at a time.
  Tensor<Gpu> dx_only(shape);
  auto dg_only = g.dgamma0.clone();
  auto db_only = g.dbeta0.clone();
  ops::layer_norm_backward(Gpu{}, dx_only, View<Gpu>{}, View<Gpu>{}, g.dy, g.x, rmean, rrstd, g.gamma);
  ops::layer_norm_backward(Gpu{}, View<Gpu>{}, dg_only, View<Gpu>{}, g.dy, g.x, rmean, rrstd, g.gamma);
  ops::layer_norm_backward(Gpu{}, View<Gpu>{}, View<Gpu>{}, db_only, g.dy, g.x, rmean, rrstd, g.gamma);
  check_gpu_same(dx_only, dx1, "dx alone");
  check_gpu_same(dg_only, dgamma1, "dgamma alone");
  check_gpu_same(db_only, dbeta1, "dbeta alone");
  // None at all: nothing happens (and nothing fails).
  ops::layer_norm_backward(Gpu{}, View<Gpu>{}, View<Gpu>{}, View<Gpu>{}, g.dy, g.x, rmean, rrstd, g.gamma);
  cuda::context().synchronize();
}

LNF_GPU_TEST_CASE("gpu layer_norm: a residual gradient is added to dx, in place over it or not") {
  Rng rng(205);
  for (Shape const shape : {Shape{70, 257}, Shape{3, 5}, Shape{4, 2, 512}}) {
    CAPTURE(shape.str());
    auto const in = ln_inputs(shape, rng);
    auto const r = ln_reference(in, 1e-5f);
    auto const res_r = random_tensor<Reference>(shape, rng, -3.f, 3.f);
    Tensor<Reference> want(shape);
    ops::layer_norm_backward(Reference{}, want, View<Reference>{}, View<Reference>{}, in.dy, in.x, r.mean, r.rstd,
                             in.gamma, res_r);
    LnGpu const g(in);
    auto const mean = to_gpu(r.mean);
    auto const rstd = to_gpu(r.rstd);
    auto const res = to_gpu(res_r);
    Tensor<Gpu> dx(shape);
    ops::layer_norm_backward(Gpu{}, dx, View<Gpu>{}, View<Gpu>{}, g.dy, g.x, mean, rstd, g.gamma, res);
    check_gpu_close(dx, want, 1e-4, 1e-5, "dx with the residual");
    auto over = res.clone();
    ops::layer_norm_backward(Gpu{}, over, View<Gpu>{}, View<Gpu>{}, g.dy, g.x, mean, rstd, g.gamma, over);
    check_gpu_same(over, dx, "dx over the residual");
  }
}

LNF_GPU_TEST_CASE("gpu layer_norm: shape errors are the contract's") {
  Tensor<Gpu> x(Shape{4, 7}), y(Shape{4, 8}), mean(Shape{4}), rstd(Shape{4}), gamma(Shape{7}), beta(Shape{7});
  CHECK_THROWS_AS(ops::layer_norm_forward(Gpu{}, y, mean, rstd, x, gamma, beta, 1e-5f), ShapeError);
  Tensor<Gpu> y_ok(Shape{4, 7});
  CHECK_THROWS_AS(ops::layer_norm_forward(Gpu{}, y_ok, mean, rstd, x, gamma, beta, -1.f), ValueError);
}

// ====================================================================================================
// softmax

LNF_GPU_TEST_CASE("gpu softmax: agrees with the reference for ranks 1-4 and every mask broadcast pattern") {
  Rng rng(201);
  for (Shape const& shape : test::kSoftmaxShapes) {
    auto const x = random_tensor<Reference>(shape, rng, -3.f, 3.f);
    sm_compare(x, nullptr, 1.f, "x " + shape.str() + " no mask", rng);
    for (Shape const& ms : mask_patterns(shape)) {
      for (float p_inf : {0.f, 0.3f, 1.f}) {  // 1: every row fully masked
        auto const mask = random_mask<Reference>(ms, rng, p_inf);
        sm_compare(x, &mask, 0.7f, fmt::format("x {} mask {} p_inf {}", shape, ms, p_inf), rng);
      }
    }
  }
}

LNF_GPU_TEST_CASE("gpu softmax: long rows, many rows and attention-sized tensors") {
  Rng rng(202);
  for (std::int64_t n : {1, 3, 17, 32, 33, 257, 512, 1024, 1500, 4097}) {
    auto const x = random_tensor<Reference>(Shape{1, n}, rng, -5.f, 5.f);  // one row
    sm_compare(x, nullptr, 1.f, fmt::format("one row of {}", n), rng);
    auto const x2 = random_tensor<Reference>(Shape{6, n}, rng, -5.f, 5.f);
    auto const m2 = random_mask<Reference>(Shape{n}, rng, 0.2f);
    sm_compare(x2, &m2, 0.125f, fmt::format("[6, {}] mask [{}]", n, n), rng);
    auto const m3 = random_mask<Reference>(Shape{6, 1}, rng, 0.3f);
    sm_compare(x2, &m3, 0.125f, fmt::format("[6, {}] mask [6, 1]", n), rng);
  }
  // More rows than row blocks (grid-stride), with a per-column and a per-row mask.
  auto const xr = random_tensor<Reference>(Shape{70001, 5}, rng, -3.f, 3.f);
  auto const mc = random_mask<Reference>(Shape{5}, rng, 0.2f);
  sm_compare(xr, &mc, 1.f, "[70001, 5] mask [5]", rng);
  auto const mr = random_mask<Reference>(Shape{70001, 1}, rng, 0.2f);
  sm_compare(xr, &mr, 1.f, "[70001, 5] mask [70001, 1]", rng);

  // Attention scores [B, H, Tq, Tk]: causal, key padding (batch 1 fully padded), full masks.
  std::int64_t const B = 2, H = 4, T = 64;
  auto const x = random_tensor<Reference>(Shape{B, H, T, T}, rng, -8.f, 8.f);
  auto const causal_mask = test::causal_mask<Reference>(T);
  sm_compare(x, &causal_mask, 0.125f, "causal [T, T]", rng);
  auto const pad_mask = test::key_padding_mask<Reference>({40, 0}, T);  // batch 0 has 40 keys, batch 1 none
  sm_compare(x, &pad_mask, 0.125f, "key padding [B, 1, 1, T]", rng);
  auto const full_mask = random_mask<Reference>(Shape{B, H, T, T}, rng, 0.5f);
  sm_compare(x, &full_mask, 0.125f, "full random mask", rng);
  for (Shape const ms : {Shape{H, 1, T}, Shape{B, H, T, 1}, Shape{B, 1, T, T}, Shape{1, H, 1, T}}) {
    auto const m = random_mask<Reference>(ms, rng, 0.3f);
    sm_compare(x, &m, 0.125f, "mask " + ms.str(), rng);
  }
}

LNF_GPU_TEST_CASE("gpu softmax: strided masks (expanded stride-0 dims, a window of a larger tensor)") {
  Rng rng(203);
  // [3, 5] mask expanded to [2, 3, 5] with stride 0 over the batch.
  auto const x = random_tensor<Reference>(Shape{2, 3, 5}, rng);
  auto const m = random_mask<Reference>(Shape{3, 5}, rng, 0.3f);
  auto const gm = to_gpu(m);
  CView<Reference> const rexp(m.data(), Shape{2, 3, 5}, Strides{0, 5, 1});
  CView<Gpu> const gexp(gm.data(), Shape{2, 3, 5}, Strides{0, 5, 1});
  sm_compare(x, rexp, gexp, 1.f, "expanded mask", rng);

  // The [Tq, Tk] = [7, 9] mask is columns 2..10 of a [7, 20] tensor (row stride 20).
  auto const big = random_mask<Reference>(Shape{7, 20}, rng, 0.3f);
  auto const gbig = to_gpu(big);
  CView<Reference> const rwin(big.data() + 2, Shape{7, 9}, Strides{20, 1});
  CView<Gpu> const gwin(gbig.data() + 2, Shape{7, 9}, Strides{20, 1});
  auto const x4 = random_tensor<Reference>(Shape{2, 3, 7, 9}, rng);
  sm_compare(x4, rwin, gwin, 0.5f, "windowed mask [7, 9] of [7, 20]", rng);
  // [B, 1, 1, Tk] key padding taken as column 0 of a [B, 4, 1, Tk]-like buffer (dim-0 stride 4 * Tk).
  auto const kbuf = random_mask<Reference>(Shape{2, 4, 1, 9}, rng, 0.3f);
  auto const gkbuf = to_gpu(kbuf);
  CView<Reference> const rk(kbuf.data(), Shape{2, 1, 1, 9}, Strides{36, 9, 9, 1});
  CView<Gpu> const gk(gkbuf.data(), Shape{2, 1, 1, 9}, Strides{36, 9, 9, 1});
  sm_compare(x4, rk, gk, 0.5f, "key padding view with a non-contiguous batch stride", rng);
}

LNF_GPU_TEST_CASE("gpu softmax: fully masked rows give zeros and zero gradient; masked keys exactly 0") {
  Rng rng(204);
  std::int64_t const Tq = 4, Tk = 37;
  auto const x = random_tensor<Reference>(Shape{2, Tq, Tk}, rng, -3.f, 3.f);
  // Batch 0, query row 1: every key masked; batch 1: key 4 masked in every row.
  auto const mask = test::masked_rows_mask<Reference>(Tq, Tk);
  sm_compare(x, &mask, 1.f, "fully masked row", rng);

  auto const gmask = to_gpu(mask);
  Tensor<Gpu> y(Shape{2, Tq, Tk});
  ops::softmax_forward(Gpu{}, y, to_gpu(x), gmask, 1.f);
  auto const yh = y.to_host();
  for (std::int64_t k = 0; k < Tk; ++k) CHECK(yh[static_cast<std::size_t>(1 * Tk + k)] == 0.f);
  for (std::int64_t q = 0; q < Tq; ++q) CHECK(yh[static_cast<std::size_t>(Tq * Tk + q * Tk + 4)] == 0.f);
  for (float v : yh) REQUIRE(std::isfinite(v));
  auto const dy = to_gpu(random_tensor<Reference>(Shape{2, Tq, Tk}, rng));
  Tensor<Gpu> dx(Shape{2, Tq, Tk});
  ops::softmax_backward(Gpu{}, dx, dy, y, 1.f);
  auto const dxh = dx.to_host();
  for (std::int64_t k = 0; k < Tk; ++k) CHECK(dxh[static_cast<std::size_t>(1 * Tk + k)] == 0.f);
  for (float v : dxh) REQUIRE(std::isfinite(v));

  // A mask whose last dim is 1: -inf masks the whole row (a row longer than a block, too).
  for (std::int64_t n : {Tk, std::int64_t{1500}}) {
    auto const xn = random_tensor<Reference>(Shape{2, Tq, n}, rng, -3.f, 3.f);
    auto const rowmask = test::row_mask<Reference>();  // [Tq, 1]
    sm_compare(xn, &rowmask, 1.f, fmt::format("row mask [{}, 1], rows of {}", Tq, n), rng);
  }
}

LNF_GPU_TEST_CASE("gpu softmax: logits of magnitude 1e4 stay finite and match the reference") {
  Rng rng(205);
  for (Shape const shape : {Shape{8}, Shape{7, 33}, Shape{2, 3, 4, 257}, Shape{3, 2000}}) {
    auto const x = test::huge_logits<Reference>(shape, rng);
    for (float scale : {1.f, 0.125f, -1.f}) {  // powers of two: scale * x is exact in float
      std::string const what = fmt::format("huge logits {} scale {}", shape, scale);
      sm_compare(x, nullptr, scale, what, rng);
      auto const m = random_mask<Reference>(Shape{shape[-1]}, rng, 0.3f, 0.f);
      sm_compare(x, &m, scale, what + " with mask", rng);
    }
  }
}

LNF_GPU_TEST_CASE("gpu softmax: in place (y = x, dx = dy, dx = y) and assign semantics") {
  Rng rng(206);
  for (Shape const shape : {Shape{4, 2, 40, 60}, Shape{3, 1500}}) {
    std::string const what = fmt::format("x {}", shape);
    auto const x = to_gpu(random_tensor<Reference>(shape, rng, -4.f, 4.f));
    auto const mask = random_mask<Gpu>(Shape{shape[-2], shape[-1]}, rng, 0.2f);
    Tensor<Gpu> y(shape);
    ops::softmax_forward(Gpu{}, y, x, mask, 0.3f);
    auto yi = x.clone();
    ops::softmax_forward(Gpu{}, yi, yi, mask, 0.3f);
    check_gpu_same(yi, y, what + ": in-place forward");

    auto const dy = to_gpu(random_tensor<Reference>(shape, rng));
    Tensor<Gpu> dx(shape);
    ops::softmax_backward(Gpu{}, dx, dy, y, 0.3f);
    auto const dx1 = dx.clone();
    ops::softmax_backward(Gpu{}, dx, dy, y, 0.3f);
    check_gpu_same(dx, dx1, what + ": dx after a second call (assign, not accumulate)");
    auto dxi = dy.clone();
    ops::softmax_backward(Gpu{}, dxi, dxi, y, 0.3f);
    check_gpu_same(dxi, dx1, what + ": in-place backward dx = dy");
    auto dyy = y.clone();
    ops::softmax_backward(Gpu{}, dyy, dy, dyy, 0.3f);
    check_gpu_same(dyy, dx1, what + ": in-place backward dx = y");
  }
  // Empty tensors: nothing to do.
  Tensor<Gpu> e(Shape{0, 5}), ey(Shape{0, 5});
  CHECK_NOTHROW(ops::softmax_forward(Gpu{}, ey, e, CView<Gpu>{}, 1.f));
  CHECK_NOTHROW(ops::softmax_backward(Gpu{}, ey, e, e, 1.f));
}

// ====================================================================================================
// cross-entropy

LNF_GPU_TEST_CASE("gpu cross_entropy: agrees with the reference (label smoothing on/off, padding rows)") {
  Rng rng(301);
  for (std::int64_t N : {1, 3, 17, 64}) {
    for (std::int64_t V : {1, 2, 3, 33, 257, 1000, 5000}) {
      for (float eps : {0.f, 0.1f}) {
        if (V == 1 && eps > 0.f) continue;  // eps_i = eps / (V - 1) is undefined
        for (float range : {5.f, 30.f}) {
          for (std::int32_t pad : {1, -100}) {  // padding_idx inside [0, V) (fairseq) or outside (ignore_index)
            auto const logits = random_tensor<Reference>(Shape{N, V}, rng, -range, range);
            auto const t = random_targets(N, V, rng, pad);
            xent_compare(logits, t, eps, pad, fmt::format("N {} V {} eps {} range {} pad {}", N, V, eps, range, pad),
                         rng);
          }
        }
      }
    }
  }
  // More rows than row blocks (grid-stride).
  auto const logits = random_tensor<Reference>(Shape{70001, 3}, rng, -5.f, 5.f);
  xent_compare(logits, random_targets(70001, 3, rng, 0), 0.1f, 0, "N 70001 V 3", rng);
}

LNF_GPU_TEST_CASE("gpu cross_entropy: logits of magnitude 1e4 stay finite and agree with the reference") {
  Rng rng(302);
  std::int64_t const N = 17, V = 1000;
  for (float eps : {0.f, 0.1f}) {
    for (int kind = 0; kind < 3; ++kind) {
      auto const logits = test::logits_near_1e4<Reference>(N, V, kind, rng);
      // Both backwards from the reference's lse (an ulp of lse at 1e4 is 1e-3, which moves p by 0.1%).
      xent_compare(logits, random_targets(N, V, rng, 2), eps, 2, fmt::format("1e4 logits kind {} eps {}", kind, eps),
                   rng, /*shared_lse=*/true);
    }
  }
}

LNF_GPU_TEST_CASE("gpu cross_entropy: backward assigns, may run in place; nll is optional; N = 0") {
  Rng rng(303);
  std::int64_t const N = 5, V = 300;
  auto const logits = to_gpu(random_tensor<Reference>(Shape{N, V}, rng, -5.f, 5.f));
  auto const targets = make_targets<Gpu>(random_targets(N, V, rng, 4));
  auto const dloss = to_gpu(random_tensor<Reference>(Shape{N}, rng));
  XentForward<Gpu> f(N);
  f.run(logits, targets, 0.1f, 4);

  Tensor<Gpu> once(Shape{N, V});
  ops::cross_entropy_backward(Gpu{}, once, dloss, logits, f.lse, targets, 0.1f, 4);
  auto twice = to_gpu(random_tensor<Reference>(Shape{N, V}, rng, 50.f, 60.f));  // stale contents are overwritten
  ops::cross_entropy_backward(Gpu{}, twice, dloss, logits, f.lse, targets, 0.1f, 4);
  ops::cross_entropy_backward(Gpu{}, twice, dloss, logits, f.lse, targets, 0.1f, 4);
  check_gpu_same(twice, once, "dlogits after two calls");

  auto in_place = logits.clone();
  ops::cross_entropy_backward(Gpu{}, in_place, dloss, in_place, f.lse, targets, 0.1f, 4);
  check_gpu_same(in_place, once, "dlogits computed in place over logits");

  Tensor<Gpu> loss(Shape{N}), lse(Shape{N});
  ops::cross_entropy_forward(Gpu{}, loss, View<Gpu>{}, lse, logits, targets, 0.1f, 4);
  check_gpu_same(loss, f.loss, "loss without nll");
  check_gpu_same(lse, f.lse, "lse without nll");

  // Gradient rows sum to zero; padding rows are zero.
  auto const dh = once.to_host();
  auto const th = targets.to_host();
  for (std::int64_t n = 0; n < N; ++n) {
    double s = 0;
    for (std::int64_t k = 0; k < V; ++k) s += dh[static_cast<std::size_t>(n * V + k)];
    CHECK(std::abs(s) < 1e-5);
    if (th[static_cast<std::size_t>(n)] == 4)
      for (std::int64_t k = 0; k < V; ++k) REQUIRE(dh[static_cast<std::size_t>(n * V + k)] == 0.f);
  }

  // N = 0 is a valid (empty) batch.
  Tensor<Gpu> const none(Shape{0, 5});
  auto const no_targets = make_targets<Gpu>({});
  XentForward<Gpu> empty(0);
  CHECK_NOTHROW(empty.run(none, no_targets, 0.1f, -1));
  Tensor<Gpu> dnone(Shape{0, 5});
  CHECK_NOTHROW(ops::cross_entropy_backward(Gpu{}, dnone, empty.loss, none, empty.lse, no_targets, 0.1f, -1));
}

LNF_GPU_TEST_CASE("gpu cross_entropy: a NaN logit poisons its row, not the others") {
  std::int64_t const N = 3, V = 40;
  Rng rng(304);
  auto rl = random_tensor<Reference>(Shape{N, V}, rng);
  rl(1, 17) = std::numeric_limits<float>::quiet_NaN();
  auto const logits = to_gpu(rl);
  auto const targets = make_targets<Gpu>({0, 0, 0});
  std::vector<float> const ones(3, 1.f);
  Tensor<Gpu> const dloss(Shape{N}, std::span<float const>(ones));
  for (float eps : {0.f, 0.1f}) {
    XentForward<Gpu> f(N);
    f.run(logits, targets, eps, -1);
    auto const lse = f.lse.to_host();
    auto const loss = f.loss.to_host();
    auto const nll = f.nll.to_host();
    CHECK(std::isnan(lse[1]));
    CHECK(std::isnan(loss[1]));
    CHECK(std::isnan(nll[1]));
    CHECK(std::isfinite(loss[0]));
    CHECK(std::isfinite(loss[2]));
    Tensor<Gpu> dlogits(Shape{N, V});
    ops::cross_entropy_backward(Gpu{}, dlogits, dloss, logits, f.lse, targets, eps, -1);
    auto const d = dlogits.to_host();
    CHECK(std::isnan(d[static_cast<std::size_t>(1 * V + 0)]));
    CHECK(std::isfinite(d[0]));
    CHECK(std::isfinite(d[static_cast<std::size_t>(2 * V + 5)]));
  }
}

LNF_GPU_TEST_CASE("gpu cross_entropy: out-of-range targets are ValueErrors naming row, target and V") {
  Tensor<Gpu> const logits(Shape{3, 4});
  std::vector<float> const fortytwo(3, 42.f);
  Tensor<Gpu> loss(Shape{3}, std::span<float const>(fortytwo)), nll(Shape{3}), lse(Shape{3});
  auto const out_of_range = make_targets<Gpu>({0, 4, 1});
  CHECK_THROWS_WITH_AS(
      ops::cross_entropy_forward(Gpu{}, loss, nll, lse, logits, out_of_range, 0.1f, -1),
      doctest::Contains("cross_entropy_forward: target 4 in row 1 is out of range [0, V = 4) and is not "
                        "padding_idx -1"),
      ValueError);
  auto const negative = make_targets<Gpu>({0, 1, -1});
  CHECK_THROWS_WITH_AS(ops::cross_entropy_forward(Gpu{}, loss, nll, lse, logits, negative, 0.1f, 2),
                       doctest::Contains("target -1 in row 2"), ValueError);
  auto const two_bad = make_targets<Gpu>({0, 9, -7});  // the first bad row is the one reported
  CHECK_THROWS_WITH_AS(ops::cross_entropy_forward(Gpu{}, loss, nll, lse, logits, two_bad, 0.f, -1),
                       doctest::Contains("target 9 in row 1 is out of range"), ValueError);
  for (float v : loss.to_host()) CHECK(v == 42.f);  // nothing was written

  // A target equal to padding_idx is fine wherever padding_idx lies (PyTorch's ignore_index = -100).
  auto const ignored = make_targets<Gpu>({0, -100, 1});
  CHECK_NOTHROW(ops::cross_entropy_forward(Gpu{}, loss, nll, lse, logits, ignored, 0.1f, -100));
  CHECK(loss.to_host()[1] == 0.f);

  std::vector<float> const sevens(12, 7.f);
  Tensor<Gpu> dlogits(Shape{3, 4}, std::span<float const>(sevens));
  Tensor<Gpu> const dloss(Shape{3});
  CHECK_THROWS_WITH_AS(ops::cross_entropy_backward(Gpu{}, dlogits, dloss, logits, lse, out_of_range, 0.1f, -1),
                       doctest::Contains("cross_entropy_backward: target 4 in row 1 is out of range [0, V = 4)"),
                       ValueError);
  for (float v : dlogits.to_host()) CHECK(v == 7.f);  // nothing was written

  // The device and the thread's stream are still usable after the error.
  auto const good = make_targets<Gpu>({0, 3, 1});
  CHECK_NOTHROW(ops::cross_entropy_backward(Gpu{}, dlogits, dloss, logits, lse, good, 0.1f, -1));
  CHECK_NOTHROW(cuda::context().synchronize());

  // Host-side contract errors are thrown as on the CPU.
  CHECK_THROWS_WITH_AS(ops::cross_entropy_forward(Gpu{}, loss, nll, lse, logits, good, 1.f, -1),
                       doctest::Contains("cross_entropy_forward: label smoothing eps = 1 must be in [0, 1)"),
                       ValueError);
}
