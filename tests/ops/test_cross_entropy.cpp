// Label-smoothed cross-entropy (fairseq's definition): forward values, gradient, padding, errors.
#include <lnformer/backend/cpu/cpu.hpp>
#include <lnformer/backend/cpu/cross_entropy.hpp>
#include <lnformer/backend/reference/cross_entropy.hpp>
#include <lnformer/backend/reference/reference.hpp>

#include "ops/fixtures_cross_entropy.hpp"
#include "support.hpp"

#include <doctest/doctest.h>

#include <cmath>
#include <cstdint>
#include <limits>
#include <vector>

using namespace lnformer;
using namespace lnformer::test;

TEST_CASE_TEMPLATE("cross_entropy: a V = 3 case computed by hand", B, Cpu, Reference) {
  // Rows: logits [1, 2, 3] with target 0; the same logits with target 2; a padding row (target 7 =
  // padding_idx, outside [0, V) as PyTorch's ignore_index may be).
  //   lse = log(e + e^2 + e^3) = 3 + log(1 + e^-1 + e^-2) = 3.40760596444438
  //   nll(t = 0) = lse - 1 = 2.40760596444438,  nll(t = 2) = lse - 3 = 0.40760596444438
  //   smooth = sum_v (lse - x_v) = 3 lse - 6 = 4.22281789333314
  //   eps = 0.1, V = 3: eps_i = 0.05, weight on nll 1 - 0.1 - 0.05 = 0.85
  //   loss(t = 0) = 0.85 * 2.40760596444438 + 0.05 * 4.22281789333314 = 2.25760596444438
  //   loss(t = 2) = 0.85 * 0.40760596444438 + 0.05 * 4.22281789333314 = 0.55760596444438
  //   p = softmax = [0.0900305731703805, 0.244728471054798, 0.665240955774822]
  //   dlogits(t = 0) = p - 0.85 [1, 0, 0] - 0.05 = [-0.80996942683, 0.19472847105, 0.61524095577]
  std::vector<float> const x{1, 2, 3, 1, 2, 3, 1, 2, 3};
  Tensor<B> const logits({3, 3}, std::span<float const>(x));
  auto const targets = make_targets<B>({0, 2, 7});
  XentForward<B> f(3);
  f.run(logits, targets, 0.1f, 7);
  CHECK(f.lse(0) == doctest::Approx(3.40760596444438).epsilon(1e-6));
  CHECK(f.lse(2) == doctest::Approx(3.40760596444438).epsilon(1e-6));  // written for padding rows too
  CHECK(f.nll(0) == doctest::Approx(2.40760596444438).epsilon(1e-6));
  CHECK(f.nll(1) == doctest::Approx(0.40760596444438).epsilon(1e-6));
  CHECK(f.loss(0) == doctest::Approx(2.25760596444438).epsilon(1e-6));
  CHECK(f.loss(1) == doctest::Approx(0.55760596444438).epsilon(1e-6));
  CHECK(f.loss(2) == 0.f);
  CHECK(f.nll(2) == 0.f);

  std::vector<float> const ones{1, 1, 1};
  Tensor<B> const dloss({3}, std::span<float const>(ones));
  Tensor<B> dlogits({3, 3});
  ops::cross_entropy_backward(B{}, dlogits, dloss, logits, f.lse, targets, 0.1f, 7);
  CHECK(dlogits(0, 0) == doctest::Approx(-0.8099694268296196).epsilon(1e-6));
  CHECK(dlogits(0, 1) == doctest::Approx(0.19472847105479768).epsilon(1e-6));
  CHECK(dlogits(0, 2) == doctest::Approx(0.615240955774822).epsilon(1e-6));
  for (int k = 0; k < 3; ++k) CHECK(dlogits(2, k) == 0.f);

  // eps = 0: plain cross-entropy, loss == nll.
  f.run(logits, targets, 0.f, 7);
  CHECK(f.loss(0) == doctest::Approx(2.40760596444438).epsilon(1e-6));
  CHECK(f.loss(1) == f.nll(1));
}

