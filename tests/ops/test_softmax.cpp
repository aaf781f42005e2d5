// Softmax: CPU against the reference for ranks 1-4 and every mask broadcast pattern, fully masked
// rows, huge logits, finite-difference gradients, aliasing, assign semantics, the CPU exp, errors.
#include <lnformer/backend/cpu/softmax.hpp>
#include <lnformer/backend/reference/softmax.hpp>

#include "ops/fixtures_softmax.hpp"
#include "support.hpp"

#include <doctest/doctest.h>

#include <cmath>
#include <limits>
#include <string>
#include <vector>

using namespace lnformer;
using test::check_close;
using test::check_gradient;
using test::kInf;
using test::mask_patterns;
using test::random_mask;
using test::random_tensor;
using test::to_backend;
using test::weighted_sum;

namespace {

/// Sum of every row of a [rows, n] view is 1 (or 0 for a fully masked row when allowed).
void check_row_sums(Tensor<Cpu> const& y, std::string const& what, bool allow_zero_rows = false) {
  std::int64_t const n = y.size(-1);
  auto const h = y.to_host();
  for (std::int64_t r = 0; n > 0 && r < y.numel() / n; ++r) {
    double s = 0;
    for (std::int64_t j = 0; j < n; ++j) s += h[static_cast<std::size_t>(r * n + j)];
    INFO(what, ": row ", r, " sums to ", s);
    if (allow_zero_rows && s == 0) continue;
    REQUIRE(std::abs(s - 1) < 1e-5);
  }
}

/// Forward on both backends (y), then backward (dx) from dy; CHECKs CPU against the reference.
/// `mask` null: no mask.
void compare_backends(Tensor<Cpu> const& x, Tensor<Cpu> const* mask, float scale, std::string const& what,
                      Rng& rng) {
  CView<Cpu> const cm = mask != nullptr ? mask->cview() : CView<Cpu>{};
  Tensor<Cpu> y(x.shape());
  ops::softmax_forward(Cpu{}, y, x, cm, scale);
  auto const rx = to_backend<Reference>(x);
  auto const rmask = mask != nullptr ? to_backend<Reference>(*mask) : Tensor<Reference>(Shape{0});
  CView<Reference> const rm = mask != nullptr ? rmask.cview() : CView<Reference>{};
  Tensor<Reference> ry(x.shape());
  ops::softmax_forward(Reference{}, ry, rx, rm, scale);
  check_close(y, ry, 1e-5, 1e-7, what + ": y");
  check_row_sums(y, what, true);

  auto const dy = random_tensor<Cpu>(x.shape(), rng);
  Tensor<Cpu> dx(x.shape());
  ops::softmax_backward(Cpu{}, dx, dy, y, scale);
  auto const ryc = to_backend<Reference>(y);  // same y on both sides: compare the backward alone
  Tensor<Reference> rdx(x.shape());
  ops::softmax_backward(Reference{}, rdx, to_backend<Reference>(dy), ryc, scale);
  check_close(dx, rdx, 1e-4, 1e-6, what + ": dx");
}

}  // namespace

TEST_CASE("softmax: a known answer") {
  std::vector<float> const h{1.f, 2.f, 3.f};
  Tensor<Cpu> const x(Shape{3}, std::span<float const>(h));
  Tensor<Cpu> y(Shape{3});
  ops::softmax_forward(Cpu{}, y, x, CView<Cpu>{}, 1.f);
  CHECK(y(0) == doctest::Approx(0.09003057317).epsilon(1e-6));
  CHECK(y(1) == doctest::Approx(0.24472847105).epsilon(1e-6));
  CHECK(y(2) == doctest::Approx(0.66524095577).epsilon(1e-6));
  Tensor<Reference> const rx = to_backend<Reference>(x);
  Tensor<Reference> ry(Shape{3});
  ops::softmax_forward(Reference{}, ry, rx, CView<Reference>{}, 1.f);
  CHECK(ry(0) == doctest::Approx(0.09003057317).epsilon(1e-7));
}

