// Learning-rate schedules: closed forms at chosen steps, constant evaluation (static_assert, with
// constexpr sqrt/cos that must agree with the library functions), fairseq's inverse_sqrt arithmetic,
// configuration errors, and runtime-name dispatch.
#include <lnformer/schedule/schedules.hpp>

#include <doctest/doctest.h>
#include <fmt/format.h>

#include <cmath>
#include <cstdint>
#include <limits>
#include <numbers>
#include <string>

using namespace lnformer;

namespace {

// |a - b| <= 1 ulp of float at b (the schedules compute in double and round once).
bool within_ulp(float a, double b) { return std::abs(static_cast<double>(a) - b) <= std::abs(b) * 6e-8 + 1e-30; }

}  // namespace

// --- constant evaluation ------------------------------------------------------------------------

static_assert(check_schedule<Constant>() && check_schedule<LinearWarmup>() && check_schedule<InverseSqrt>() &&
              check_schedule<WarmupLinearDecay>() && check_schedule<NoWarmupLinearDecay>() && check_schedule<Cosine>());
static_assert(Schedules::size == 6);

static_assert(Constant{.lr = 1e-3f}(1) == 1e-3f);
static_assert(LinearWarmup{.peak = 1e-3f, .warmup = 10}(0) == 0.f);
static_assert(LinearWarmup{.peak = 1e-3f, .warmup = 10}(10) == 1e-3f);
static_assert(LinearWarmup{.peak = 1e-3f, .warmup = 10}(1000) == 1e-3f);
static_assert(LinearWarmup{.peak = 1.f, .warmup = 4, .warmup_init = 0.5f}(2) == 0.75f);
static_assert(InverseSqrt{.peak = 5e-4f, .warmup = 4000}(4000) == 5e-4f);
static_assert(InverseSqrt{.peak = 5e-4f, .warmup = 4000}(2000) == 2.5e-4f);
static_assert(InverseSqrt{.peak = 1.f, .warmup = 4}(16) == 0.5f);     // sqrt(4 / 16)
static_assert(InverseSqrt{.peak = 1.f, .warmup = 100}(10000) == 0.1f);
static_assert(WarmupLinearDecay{.peak = 1.f, .warmup = 10, .total = 110}(10) == 1.f);
static_assert(WarmupLinearDecay{.peak = 1.f, .warmup = 10, .total = 110}(60) == 0.5f);
static_assert(WarmupLinearDecay{.peak = 1.f, .warmup = 10, .total = 110}(110) == 0.f);
static_assert(WarmupLinearDecay{.peak = 1.f, .warmup = 10, .total = 110}(500) == 0.f);
static_assert(NoWarmupLinearDecay{.peak = 3e-4f, .total = 100}(0) == 3e-4f);
static_assert(NoWarmupLinearDecay{.peak = 1.f, .total = 4}(1) == 0.75f);
static_assert(NoWarmupLinearDecay{.peak = 1.f, .total = 4}(4) == 0.f);
static_assert(Cosine{.peak = 1.f, .warmup = 0, .total = 100}(0) == 1.f);
static_assert(Cosine{.peak = 1.f, .warmup = 10, .total = 110, .min_lr = 0.1f}(110) == 0.1f);
static_assert(Cosine{.peak = 1.f, .warmup = 0, .total = 100}(50) > 0.4999999f &&
              Cosine{.peak = 1.f, .warmup = 0, .total = 100}(50) < 0.5000001f);

// The constexpr fallbacks (what clang uses during constant evaluation) against known values.
static_assert(detail::constexpr_sqrt(4.0) == 2.0 && detail::constexpr_sqrt(0.0) == 0.0);
static_assert(detail::constexpr_sqrt(2.0) - 1.4142135623730951 < 1e-15 &&
              detail::constexpr_sqrt(2.0) - 1.4142135623730951 > -1e-15);
static_assert(detail::constexpr_cos(0.0) == 1.0);
static_assert(detail::constexpr_cos(detail::kConstexprPi) + 1.0 < 1e-15);
static_assert(detail::constexpr_cos(detail::kConstexprPi / 3) - 0.5 < 1e-15 &&
              detail::constexpr_cos(detail::kConstexprPi / 3) - 0.5 > -1e-15);

