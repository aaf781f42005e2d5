// Activations: ReLU and exact (erf) GELU, forward and backward, Cpu (oneDNN) against Reference.
#include <lnformer/backend/cpu/activation.hpp>
#include <lnformer/backend/reference/activation.hpp>

#include "support.hpp"

#include <doctest/doctest.h>

#include <array>
#include <vector>

using namespace lnformer;
using namespace lnformer::test;

namespace {

std::vector<Shape> const kShapes = {Shape{1},    Shape{3},    Shape{17},    Shape{33},       Shape{257},
                                    Shape{4099}, Shape{2, 3}, Shape{5, 17}, Shape{3, 7, 33}, Shape{301, 257}};
constexpr std::array kActs = {Activation::relu, Activation::gelu};

// x in [-4, 4] with no element within 0.05 of 0, so that a finite difference of ReLU never straddles the
// kink.
Tensor<Cpu> away_from_zero(Shape s, Rng& rng) {
  auto x = random_tensor<Cpu>(s, rng, -4.f, 4.f);
  for (std::int64_t i = 0; i < x.numel(); ++i)
    if (std::abs(x.data()[i]) < 0.05f) x.data()[i] += x.data()[i] < 0 ? -0.05f : 0.05f;
  return x;
}

}  // namespace

TEST_CASE("Activation names") {
  CHECK(ops::name(Activation::relu) == "relu");
  CHECK(ops::name(Activation::gelu) == "gelu");
  CHECK(ops::name(ops::Activation::gelu) == "gelu");  // the same type under lnformer::ops
}

TEST_CASE("activation_forward and activation_backward: Cpu agrees with Reference") {
  Rng rng(11);
  for (auto act : kActs) {
    for (auto const& s : kShapes) {
      CAPTURE(ops::name(act));
      CAPTURE(s.str());
      auto const x = random_tensor<Cpu>(s, rng, -5.f, 5.f);
      auto const dy = random_tensor<Cpu>(s, rng);
      auto const xr = to_backend<Reference>(x);
      auto const dyr = to_backend<Reference>(dy);

      Tensor<Cpu> y(s);
      Tensor<Reference> yr(s);
      ops::activation_forward(Cpu{}, y, x, act);
      ops::activation_forward(Reference{}, yr, xr, act);
      check_close(y, yr, 1e-5, 1e-6, "y");

      Tensor<Cpu> dx(s);
      Tensor<Reference> dxr(s);
      ops::activation_backward(Cpu{}, dx, dy, x, act);
      ops::activation_backward(Reference{}, dxr, dyr, xr, act);
      check_close(dx, dxr, 1e-5, 1e-6, "dx");
    }
  }
}

TEST_CASE("GELU is the exact erf form and ReLU'(0) = 0") {
  // Values of 0.5 x (1 + erf(x / sqrt 2)) and its derivative in double (torch.nn.functional.gelu's
  // default gives the same to float precision; the tanh approximation differs in the 4th digit).
  std::vector<float> const xs{-3.f, -1.f, -0.5f, 0.f, 0.5f, 1.f, 2.f};
  std::vector<float> const gelu{-0.00404969409489031f, -0.15865525393145707f, -0.15426876936299344f, 0.f,
                                0.34573123063700656f,  0.8413447460685429f,   1.9544997361036416f};
  std::vector<float> const dgelu{-0.011945647204183918f, -0.08331547058768629f, 0.13250487534383712f, 0.5f,
                                 0.8674951246561629f,    1.0833154705876864f,   1.085231801078197f};
  Shape const s{static_cast<std::int64_t>(xs.size())};
  std::vector<float> const ones(xs.size(), 1.f);
  Tensor<Cpu> const x(s, std::span<float const>(xs)), dy(s, std::span<float const>(ones));
  Tensor<Cpu> const want_y(s, std::span<float const>(gelu)), want_dx(s, std::span<float const>(dgelu));
  Tensor<Cpu> y(s), dx(s);
  ops::activation_forward(Cpu{}, y, x, Activation::gelu);
  ops::activation_backward(Cpu{}, dx, dy, x, Activation::gelu);
  check_close(y, want_y, 1e-5, 1e-6, "gelu");  // oneDNN's erf: ~2e-7 absolute error in the tail
  check_close(dx, want_dx, 1e-5, 1e-6, "gelu'");
  auto const xr = to_backend<Reference>(x);
  auto const dyr = to_backend<Reference>(dy);
  Tensor<Reference> yr(s), dxr(s);
  ops::activation_forward(Reference{}, yr, xr, Activation::gelu);
  ops::activation_backward(Reference{}, dxr, dyr, xr, Activation::gelu);
  check_close(yr, want_y, 1e-6, 1e-8, "reference gelu");
  check_close(dxr, want_dx, 1e-6, 1e-8, "reference gelu'");

  // ReLU at exactly 0: value 0, derivative 0 (PyTorch's convention).
  ops::activation_forward(Cpu{}, y, x, Activation::relu);
  ops::activation_backward(Cpu{}, dx, dy, x, Activation::relu);
  ops::activation_backward(Reference{}, dxr, dyr, xr, Activation::relu);
  CHECK(y(3) == 0.f);
  CHECK(dx(3) == 0.f);
  CHECK(dxr(3) == 0.f);
  CHECK(dx(4) == 1.f);
  CHECK(dx(2) == 0.f);
  CHECK(y(6) == 2.f);
  CHECK(y(0) == 0.f);
}