TEST_CASE("cross_entropy: Cpu agrees with Reference (forward and backward, padding rows)") {
  Rng rng(21);
  for (std::int64_t N : {1, 3, 17, 64}) {
    for (std::int64_t V : {2, 3, 33, 257, 1000}) {
      for (float eps : {0.f, 0.1f}) {
        for (float range : {5.f, 30.f}) {
          CAPTURE(N);
          CAPTURE(V);
          CAPTURE(eps);
          CAPTURE(range);
          std::int32_t const pad = 1;
          auto const logits = random_tensor<Reference>({N, V}, rng, -range, range);
          auto const targets = make_targets<Reference>(random_targets(N, V, rng, pad));
          auto const dloss = random_tensor<Reference>({N}, rng, 0.5f, 2.f);
          XentForward<Reference> ref(N);
          ref.run(logits, targets, eps, pad);
          Tensor<Reference> dref({N, V});
          ops::cross_entropy_backward(Reference{}, dref, dloss, logits, ref.lse, targets, eps, pad);

          auto const logits_c = to_backend<Cpu>(logits);
          auto const targets_c = to_backend<Cpu>(targets);
          XentForward<Cpu> cpu(N);
          cpu.run(logits_c, targets_c, eps, pad);
          check_close(cpu.lse, ref.lse, 1e-6, 1e-6, "lse");
          check_close(cpu.nll, ref.nll, 1e-5, 1e-5, "nll");
          check_close(cpu.loss, ref.loss, 1e-5, 1e-5, "loss");
          Tensor<Cpu> dcpu({N, V});
          ops::cross_entropy_backward(Cpu{}, dcpu, to_backend<Cpu>(dloss), logits_c, cpu.lse, targets_c, eps,
                                      pad);
          check_close(dcpu, dref, 1e-5, 1e-6, "dlogits");
        }
      }
    }
  }
}

TEST_CASE_TEMPLATE(
    "cross_entropy: gradient rows sum to zero; padding rows are zero; eps = 0 gives loss = nll", B, Cpu,
    Reference) {
  Rng rng(22);
  std::int64_t const N = 9, V = 41;
  auto const logits = random_tensor<B>({N, V}, rng, -4.f, 4.f);
  auto const targets = make_targets<B>(random_targets(N, V, rng, 3));
  std::vector<float> const ones(static_cast<std::size_t>(N), 1.f);
  Tensor<B> const dloss({N}, std::span<float const>(ones));
  XentForward<B> f(N);
  f.run(logits, targets, 0.1f, 3);
  Tensor<B> dlogits({N, V});
  ops::cross_entropy_backward(B{}, dlogits, dloss, logits, f.lse, targets, 0.1f, 3);
  for (std::int64_t n = 0; n < N; ++n) {
    double s = 0;
    for (std::int64_t k = 0; k < V; ++k) s += dlogits(n, k);
    CHECK(std::abs(s) < 1e-5);  // sum_k p_k - (1 - eps - eps_i) - V eps_i = 0
    if (targets.data()[n] == 3) {
      CHECK(f.loss(n) == 0.f);
      CHECK(f.nll(n) == 0.f);
      for (std::int64_t k = 0; k < V; ++k) REQUIRE(dlogits(n, k) == 0.f);
    } else {
      CHECK(f.loss(n) > 0.f);
    }
  }
  f.run(logits, targets, 0.f, 3);
  for (std::int64_t n = 0; n < N; ++n) CHECK(f.loss(n) == doctest::Approx(f.nll(n)).epsilon(1e-6));
}

TEST_CASE("cross_entropy: finite-difference gradient wrt logits (eps 0 and 0.1, padding rows)") {
  Rng rng(23);
  for (std::int64_t V : {2, 7, 33}) {
    for (float eps : {0.f, 0.1f}) {
      CAPTURE(V);
      CAPTURE(eps);
      std::int64_t const N = 6;
      std::int32_t const pad = 0;
      auto logits = random_tensor<Cpu>({N, V}, rng, -3.f, 3.f);
      auto const targets = make_targets<Cpu>(random_targets(N, V, rng, pad));
      auto const w = random_tensor<Cpu>({N}, rng, -2.f, 2.f);  // upstream gradient, dloss = w
      XentForward<Cpu> f(N);
      auto loss = [&] {
        f.run(logits, targets, eps, pad);
        return weighted_sum<Cpu>(f.loss.cview(), w.cview());
      };
      loss();
      Tensor<Cpu> dlogits({N, V});
      ops::cross_entropy_backward(Cpu{}, dlogits, w, logits, f.lse, targets, eps, pad);
      check_gradient("logits", logits, dlogits, loss, 1e-2, 1e-2, 1e-4);
    }
  }
}