// --- closed forms -------------------------------------------------------------------------------

TEST_CASE("InverseSqrt: fairseq's arithmetic, continuous at the end of warm-up") {
  InverseSqrt const s{.peak = 5e-4f, .warmup = 4000, .warmup_init = 1e-7f};
  s.validate();
  // fairseq inverse_sqrt: lr_step = (lr - init) / warmup; decay_factor = lr * warmup ** 0.5
  double const lr = 5e-4f, init = 1e-7f;
  double const lr_step = (lr - init) / 4000.0;
  double const decay_factor = lr * std::sqrt(4000.0);
  for (std::int64_t t : {0, 1, 2, 100, 3999, 4000, 4001, 10000, 123456, 10'000'000}) {
    CAPTURE(t);
    double const want = t < 4000 ? init + static_cast<double>(t) * lr_step : decay_factor / std::sqrt(double(t));
    CHECK(s(t) == static_cast<float>(want));
  }
  CHECK(s(0) == 1e-7f);
  CHECK(s(4000) == 5e-4f);
  CHECK(s(16000) == 2.5e-4f);  // peak * sqrt(4000 / 16000)
  // warm-up increases, decay decreases
  for (std::int64_t t = 1; t < 8000; ++t) {
    if (t < 4000) CHECK(s(t) > s(t - 1));
    if (t > 4000) CHECK(s(t) < s(t - 1));
  }
}

TEST_CASE("LinearWarmup, WarmupLinearDecay, NoWarmupLinearDecay at chosen steps") {
  LinearWarmup const w{.peak = 3e-4f, .warmup = 7};
  for (std::int64_t t = 0; t <= 20; ++t)
    CHECK(within_ulp(w(t), t < 7 ? 3e-4f * static_cast<double>(t) / 7.0 : static_cast<double>(3e-4f)));

  WarmupLinearDecay const b{.peak = 1e-4f, .warmup = 10000, .total = 1'000'000};
  double const peak = 1e-4f;
  CHECK(b(0) == 0.f);
  CHECK(within_ulp(b(1), peak / 10000));
  CHECK(within_ulp(b(5000), peak / 2));
  CHECK(b(10000) == 1e-4f);
  CHECK(within_ulp(b(10001), peak * (1'000'000.0 - 10001.0) / 990000.0));
  CHECK(within_ulp(b(505000), peak / 2));
  CHECK(b(1'000'000) == 0.f);
  CHECK(b(2'000'000) == 0.f);

  NoWarmupLinearDecay const x{.peak = 3e-4f, .total = 1000};
  double const p3 = 3e-4f;
  CHECK(x(0) == 3e-4f);
  CHECK(within_ulp(x(1), p3 * 999.0 / 1000.0));
  CHECK(within_ulp(x(250), p3 * 0.75));
  CHECK(x(1000) == 0.f);
  CHECK(x(5000) == 0.f);
}

TEST_CASE("Cosine: warm-up, half cosine to min_lr; constant and runtime evaluation agree") {
  Cosine const c{.peak = 1e-3f, .warmup = 100, .total = 1100, .min_lr = 1e-5f, .warmup_init = 1e-6f};
  double const peak = 1e-3f, lo = 1e-5f, init = 1e-6f;
  CHECK(c(0) == 1e-6f);
  CHECK(within_ulp(c(50), init + 50 * ((peak - init) / 100)));
  CHECK(c(100) == 1e-3f);
  for (std::int64_t t : {101, 350, 600, 850, 1099}) {
    CAPTURE(t);
    double const p = static_cast<double>(t - 100) / 1000.0;
    CHECK(within_ulp(c(t), lo + (peak - lo) * 0.5 * (1 + std::cos(std::numbers::pi * p))));
  }
  CHECK(within_ulp(c(600), (peak + lo) / 2));
  CHECK(c(1100) == 1e-5f);
  CHECK(c(99999) == 1e-5f);

  // Compile-time values (series cos / Newton sqrt under clang) against run-time ones (libm).
  constexpr Cosine cc{.peak = 1e-3f, .warmup = 100, .total = 1100, .min_lr = 1e-5f};
  constexpr float k1 = cc(237), k2 = cc(600), k3 = cc(1001);
  Cosine const rc = cc;  // a runtime copy
  std::int64_t volatile t1 = 237, t2 = 600, t3 = 1001;
  CHECK(std::abs(k1 - rc(t1)) <= std::abs(k1) * 1.2e-7f);
  CHECK(std::abs(k2 - rc(t2)) <= std::abs(k2) * 1.2e-7f);
  CHECK(std::abs(k3 - rc(t3)) <= std::abs(k3) * 1.2e-7f);
  constexpr InverseSqrt ci{.peak = 7e-4f, .warmup = 4000};
  constexpr float i1 = ci(4321), i2 = ci(99991);
  std::int64_t volatile u1 = 4321, u2 = 99991;
  CHECK(std::abs(i1 - ci(u1)) <= i1 * 1.2e-7f);
  CHECK(std::abs(i2 - ci(u2)) <= i2 * 1.2e-7f);
}