TEST_CASE("activation_backward matches central finite differences") {
  Rng rng(12);
  for (auto act : kActs) {
    for (auto const& s : {Shape{1}, Shape{17}, Shape{4, 33}}) {
      CAPTURE(ops::name(act));
      CAPTURE(s.str());
      auto x = away_from_zero(s, rng);
      auto const w = random_tensor<Cpu>(s, rng);
      Tensor<Cpu> y(s), dx(s);
      auto loss = [&] {
        ops::activation_forward(Cpu{}, y, x, act);
        return weighted_sum<Cpu>(y, w);
      };
      ops::activation_backward(Cpu{}, dx, w, x, act);
      // h = 1e-2 stays on one side of ReLU's kink; GELU's truncation error h²/6 f''' is below 1e-4.
      check_gradient("x", x, dx, loss, 1e-2, 1e-3, 1e-4);
    }
  }
}

TEST_CASE("activation_backward assigns; forward and backward work in place") {
  Rng rng(13);
  Shape const s{37, 41};
  for (auto act : kActs) {
    CAPTURE(ops::name(act));
    auto const x = random_tensor<Cpu>(s, rng, -3.f, 3.f);
    auto const dy = random_tensor<Cpu>(s, rng);
    Tensor<Cpu> y(s), dx(s);
    ops::activation_forward(Cpu{}, y, x, act);
    ops::activation_backward(Cpu{}, dx, dy, x, act);
    auto const first = dx.clone();
    ops::activation_backward(Cpu{}, dx, dy, x, act);  // assign: a second call gives the same, not twice
    check_close(dx, first, 0, 0, "dx after a second call");

    auto inplace = x.clone();
    ops::activation_forward(Cpu{}, inplace, inplace, act);
    check_close(inplace, y, 0, 0, "y computed in place over x");
    auto grad = dy.clone();
    ops::activation_backward(Cpu{}, grad, grad, x, act);
    check_close(grad, dx, 0, 0, "dx computed in place over dy");

    auto const xr = to_backend<Reference>(x);
    auto const dyr = to_backend<Reference>(dy);
    auto inplace_r = xr.clone();
    ops::activation_forward(Reference{}, inplace_r, inplace_r, act);
    check_close(inplace_r, y, 1e-5, 1e-6, "reference y in place");
    auto grad_r = dyr.clone();
    ops::activation_backward(Reference{}, grad_r, grad_r, xr, act);
    check_close(grad_r, dx, 1e-5, 1e-6, "reference dx in place");
  }
}

TEST_CASE("activation primitives are cached per (kind, size)") {
  Rng rng(14);
  auto const x = random_tensor<Cpu>(Shape{3, 5}, rng);
  Tensor<Cpu> y(Shape{3, 5}), dx(Shape{3, 5});
  ops::activation_forward(Cpu{}, y, x, Activation::gelu);
  ops::activation_backward(Cpu{}, dx, x, x, Activation::gelu);
  auto const n = cpu::context().cached_primitives();
  for (int i = 0; i < 3; ++i) {
    ops::activation_forward(Cpu{}, y, x, Activation::gelu);
    ops::activation_backward(Cpu{}, dx, x, x, Activation::gelu);
    ops::activation_forward(Cpu{}, y.view().reshape(Shape{15}), x.view().reshape(Shape{15}),
                            Activation::gelu);
  }
  CHECK(cpu::context().cached_primitives() == n);  // same element count, same primitive
  ops::activation_forward(Cpu{}, y, x, Activation::relu);
  CHECK(cpu::context().cached_primitives() == n + 1);
}

TEST_CASE("activation shape errors name the shapes") {
  Tensor<Cpu> y(Shape{2, 3}), x(Shape{3, 2}), dy(Shape{2, 3});
  CHECK_THROWS_WITH_AS(
      ops::activation_forward(Cpu{}, y, x, Activation::relu),
      doctest::Contains("activation_forward(relu): y has shape [2, 3] but x has shape [3, 2]"), ShapeError);
  CHECK_THROWS_WITH_AS(ops::activation_backward(Cpu{}, y, dy, x, Activation::gelu),
                       doctest::Contains("dx has shape [2, 3], dy has shape [2, 3] and x has shape [3, 2]"),
                       ShapeError);
  CHECK_THROWS_WITH_AS(ops::activation_forward(Cpu{}, y, x.view().transposed(), Activation::gelu),
                       doctest::Contains("must be contiguous"), ShapeError);
  Tensor<Reference> yr(Shape{4}), xr(Shape{5});
  CHECK_THROWS_WITH_AS(ops::activation_forward(Reference{}, yr, xr, Activation::gelu),
                       doctest::Contains("y has shape [4] but x has shape [5]"), ShapeError);
}