TEST_CASE("cross_entropy: logits of magnitude 1e4 stay finite and agree with Reference") {
  Rng rng(24);
  std::int64_t const N = 17, V = 1000;
  for (float eps : {0.f, 0.1f}) {
    for (int kind = 0; kind < 3; ++kind) {
      CAPTURE(eps);
      CAPTURE(kind);
      auto const logits = logits_near_1e4<Reference>(N, V, kind, rng);
      auto const targets = make_targets<Reference>(random_targets(N, V, rng, 2));
      auto const dloss = random_tensor<Reference>({N}, rng, 0.5f, 2.f);
      XentForward<Reference> ref(N);
      ref.run(logits, targets, eps, 2);
      XentForward<Cpu> cpu(N);
      auto const logits_c = to_backend<Cpu>(logits);
      auto const targets_c = to_backend<Cpu>(targets);
      cpu.run(logits_c, targets_c, eps, 2);
      for (float v : cpu.loss.to_host()) REQUIRE(std::isfinite(v));
      for (float v : cpu.lse.to_host()) REQUIRE(std::isfinite(v));
      check_close(cpu.lse, ref.lse, 1e-6, 0, "lse");
      check_close(cpu.nll, ref.nll, 1e-5, 1e-5, "nll");
      check_close(cpu.loss, ref.loss, 1e-5, 1e-5, "loss");
      // Both backwards from the same cached lse (an ulp of lse at 1e4 is 1e-3, which moves p by 0.1%).
      Tensor<Reference> dref({N, V});
      ops::cross_entropy_backward(Reference{}, dref, dloss, logits, ref.lse, targets, eps, 2);
      Tensor<Cpu> dcpu({N, V});
      ops::cross_entropy_backward(Cpu{}, dcpu, to_backend<Cpu>(dloss), logits_c, to_backend<Cpu>(ref.lse),
                                  targets_c, eps, 2);
      for (float v : dcpu.to_host()) REQUIRE(std::isfinite(v));
      check_close(dcpu, dref, 1e-5, 1e-6, "dlogits");
    }
  }
}

TEST_CASE_TEMPLATE("cross_entropy: backward assigns, may run in place; nll is optional", B, Cpu, Reference) {
  Rng rng(25);
  std::int64_t const N = 5, V = 300;
  auto const logits = random_tensor<B>({N, V}, rng, -5.f, 5.f);
  auto const targets = make_targets<B>(random_targets(N, V, rng, 4));
  auto const dloss = random_tensor<B>({N}, rng);
  XentForward<B> f(N);
  f.run(logits, targets, 0.1f, 4);

  Tensor<B> once({N, V});
  ops::cross_entropy_backward(B{}, once, dloss, logits, f.lse, targets, 0.1f, 4);
  auto twice = random_tensor<B>({N, V}, rng, 50.f, 60.f);  // stale contents are overwritten
  ops::cross_entropy_backward(B{}, twice, dloss, logits, f.lse, targets, 0.1f, 4);
  ops::cross_entropy_backward(B{}, twice, dloss, logits, f.lse, targets, 0.1f, 4);
  check_close(twice, once, 0, 0, "dlogits after two calls");

  auto in_place = logits.clone();
  ops::cross_entropy_backward(B{}, in_place, dloss, in_place, f.lse, targets, 0.1f, 4);
  check_close(in_place, once, 0, 0, "dlogits computed in place over logits");

  Tensor<B> loss({N}), lse({N});
  ops::cross_entropy_forward(B{}, loss, View<B>{}, lse, logits, targets, 0.1f, 4);
  check_close(loss, f.loss, 0, 0, "loss without nll");
  check_close(lse, f.lse, 0, 0, "lse without nll");
}