TEST_CASE("softmax: CPU agrees with the reference for ranks 1-4 and every mask broadcast pattern") {
  Rng rng(21);
  for (Shape const& shape : test::kSoftmaxShapes) {
    auto const x = random_tensor<Cpu>(shape, rng, -3.f, 3.f);
    compare_backends(x, nullptr, 1.f, "x " + shape.str() + " no mask", rng);
    for (Shape const& ms : mask_patterns(shape)) {
      for (float p_inf : {0.f, 0.3f}) {
        auto const mask = random_mask<Cpu>(ms, rng, p_inf);
        compare_backends(x, &mask, 0.7f, fmt::format("x {} mask {} p_inf {}", shape, ms, p_inf), rng);
      }
    }
  }
}

TEST_CASE("softmax: CPU agrees with the reference for long rows and attention-sized tensors") {
  Rng rng(22);
  for (std::int64_t n : {1, 3, 17, 33, 257, 512, 1024}) {
    auto const x = random_tensor<Cpu>(Shape{1, n}, rng, -5.f, 5.f);  // one row
    compare_backends(x, nullptr, 1.f, fmt::format("one row of {}", n), rng);
    auto const x2 = random_tensor<Cpu>(Shape{6, n}, rng, -5.f, 5.f);
    auto const m2 = random_mask<Cpu>(Shape{n}, rng, 0.2f);
    compare_backends(x2, &m2, 0.125f, fmt::format("[6, {}] mask [{}]", n, n), rng);
  }
  // Attention scores [B, H, Tq, Tk], above the parallel threshold: causal, key padding, full masks.
  std::int64_t const B = 2, H = 4, T = 64;
  auto const x = random_tensor<Cpu>(Shape{B, H, T, T}, rng, -8.f, 8.f);
  auto const causal_mask = test::causal_mask<Cpu>(T);
  compare_backends(x, &causal_mask, 0.125f, "causal [T, T]", rng);
  auto const pad_mask = test::key_padding_mask<Cpu>({T, 40}, T);  // batch 1 has 40 keys
  compare_backends(x, &pad_mask, 0.125f, "key padding", rng);
  auto const full_mask = random_mask<Cpu>(Shape{B, H, T, T}, rng, 0.5f);
  compare_backends(x, &full_mask, 0.125f, "full random mask", rng);
  for (Shape const ms : {Shape{H, 1, T}, Shape{B, H, T, 1}, Shape{B, 1, T, T}}) {  // threads split mid-broadcast
    auto const m = random_mask<Cpu>(ms, rng, 0.3f);
    compare_backends(x, &m, 0.125f, "mask " + ms.str(), rng);
  }
  auto const m3 = random_mask<Cpu>(Shape{3, 1, 1024}, rng, 0.1f);
  compare_backends(random_tensor<Cpu>(Shape{3, 5, 1024}, rng, -4.f, 4.f), &m3, 1.f,
                   "[3, 5, 1024] mask [3, 1, 1024]", rng);
}

