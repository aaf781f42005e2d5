#pragma once
// Shared test helpers: random tensors, tolerant comparisons with informative failure messages, and
// a central finite-difference gradient checker.

#include <lnformer/core/rng.hpp>
#include <lnformer/core/tensor.hpp>

#include <doctest/doctest.h>
#include <fmt/format.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <functional>
#include <limits>
#include <string>
#include <tuple>
#include <vector>

namespace lnformer::test {

/// std::tuple of a TypeList's types: doctest's TEST_CASE_TEMPLATE_APPLY takes a tuple, so that a test
/// runs for every member of a list (TEST_CASE_TEMPLATE_APPLY(id, test::TupleOf<NormPolicies>)).
template <class L>
struct TupleOfList;
template <template <class...> class L, class... Ts>
struct TupleOfList<L<Ts...>> {
  using type = std::tuple<Ts...>;
};
template <class L>
using TupleOf = typename TupleOfList<L>::type;

/// NaN, +inf and -inf: each must make a reduction over it non-finite.
inline constexpr std::array<float, 3> kNonFinite{std::numeric_limits<float>::quiet_NaN(),
                                                 std::numeric_limits<float>::infinity(),
                                                 -std::numeric_limits<float>::infinity()};

template <class B>
Tensor<B> random_tensor(Shape shape, Rng& rng, float lo = -1.f, float hi = 1.f) {
  std::vector<float> h(static_cast<std::size_t>(shape.numel()));
  for (auto& v : h) v = rng.uniform(lo, hi);
  return Tensor<B>(shape, std::span<float const>(h));
}

/// Same values in another backend's memory.
template <class To, class From, class T>
Tensor<To, T> to_backend(Tensor<From, T> const& t) {
  auto const h = t.to_host();
  return Tensor<To, T>(t.shape(), std::span<T const>(h));
}

/// Contents of a (possibly strided) host-accessible view, row-major.
template <class B, class T>
std::vector<std::remove_const_t<T>> gather(TensorView<B, T> v) {
  std::vector<std::remove_const_t<T>> out;
  out.reserve(static_cast<std::size_t>(v.numel()));
  std::vector<std::int64_t> idx(static_cast<std::size_t>(v.rank()), 0);
  for (std::int64_t n = 0; n < v.numel(); ++n) {
    std::int64_t off = 0;
    for (int i = 0; i < v.rank(); ++i) off += idx[i] * v.strides()[i];
    out.push_back(v.data()[off]);
    for (int i = v.rank() - 1; i >= 0; --i) {
      if (++idx[i] < v.size(i)) break;
      idx[i] = 0;
    }
  }
  return out;
}

struct Mismatch {
  std::int64_t index = -1;
  double a = 0, b = 0;
  double max_abs = 0;
  std::int64_t count = 0;
};

/// Element-wise |a - b| <= atol + rtol * |b|; non-finite values on either side count as mismatches
/// unless both sides are the same infinity.
inline Mismatch compare(std::vector<float> const& a, std::vector<float> const& b, double rtol, double atol) {
  Mismatch m;
  for (std::size_t i = 0; i < a.size(); ++i) {
    double const x = a[i], y = b[i];
    bool ok = false;
    if (std::isfinite(x) && std::isfinite(y)) {
      double const d = std::abs(x - y);
      m.max_abs = std::max(m.max_abs, d);
      ok = d <= atol + rtol * std::abs(y);
    } else {
      ok = (x == y);
    }
    if (!ok) {
      if (m.count == 0) m = {static_cast<std::int64_t>(i), x, y, m.max_abs, 0};
      ++m.count;
    }
  }
  return m;
}

/// CHECK that two views of the same shape agree, with a message naming the first mismatch.
template <class B1, class T1, class B2, class T2>
void check_close(TensorView<B1, T1> a, TensorView<B2, T2> b, double rtol, double atol, std::string const& what) {
  INFO(what, ": shapes ", a.shape().str(), " vs ", b.shape().str());
  REQUIRE(a.shape() == b.shape());
  auto const m = compare(gather(a), gather(b), rtol, atol);
  INFO(fmt::format("{}: {} of {} elements differ; first at flat index {}: {} vs {}; max |diff| {:.3g} "
                   "(rtol {}, atol {})",
                   what, m.count, a.numel(), m.index, m.a, m.b, m.max_abs, rtol, atol));
  CHECK(m.count == 0);
}
template <class B1, class T1, class B2, class T2>
void check_close(Tensor<B1, T1> const& a, Tensor<B2, T2> const& b, double rtol, double atol, std::string const& what) {
  check_close(a.cview(), b.cview(), rtol, atol, what);
}

/// check_close of a result on any backend against an expected tensor on a host-accessible one: a result
/// the host cannot read (on the Gpu) is copied to the expected tensor's backend first.
template <class B, class R, class T>
void check_close_to(Tensor<B, T> const& got, Tensor<R, T> const& want, double rtol, double atol,
                    std::string const& what) {
  if constexpr (BackendTraits<B>::host_accessible)
    check_close(got, want, rtol, atol, what);
  else
    check_close(to_backend<R>(got), want, rtol, atol, what);
}

/// Central finite differences of `loss()` with respect to every element of `x` (a host-accessible
/// tensor that loss() reads), compared with `analytic` (same shape). `loss` must be deterministic.
/// Checks |fd - an| <= atol + rtol * max(|fd|, |an|) for every element; `max_elems` > 0 checks a
/// strided subset of that many elements for large tensors.
template <class B>
void check_gradient(std::string const& what, Tensor<B>& x, Tensor<B> const& analytic,
                    std::function<double()> const& loss, double h = 1e-2, double rtol = 2e-2,
                    double atol = 1e-3, std::int64_t max_elems = 0) {
  REQUIRE(x.shape() == analytic.shape());
  auto const an = analytic.to_host();
  std::int64_t const n = x.numel();
  std::int64_t const step = (max_elems > 0 && n > max_elems) ? (n + max_elems - 1) / max_elems : 1;
  std::int64_t bad = 0, first = -1;
  double first_fd = 0, first_an = 0, worst = 0;
  for (std::int64_t i = 0; i < n; i += step) {
    float& v = x.data()[i];
    float const saved = v;
    v = saved + static_cast<float>(h);
    double const lp = loss();
    v = saved - static_cast<float>(h);
    double const lm = loss();
    v = saved;
    double const fd = (lp - lm) / (2 * h);
    double const a = an[static_cast<std::size_t>(i)];
    double const err = std::abs(fd - a);
    double const tol = atol + rtol * std::max(std::abs(fd), std::abs(a));
    worst = std::max(worst, err / tol);
    if (!(err <= tol)) {
      if (bad++ == 0) {
        first = i;
        first_fd = fd;
        first_an = a;
      }
    }
  }
  INFO(fmt::format("gradient of {} (shape {}): {} elements disagree with finite differences; first at "
                   "flat index {}: finite difference {:.6g}, analytic {:.6g}; worst error/tolerance {:.3g}",
                   what, x.shape().str(), bad, first, first_fd, first_an, worst));
  CHECK(bad == 0);
}

/// sum(w * y) in double, the scalar loss that gradient checks differentiate.
template <class B>
double weighted_sum(TensorView<B, float const> y, TensorView<B, float const> w) {
  auto const a = gather(y);
  auto const b = gather(w);
  double s = 0;
  for (std::size_t i = 0; i < a.size(); ++i) s += static_cast<double>(a[i]) * b[i];
  return s;
}

}  // namespace lnformer::test