TEST_CASE_TEMPLATE("cross_entropy: a NaN logit poisons its row, not the others", B, Cpu, Reference) {
  std::int64_t const N = 3, V = 40;
  Rng rng(26);
  auto logits = random_tensor<B>({N, V}, rng);
  logits(1, 17) = std::numeric_limits<float>::quiet_NaN();
  auto const targets = make_targets<B>({0, 0, 0});
  std::vector<float> const ones(3, 1.f);
  Tensor<B> const dloss({N}, std::span<float const>(ones));
  for (float eps : {0.f, 0.1f}) {
    XentForward<B> f(N);
    f.run(logits, targets, eps, -1);
    CHECK(std::isnan(f.lse(1)));
    CHECK(std::isnan(f.loss(1)));
    CHECK(std::isnan(f.nll(1)));
    CHECK(std::isfinite(f.loss(0)));
    CHECK(std::isfinite(f.loss(2)));
    Tensor<B> dlogits({N, V});
    ops::cross_entropy_backward(B{}, dlogits, dloss, logits, f.lse, targets, eps, -1);
    CHECK(std::isnan(dlogits(1, 0)));
    CHECK(std::isfinite(dlogits(0, 0)));
    CHECK(std::isfinite(dlogits(2, 5)));
  }
}

TEST_CASE_TEMPLATE("cross_entropy: bad eps and targets are ValueErrors; nothing is written", B, Cpu,
                   Reference) {
  auto const logits = Tensor<B>({3, 4});
  auto const good = make_targets<B>({0, 3, 1});
  XentForward<B> f(3);
  f.loss.data()[0] = 42.f;
  for (float eps : {1.f, -0.1f, 1.5f, std::numeric_limits<float>::quiet_NaN()})
    CHECK_THROWS_WITH_AS(f.run(logits, good, eps, -1), doctest::Contains("must be in [0, 1)"), ValueError);
  CHECK_THROWS_WITH_AS(f.run(logits, good, 1.f, -1),
                       doctest::Contains("cross_entropy_forward: label smoothing eps = 1 must be in [0, 1)"),
                       ValueError);
  auto const out_of_range = make_targets<B>({0, 4, 1});
  CHECK_THROWS_WITH_AS(
      f.run(logits, out_of_range, 0.1f, -1),
      doctest::Contains("cross_entropy_forward: target 4 in row 1 is out of range [0, V = 4) and is not "
                        "padding_idx -1"),
      ValueError);
  auto const negative = make_targets<B>({0, 1, -1});
  CHECK_THROWS_WITH_AS(f.run(logits, negative, 0.1f, 2), doctest::Contains("target -1 in row 2"), ValueError);
  CHECK(f.loss.data()[0] == 42.f);
  // A target equal to padding_idx is fine wherever padding_idx lies (PyTorch's ignore_index = -100).
  auto const ignored = make_targets<B>({0, -100, 1});
  CHECK_NOTHROW(f.run(logits, ignored, 0.1f, -100));
  CHECK(f.loss(1) == 0.f);

  // V = 1: eps_i = eps / (V - 1) is undefined for eps > 0; eps = 0 is a (trivial) valid loss.
  auto const one_class = Tensor<B>({3, 1});
  auto const zeros = make_targets<B>({0, 0, 0});
  CHECK_THROWS_WITH_AS(f.run(one_class, zeros, 0.1f, -1),
                       doctest::Contains("label smoothing eps = 0.1 > 0 needs V >= 2 classes"), ValueError);
  CHECK_NOTHROW(f.run(one_class, zeros, 0.f, -1));
  CHECK(f.loss(2) == 0.f);

  Tensor<B> dlogits({3, 4});
  Tensor<B> const dloss({3});
  CHECK_THROWS_WITH_AS(
      ops::cross_entropy_backward(B{}, dlogits, dloss, logits, f.lse, out_of_range, 0.1f, -1),
      doctest::Contains("cross_entropy_backward: target 4 in row 1"), ValueError);
  CHECK_THROWS_WITH_AS(ops::cross_entropy_backward(B{}, dlogits, dloss, logits, f.lse, good, 1.f, -1),
                       doctest::Contains("cross_entropy_backward: label smoothing eps = 1"), ValueError);
}