TEST_CASE_TEMPLATE("softmax: fully masked and padding rows give zeros, not NaN, and zero gradient", B, Cpu,
                   Reference) {
  Rng rng(23);
  std::int64_t const Tq = 4, Tk = 5;
  auto const x = random_tensor<B>(Shape{2, Tq, Tk}, rng, -3.f, 3.f);
  // Full-shape mask: in batch 0, query row 1 masks every key (a padding query); batch 1 masks key 4 only.
  auto const mask = test::masked_rows_mask<B>(Tq, Tk);
  Tensor<B> y(Shape{2, Tq, Tk});
  ops::softmax_forward(B{}, y, x, mask, 1.f);
  for (std::int64_t k = 0; k < Tk; ++k) CHECK(y(0, 1, k) == 0.f);
  for (std::int64_t q = 0; q < Tq; ++q) CHECK(y(1, q, 4) == 0.f);  // a masked key gets exactly 0
  auto const dy = random_tensor<B>(Shape{2, Tq, Tk}, rng);
  Tensor<B> dx(Shape{2, Tq, Tk});
  ops::softmax_backward(B{}, dx, dy, y, 1.f);
  for (std::int64_t k = 0; k < Tk; ++k) CHECK(dx(0, 1, k) == 0.f);
  for (float v : dx.to_host()) REQUIRE(std::isfinite(v));

  // A whole batch entry of keys padded ([B, 1, 1, Tk] key padding): every row of it is zeros.
  auto const kpm = test::key_padding_mask<B>({Tk, 0}, Tk);
  auto const x4 = random_tensor<B>(Shape{2, 3, Tq, Tk}, rng);
  Tensor<B> y4(Shape{2, 3, Tq, Tk});
  ops::softmax_forward(B{}, y4, x4, kpm, 0.5f);
  for (std::int64_t h = 0; h < 3; ++h)
    for (std::int64_t q = 0; q < Tq; ++q) {
      double s0 = 0;
      for (std::int64_t k = 0; k < Tk; ++k) {
        CHECK(y4(1, h, q, k) == 0.f);
        s0 += y4(0, h, q, k);
      }
      CHECK(s0 == doctest::Approx(1.0).epsilon(1e-6));
    }
  // A mask whose last dim is 1 masks whole rows when -inf and is a no-op when finite.
  auto const rowmask = test::row_mask<B>();  // [Tq, 1]
  Tensor<B> yr(Shape{2, Tq, Tk}), yn(Shape{2, Tq, Tk});
  ops::softmax_forward(B{}, yr, x, rowmask, 1.f);
  ops::softmax_forward(B{}, yn, x, CView<B>{}, 1.f);
  for (std::int64_t b = 0; b < 2; ++b)
    for (std::int64_t k = 0; k < Tk; ++k) {
      CHECK(yr(b, 1, k) == 0.f);
      CHECK(yr(b, 2, k) == doctest::Approx(yn(b, 2, k)).epsilon(1e-6));
    }
}

TEST_CASE("softmax: logits of magnitude 1e4 stay finite and match the reference") {
  Rng rng(24);
  for (Shape const shape : {Shape{8}, Shape{7, 33}, Shape{2, 3, 4, 257}}) {
    auto const x = test::huge_logits<Cpu>(shape, rng);
    for (float scale : {1.f, 0.125f, -1.f}) {  // powers of two: scale * x is exact in float
      std::string const what = fmt::format("huge logits {} scale {}", shape, scale);
      Tensor<Cpu> y(shape);
      ops::softmax_forward(Cpu{}, y, x, CView<Cpu>{}, scale);
      for (float v : y.to_host()) REQUIRE(std::isfinite(v));
      check_row_sums(y, what);
      compare_backends(x, nullptr, scale, what, rng);
      auto const m = random_mask<Cpu>(Shape{shape[-1]}, rng, 0.3f, 0.f);
      compare_backends(x, &m, scale, what + " with mask", rng);
    }
  }
  // Two logits 1e4 apart: the smaller one's probability underflows to 0, cleanly.
  std::vector<float> const h2{1e4f, -1e4f, 1e4f};
  Tensor<Cpu> const x2(Shape{3}, std::span<float const>(h2));
  Tensor<Cpu> y2(Shape{3});
  ops::softmax_forward(Cpu{}, y2, x2, CView<Cpu>{}, 1.f);
  CHECK(y2(0) == doctest::Approx(0.5).epsilon(1e-7));
  CHECK(y2(1) == 0.f);
  CHECK(y2(2) == doctest::Approx(0.5).epsilon(1e-7));
}