// --- errors and dispatch ------------------------------------------------------------------------

TEST_CASE("bad configurations and negative steps are ValueErrors naming the field") {
  auto bad = [](auto const& s, char const* what) {
    CHECK_THROWS_WITH_AS(s.validate(), doctest::Contains(what), ValueError);
    CHECK_THROWS_WITH_AS((void)s(1), doctest::Contains(what), ValueError);  // operator() validates too
  };
  bad(Constant{.lr = -1e-3f}, "constant schedule: lr = -0.001 must be finite and >= 0");
  bad(Constant{.lr = std::numeric_limits<float>::quiet_NaN()}, "lr = nan must be finite");
  bad(LinearWarmup{.warmup = -1}, "linear_warmup schedule: warmup = -1 must be >= 0");
  bad(LinearWarmup{.warmup_init = -1.f}, "linear_warmup schedule: warmup_init = -1 must be finite and >= 0");
  bad(InverseSqrt{.warmup = 0}, "inverse_sqrt schedule: warmup = 0 must be >= 1");
  bad(InverseSqrt{.peak = std::numeric_limits<float>::infinity()}, "inverse_sqrt schedule: peak = inf");
  bad(WarmupLinearDecay{}, "warmup_linear_decay schedule: total = 0 must be greater than warmup = 4000");
  bad(WarmupLinearDecay{.warmup = 10, .total = 10}, "total = 10 must be greater than warmup = 10");
  bad(NoWarmupLinearDecay{}, "no_warmup_linear_decay schedule: total = 0 must be >= 1");
  bad(Cosine{.total = 100}, "cosine schedule: total = 100 must be greater than warmup = 4000");
  bad(Cosine{.peak = 1e-3f, .warmup = 0, .total = 10, .min_lr = 1e-2f}, "min_lr = 0.01 must not exceed peak = 0.001");
  CHECK_THROWS_WITH_AS((void)InverseSqrt{}(-1),
                       doctest::Contains("inverse_sqrt schedule: step -1 is negative; steps count updates from 1"),
                       ValueError);
  CHECK_NOTHROW(InverseSqrt{}.validate());
  CHECK_NOTHROW(LinearWarmup{.warmup = 0}.validate());
  CHECK(LinearWarmup{.peak = 1.f, .warmup = 0}(0) == 1.f);
}

TEST_CASE("runtime names select schedules; unknown names list the valid ones") {
  CHECK(type_names(Schedules{}) ==
        "constant, linear_warmup, inverse_sqrt, warmup_linear_decay, no_warmup_linear_decay, cosine");
  float const lr = dispatch(
      Schedules{}, "inverse_sqrt",
      [](auto tag) {
        using S = typename decltype(tag)::type;
        S s{};
        if constexpr (requires { s.total; }) s.total = 100'000;
        return s(16000);
      },
      "schedule");
  CHECK(lr == 2.5e-4f);
  CHECK_THROWS_WITH_AS(dispatch(Schedules{}, "step", [](auto) {}, "schedule"),
                       doctest::Contains("unknown schedule 'step'; valid: constant, linear_warmup, inverse_sqrt"),
                       ValueError);
}