TEST_CASE_TEMPLATE("cross_entropy: shape errors name the shapes", B, Cpu, Reference) {
  auto const logits = Tensor<B>({3, 5});
  auto const targets = make_targets<B>({0, 1, 2});
  XentForward<B> f(3);
  auto const short_targets = make_targets<B>({0, 1, 2, 3});
  CHECK_THROWS_WITH_AS(
      f.run(logits, short_targets, 0.f, -1),
      doctest::Contains("cross_entropy_forward: targets has shape [4] but logits has shape [3, 5]; "
                        "targets must be [3]"),
      ShapeError);
  auto const flat = Tensor<B>({15});
  CHECK_THROWS_WITH_AS(f.run(flat, targets, 0.f, -1),
                       doctest::Contains("logits has shape [15]; it must be [N, V]"), ShapeError);
  Tensor<B> loss4({4}), lse({3}), nll({3});
  CHECK_THROWS_WITH_AS(
      ops::cross_entropy_forward(B{}, loss4, nll, lse, logits, targets, 0.f, -1),
      doctest::Contains("loss has shape [4] but logits has shape [3, 5]; loss must be a contiguous [3]"),
      ShapeError);
  Tensor<B> loss({3}), lse2({3, 1});
  CHECK_THROWS_WITH_AS(ops::cross_entropy_forward(B{}, loss, nll, lse2, logits, targets, 0.f, -1),
                       doctest::Contains("lse has shape [3, 1]"), ShapeError);
  auto const wide = Tensor<B>({5, 3});
  CHECK_THROWS_WITH_AS(f.run(wide.view().transposed(), targets, 0.f, -1),
                       doctest::Contains("logits (shape [3, 5]) and targets (shape [3]) must be contiguous"),
                       ShapeError);

  Tensor<B> dlogits({3, 4});
  Tensor<B> const dloss({3});
  CHECK_THROWS_WITH_AS(
      ops::cross_entropy_backward(B{}, dlogits, dloss, logits, lse, targets, 0.f, -1),
      doctest::Contains("cross_entropy_backward: dlogits has shape [3, 4] but logits has shape [3, 5]"),
      ShapeError);
  Tensor<B> dlogits_ok({3, 5});
  Tensor<B> const dloss_bad({2});
  CHECK_THROWS_WITH_AS(ops::cross_entropy_backward(B{}, dlogits_ok, dloss_bad, logits, lse, targets, 0.f, -1),
                       doctest::Contains("dloss has shape [2] but logits has shape [3, 5]"), ShapeError);
  // N = 0 is a valid (empty) batch.
  auto const none = Tensor<B>({0, 5});
  auto const no_targets = make_targets<B>({});
  XentForward<B> empty(0);
  CHECK_NOTHROW(empty.run(none, no_targets, 0.1f, -1));
}

TEST_CASE(
    "cross_entropy: the CPU's vectorisable exp has relative error < 1e-7 on [-87.3, 0.5] and flushes below") {
  using cpu::detail::xent::exp_nonpos;
  double worst = 0;
  float worst_x = 0;
  for (float x = -87.3f; x <= 0.5f; x += 7.3e-4f) {
    double const e = std::exp(static_cast<double>(x));
    double const rel = std::abs(exp_nonpos(x) - e) / e;
    if (rel > worst) worst = rel, worst_x = x;
  }
  INFO("worst relative error ", worst, " at x = ", worst_x);
  CHECK(worst < 1e-7);  // under 2 ulp anywhere in a binade (an ulp is 2^-24 to 2^-23 relative)
  CHECK(exp_nonpos(0.f) == 1.f);
  CHECK(exp_nonpos(-88.f) == 0.f);
  CHECK(exp_nonpos(-1e4f) == 0.f);
  CHECK(exp_nonpos(-std::numeric_limits<float>::infinity()) == 0.f);
  CHECK(exp_nonpos(-std::numeric_limits<float>::max()) == 0.f);
}