TEST_CASE_TEMPLATE("softmax: finite-difference gradient of x, with and without mask, scale != 1", B, Cpu,
                   Reference) {
  Rng rng(25);
  Shape const shape{2, 3, 7};
  for (int variant = 0; variant < 4; ++variant) {
    float const scale = variant % 2 == 0 ? 1.f : 0.35f;
    bool const masked = variant >= 2;
    auto x = random_tensor<B>(shape, rng, -2.f, 2.f);
    // Mask [3, 7]: finite values and -inf, row 2 fully masked.
    auto mask_c = random_mask<Cpu>(Shape{3, 7}, rng, 0.3f, 1.5f);
    for (std::int64_t k = 0; k < 7; ++k) mask_c(2, k) = -kInf;
    auto const mask_t = to_backend<B>(mask_c);
    CView<B> const mask = masked ? mask_t.cview() : CView<B>{};
    auto const w = random_tensor<B>(shape, rng);
    Tensor<B> y(shape), dx(shape);
    ops::softmax_forward(B{}, y, x, mask, scale);
    ops::softmax_backward(B{}, dx, w, y, scale);
    Tensor<B> yt(shape);
    auto const loss = [&] {
      ops::softmax_forward(B{}, yt, x, mask, scale);
      return weighted_sum<B>(yt.cview(), w.cview());
    };
    check_gradient(fmt::format("softmax x (scale {}, {})", scale, masked ? "mask [3, 7]" : "no mask"), x, dx,
                   loss, 1e-2, 1e-2, 2e-4);
  }
}

TEST_CASE_TEMPLATE("softmax: in place (y = x, dx = dy, dx = y) and assign semantics", B, Cpu, Reference) {
  Rng rng(26);
  Shape const shape{4, 2, 40, 60};  // above the CPU's parallel threshold
  auto const x = random_tensor<B>(shape, rng, -4.f, 4.f);
  auto const mask = random_mask<B>(Shape{40, 60}, rng, 0.2f);
  Tensor<B> y(shape);
  ops::softmax_forward(B{}, y, x, mask, 0.3f);
  auto yi = x.clone();
  ops::softmax_forward(B{}, yi, yi, mask, 0.3f);
  check_close(yi, y, 0, 0, "in-place forward");

  auto const dy = random_tensor<B>(shape, rng);
  Tensor<B> dx(shape);
  ops::softmax_backward(B{}, dx, dy, y, 0.3f);
  auto const dx1 = dx.clone();
  ops::softmax_backward(B{}, dx, dy, y, 0.3f);
  check_close(dx, dx1, 0, 0, "dx after a second call (assign, not accumulate)");
  auto dxi = dy.clone();
  ops::softmax_backward(B{}, dxi, dxi, y, 0.3f);
  check_close(dxi, dx1, 0, 0, "in-place backward dx = dy");
  auto dyy = y.clone();
  ops::softmax_backward(B{}, dyy, dy, dyy, 0.3f);
  check_close(dyy, dx1, 0, 0, "in-place backward dx = y");
}

TEST_CASE_TEMPLATE("softmax: a mask view with stride-0 (expanded) leading dims", B, Cpu, Reference) {
  Rng rng(27);
  auto const x = random_tensor<B>(Shape{2, 3, 5}, rng);
  auto const m = random_mask<B>(Shape{3, 5}, rng, 0.3f);
  Tensor<B> y1(Shape{2, 3, 5}), y2(Shape{2, 3, 5});
  ops::softmax_forward(B{}, y1, x, m, 1.f);
  CView<B> const expanded(m.data(), Shape{2, 3, 5}, Strides{0, 5, 1});
  ops::softmax_forward(B{}, y2, x, expanded, 1.f);
  check_close(y2, y1, 0, 0, "expanded mask");
}

TEST_CASE("softmax: the CPU exp is accurate on (-inf, 0]") {
  double worst = 0;
  for (int i = 0; i <= 2000000; ++i) {
    float const x = -87.f * static_cast<float>(i) / 2000000.f;
    double const want = std::exp(static_cast<double>(x));
    double const got = cpu::detail::exp_nonpositive(x);
    worst = std::max(worst, std::abs(got - want) / want);
  }
  INFO("worst relative error ", worst);
  CHECK(worst < 3 * 0x1p-24);  // float's ulp is 2^-24..2^-23 relative: within about 2 ulp
  CHECK(cpu::detail::exp_nonpositive(0.f) == 1.f);
  CHECK(cpu::detail::exp_nonpositive(-kInf) == 0.f);
  CHECK(cpu::detail::exp_nonpositive(-88.f) == 0.f);
  CHECK(cpu::detail::exp_nonpositive(-1e30f) == 0.f);
  CHECK(std::isnan(cpu::detail::exp_nonpositive(std::numeric_limits<float>::quiet_NaN())));
}

TEST_CASE_TEMPLATE("softmax: shape and value errors name the shapes", B, Cpu, Reference) {
  Tensor<B> const x(Shape{2, 3, 5});
  Tensor<B> y(Shape{2, 3, 5}), y2(Shape{2, 5, 3});
  CHECK_THROWS_WITH_AS(ops::softmax_forward(B{}, y2, x, CView<B>{}, 1.f),
                       doctest::Contains("softmax_forward: x has shape [2, 3, 5] but y has shape [2, 5, 3]"),
                       ShapeError);
  Tensor<B> const m34(Shape{3, 4}), m4(Shape{1, 2, 3, 5}), m52(Shape{5, 3});
  CHECK_THROWS_WITH_AS(
      ops::softmax_forward(B{}, y, x, m34, 1.f),
      doctest::Contains("mask has shape [3, 4] which does not broadcast to x's shape [2, 3, 5]"), ShapeError);
  CHECK_THROWS_WITH_AS(
      ops::softmax_forward(B{}, y, x, m4, 1.f),
      doctest::Contains("mask has shape [1, 2, 3, 5] which does not broadcast to x's shape [2, 3, 5]"),
      ShapeError);
  CHECK_THROWS_WITH_AS(ops::softmax_forward(B{}, y, x, m52.cview().transposed(), 1.f),
                       doctest::Contains("mask (shape [3, 5]) must have stride 1 in its last dim, got 3"),
                       ShapeError);
  CHECK_THROWS_WITH_AS(ops::softmax_forward(B{}, y, y.view().transposed(), CView<B>{}, 1.f),
                       doctest::Contains("x (shape [2, 5, 3]) must be contiguous"), ShapeError);
  CHECK_THROWS_WITH_AS(ops::softmax_forward(B{}, y, x, y.view().slice(0, 1), 1.f),
                       doctest::Contains("mask (shape [1, 3, 5]) overlaps y (shape [2, 3, 5])"), ShapeError);
  CHECK_THROWS_WITH_AS(ops::softmax_forward(B{}, y, x, CView<B>{}, std::numeric_limits<float>::quiet_NaN()),
                       doctest::Contains("scale = nan must be finite"), ValueError);
  Tensor<B> big(Shape{31});
  CHECK_THROWS_WITH_AS(ops::softmax_forward(B{}, View<B>(big.data() + 1, Shape{2, 3, 5}),
                                            CView<B>(big.data(), Shape{2, 3, 5}), CView<B>{}, 1.f),
                       doctest::Contains("y (shape [2, 3, 5]) partially overlaps x"), ShapeError);

  Tensor<B> dx(Shape{2, 3, 5}), dy(Shape{2, 3, 5}), dy4(Shape{2, 3, 4});
  CHECK_THROWS_WITH_AS(
      ops::softmax_backward(B{}, dx, dy4, y, 1.f),
      doctest::Contains(
          "softmax_backward: dx has shape [2, 3, 5], dy has shape [2, 3, 4] and y has shape [2, 3, 5]"),
      ShapeError);
  CHECK_THROWS_WITH_AS(ops::softmax_backward(B{}, y2, dy, y, 1.f),
                       doctest::Contains("dx has shape [2, 5, 3], dy has shape [2, 3, 5]"), ShapeError);
  CHECK_THROWS_WITH_AS(ops::softmax_backward(B{}, dx, dy, y, kInf),
                       doctest::Contains("scale = inf must be finite"), ValueError);
  CHECK_THROWS_WITH_AS(ops::softmax_backward(B{}, dx, dy, CView<B>(nullptr, Shape{}), 1.f),
                       doctest::Contains("y has shape []; it must have rank >= 1"), ShapeError);
}
