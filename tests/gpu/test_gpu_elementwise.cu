// GPU element-wise family against the Reference backend: activations, dropout (masks bit for bit),
// add / scale_add (every gate) and its backward, scale, axpy, fill, strided copy, sum_squares and
// global_l2_norm, embedding forward/backward (bad ids throw, nothing written), and the fused optimizer
// updates against the host update loops over several steps.
// Skipped, with the reason printed, where there is no CUDA device.
#include <lnformer/backend/cuda/activation.cuh>
#include <lnformer/backend/cuda/dropout.cuh>
#include <lnformer/backend/cuda/elementwise.cuh>
#include <lnformer/backend/cuda/embedding.cuh>
#include <lnformer/backend/cuda/optimizer.cuh>

#include "gpu_support.cuh"
#include "ops/fixtures_elementwise.hpp"
#include "ops/fixtures_embedding.hpp"

#include <doctest/doctest.h>
#include <fmt/format.h>

#include <bit>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <span>
#include <string>
#include <utility>
#include <vector>

using namespace lnformer;
using test::check_close;
using test::check_gpu_close;
using test::EmbeddingCase;
using test::for_each_dropout_case;
using test::for_each_gate_case;
using test::Gate;
using test::gated_operands;
using test::kDropoutKeys;
using test::nonzero_tensor;
using test::random_tensor;
using test::to_gpu;
using test::to_reference;
using test::with_last;

namespace {

constexpr double kRtol = 1e-4;

// The element-wise shapes, and a tensor larger than one wave of blocks.
std::vector<Shape> const kShapes = [] {
  auto shapes = test::kElementwiseShapes;
  shapes.push_back(Shape{2, 1, 65537});
  return shapes;
}();

template <class T>
Tensor<Gpu, T> gpu_of(std::vector<T> const& h, Shape s) {
  return Tensor<Gpu, T>(s, std::span<T const>(h));
}

/// Elements whose bit patterns differ (0 means bit-identical; NaNs compare by bits too).
std::int64_t bit_differences(std::vector<float> const& a, std::vector<float> const& b) {
  REQUIRE(a.size() == b.size());
  std::int64_t d = 0;
  for (std::size_t i = 0; i < a.size(); ++i)
    d += std::bit_cast<std::uint32_t>(a[i]) != std::bit_cast<std::uint32_t>(b[i]);
  return d;
}

}  // namespace

// --- activations ----------------------------------------------------------------------------------------

LNF_GPU_TEST_CASE("gpu activation: relu and gelu forward and backward match Reference, in place too") {
  Rng rng(101);
  std::vector<Shape> shapes = kShapes;
  shapes.push_back(Shape{1000003});
  for (auto act : {Activation::relu, Activation::gelu}) {
    for (auto const& s : shapes) {
      CAPTURE(name(act));
      CAPTURE(s.str());
      auto xr = random_tensor<Reference>(s, rng, -5.f, 5.f);
      xr.data()[0] = 0.f;  // relu'(0) = 0
      xr.data()[s.numel() / 2] = 0.f;
      auto const dyr = random_tensor<Reference>(s, rng);
      auto const xg = to_gpu(xr);
      auto const dyg = to_gpu(dyr);

      Tensor<Reference> yr(s);
      ops::activation_forward(Reference{}, yr, xr, act);
      Tensor<Gpu> yg(s);
      ops::activation_forward(Gpu{}, yg, xg, act);
      check_gpu_close(yg, yr, kRtol, 1e-6, "y");
      auto inplace = xg.clone();
      ops::activation_forward(Gpu{}, inplace, inplace, act);
      check_gpu_close(inplace, yr, kRtol, 1e-6, "y aliasing x");

      Tensor<Reference> dxr(s);
      ops::activation_backward(Reference{}, dxr, dyr, xr, act);
      Tensor<Gpu> dxg(s);
      ops::fill(Gpu{}, dxg, 7.f);  // assigns over whatever is there
      ops::activation_backward(Gpu{}, dxg, dyg, xg, act);
      check_gpu_close(dxg, dxr, kRtol, 1e-6, "dx");
      auto dx_inplace = dyg.clone();
      ops::activation_backward(Gpu{}, dx_inplace, dx_inplace, xg, act);
      check_gpu_close(dx_inplace, dxr, kRtol, 1e-6, "dx aliasing dy");
      if (act == Activation::relu) CHECK(dxg.to_host()[0] == 0.f);
    }
  }
}

LNF_GPU_TEST_CASE("gpu activation: NaN propagates, empty tensors, bad kinds and shapes throw") {
  float const nan = std::numeric_limits<float>::quiet_NaN();
  auto const x = gpu_of<float>({nan, -1.f, 2.f, 0.f}, Shape{4});
  Tensor<Gpu> y(Shape{4});
  ops::activation_forward(Gpu{}, y, x, Activation::relu);
  auto h = y.to_host();
  CHECK(std::isnan(h[0]));
  CHECK(h[1] == 0.f);
  CHECK(h[2] == 2.f);
  CHECK(h[3] == 0.f);
  ops::activation_forward(Gpu{}, y, x, Activation::gelu);
  h = y.to_host();
  CHECK(std::isnan(h[0]));
  CHECK(h[3] == 0.f);

  Tensor<Gpu> e(Shape{0, 5});
  ops::activation_forward(Gpu{}, e, e, Activation::gelu);
  ops::activation_backward(Gpu{}, e, e, e, Activation::relu);

  CHECK_THROWS_AS(ops::activation_forward(Gpu{}, y, x, static_cast<Activation>(7)), ValueError);
  CHECK_THROWS_AS(ops::activation_backward(Gpu{}, y, x, x, static_cast<Activation>(7)), ValueError);
  Tensor<Gpu> wrong(Shape{5});
  CHECK_THROWS_AS(ops::activation_forward(Gpu{}, wrong, x, Activation::relu), ShapeError);
}

// --- dropout --------------------------------------------------------------------------------------------

namespace {
/// Number of elements where out disagrees with the CPU definition: dropped iff key.uniform(i) < p, else
/// exactly in[i] * (float)(1 / (1 - p)) (bit for bit).
std::int64_t dropout_mismatches(std::vector<float> const& out, std::vector<float> const& in, float p, RngKey key) {
  float const scale = static_cast<float>(1.0 / (1.0 - static_cast<double>(p)));
  std::int64_t bad = 0;
  for (std::size_t i = 0; i < in.size(); ++i) {
    float const want = key.uniform(i) < p ? 0.f : in[i] * scale;
    bad += std::bit_cast<std::uint32_t>(out[i]) != std::bit_cast<std::uint32_t>(want);
  }
  return bad;
}
}  // namespace

// Runs without a device: the kernel's Philox block and its element <-> (block, lane) mapping against
// RngKey::bits, on the host.
TEST_CASE("gpu dropout's Philox block and lane mapping equal RngKey::bits (host check, no device needed)") {
  for (auto const& key : kDropoutKeys) {
    CAPTURE(key.seed);
    CAPTURE(key.offset);
    std::int64_t const n = 1001;
    std::int64_t const lead = static_cast<std::int64_t>(key.offset & 3u);
    std::int64_t const blocks = (lead + n + 3) / 4;
    std::int64_t wrong = 0, seen = 0;
    for (std::int64_t j = 0; j < blocks; ++j) {  // as apply_kernel's thread j
      uint4 const r = cuda::detail::dropout::philox_block((key.offset >> 2) + static_cast<std::uint64_t>(j), key.stream,
                                                          key.seed);
      std::uint32_t const words[4] = {r.x, r.y, r.z, r.w};
      for (int k = 0; k < 4; ++k) {
        std::int64_t const i = 4 * j - lead + k;
        if (i < 0 || i >= n) continue;
        ++seen;
        wrong += words[k] != key.bits(static_cast<std::uint64_t>(i));
      }
    }
    CHECK(seen == n);
    CHECK(wrong == 0);
  }
}

LNF_GPU_TEST_CASE("gpu dropout: the mask is key.uniform(i) < p bit for bit, as the Reference's, every lane offset") {
  Rng rng(102);
  for_each_dropout_case({0.1f, 0.5f, 0.9f}, kShapes, [&](float p, RngKey const& key, Shape const& s) {
    auto const xr = nonzero_tensor<Reference>(s, rng);
    auto const xg = to_gpu(xr);
    Tensor<Reference> yr(s);
    Tensor<Gpu> yg(s);
    ops::dropout_forward(Reference{}, yr, xr, p, key);
    ops::dropout_forward(Gpu{}, yg, xg, p, key);
    check_gpu_close(yg, yr, 1e-6, 0, "y");
    auto const y = yg.to_host();
    auto const x = xr.to_host();
    std::int64_t mask_differences = 0;
    for (std::int64_t i = 0; i < s.numel(); ++i) mask_differences += (y[i] == 0.f) != (yr.data()[i] == 0.f);
    CHECK(mask_differences == 0);
    CHECK(dropout_mismatches(y, x, p, key) == 0);

    auto const dyr = nonzero_tensor<Reference>(s, rng);
    auto const dyg = to_gpu(dyr);
    Tensor<Reference> dxr(s);
    Tensor<Gpu> dxg(s);
    ops::dropout_backward(Reference{}, dxr, dyr, p, key);
    ops::dropout_backward(Gpu{}, dxg, dyg, p, key);
    check_gpu_close(dxg, dxr, 1e-6, 0, "dx");
    CHECK(dropout_mismatches(dxg.to_host(), dyr.to_host(), p, key) == 0);  // the forward's mask again

    auto inplace = xg.clone();
    ops::dropout_forward(Gpu{}, inplace, inplace, p, key);
    CHECK(bit_differences(inplace.to_host(), y) == 0);
  });
}

LNF_GPU_TEST_CASE("gpu dropout_add: x + drop(h) as the Reference's, in place over x or h, p = 0 included") {
  Rng rng(104);
  for_each_dropout_case({0.f, 0.1f, 0.5f}, kShapes, [&](float p, RngKey const& key, Shape const& s) {
    auto const xr = random_tensor<Reference>(s, rng, -3.f, 3.f);
    auto const hr = nonzero_tensor<Reference>(s, rng);
    auto const xg = to_gpu(xr);
    auto const hg = to_gpu(hr);
    Tensor<Reference> yr(s);
    Tensor<Gpu> yg(s);
    ops::dropout_add(Reference{}, yr, xr, hr, p, key);
    ops::dropout_add(Gpu{}, yg, xg, hg, p, key);
    check_gpu_close(yg, yr, 1e-6, 1e-6, "y");
    // The sum of the GPU's own dropout and add, bit for bit.
    Tensor<Gpu> dropped(s), unfused(s);
    ops::dropout_forward(Gpu{}, dropped, hg, p, key);
    ops::add(Gpu{}, unfused, xg, dropped);
    CHECK(bit_differences(yg.to_host(), unfused.to_host()) == 0);
    auto over_x = xg.clone();
    ops::dropout_add(Gpu{}, over_x, over_x, hg, p, key);
    CHECK(bit_differences(over_x.to_host(), yg.to_host()) == 0);
    auto over_h = hg.clone();
    ops::dropout_add(Gpu{}, over_h, xg, over_h, p, key);
    CHECK(bit_differences(over_h.to_host(), yg.to_host()) == 0);
  });
  Tensor<Gpu> a(Shape{4, 5}), b(Shape{5, 4});
  CHECK_THROWS_AS(ops::dropout_add(Gpu{}, a, a, b, 0.1f, RngKey{}), ShapeError);
  CHECK_THROWS_AS(ops::dropout_add(Gpu{}, a, a, a, 1.f, RngKey{}), ValueError);
}

LNF_GPU_TEST_CASE("gpu dropout: p = 0 copies; p out of [0, 1) is a ValueError; shapes must match") {
  Rng rng(103);
  Shape const s{37, 29};
  auto const xr = nonzero_tensor<Reference>(s, rng);
  auto const xg = to_gpu(xr);
  Tensor<Gpu> y(s);
  ops::dropout_forward(Gpu{}, y, xg, 0.f, RngKey{5, 1, 0});
  check_gpu_close(y, xr, 0, 0, "p = 0");
  Tensor<Gpu> dx(s);
  ops::dropout_backward(Gpu{}, dx, xg, 0.f, RngKey{5, 1, 0});
  check_gpu_close(dx, xr, 0, 0, "backward p = 0");
  auto same = xg.clone();
  ops::dropout_forward(Gpu{}, same, same, 0.f, RngKey{5, 1, 0});
  check_gpu_close(same, xr, 0, 0, "p = 0 in place");

  CHECK_THROWS_WITH_AS(ops::dropout_forward(Gpu{}, y, xg, 1.f, RngKey{}),
                       doctest::Contains("dropout probability p = 1 must be in [0, 1)"), ValueError);
  CHECK_THROWS_AS(ops::dropout_backward(Gpu{}, dx, xg, -0.1f, RngKey{}), ValueError);
  CHECK_THROWS_AS(ops::dropout_forward(Gpu{}, y, xg, std::numeric_limits<float>::quiet_NaN(), RngKey{}), ValueError);
  Tensor<Gpu> wrong(Shape{29, 37});
  CHECK_THROWS_AS(ops::dropout_forward(Gpu{}, wrong, xg, 0.5f, RngKey{}), ShapeError);
  Tensor<Gpu> e(Shape{0});
  ops::dropout_forward(Gpu{}, e, e, 0.5f, RngKey{});
}

// --- add, scale, axpy, fill -----------------------------------------------------------------------------

LNF_GPU_TEST_CASE("gpu add, scale, axpy, fill match Reference, in place too") {
  Rng rng(104);
  for (auto const& s : kShapes) {
    CAPTURE(s.str());
    auto const ar = random_tensor<Reference>(s, rng);
    auto const br = random_tensor<Reference>(s, rng);
    auto const ag = to_gpu(ar);
    auto const bg = to_gpu(br);

    Tensor<Reference> yr(s);
    ops::add(Reference{}, yr, ar, br);
    Tensor<Gpu> yg(s);
    ops::add(Gpu{}, yg, ag, bg);
    check_gpu_close(yg, yr, kRtol, 0, "add");
    auto y2 = ag.clone();
    ops::add(Gpu{}, y2, y2, bg);
    check_gpu_close(y2, yr, kRtol, 0, "add, y aliasing a");
    auto y3 = bg.clone();
    ops::add(Gpu{}, y3, ag, y3);
    check_gpu_close(y3, yr, kRtol, 0, "add, y aliasing b");

    auto scr = ar.clone();
    ops::scale(Reference{}, scr, -1.75f);
    auto scg = ag.clone();
    ops::scale(Gpu{}, scg, -1.75f);
    check_gpu_close(scg, scr, kRtol, 0, "scale");

    auto axr = ar.clone();
    auto axg = ag.clone();
    for (int rep = 0; rep < 2; ++rep) {  // accumulates
      ops::axpy(Reference{}, axr, 0.3f, br);
      ops::axpy(Gpu{}, axg, 0.3f, bg);
      check_gpu_close(axg, axr, kRtol, 1e-7, fmt::format("axpy {}", rep + 1));
    }

    auto flg = ag.clone();
    ops::fill(Gpu{}, flg, 2.5f);
    auto const fl = flg.to_host();
    std::int64_t wrong = 0;
    for (float v : fl) wrong += v != 2.5f;
    CHECK(wrong == 0);
  }
  // Empty tensors are no-ops; shapes must match.
  Tensor<Gpu> e(Shape{0});
  ops::add(Gpu{}, e, e, e);
  ops::scale(Gpu{}, e, 2.f);
  ops::axpy(Gpu{}, e, 2.f, e);
  ops::fill(Gpu{}, e, 2.f);
  Tensor<Gpu> a(Shape{4, 7}), b(Shape{4, 8}), y(Shape{4, 7});
  CHECK_THROWS_WITH_AS(ops::add(Gpu{}, y, a, b), doctest::Contains("add: a has shape [4, 7] but b has shape [4, 8]"),
                       ShapeError);
  CHECK_THROWS_AS(ops::axpy(Gpu{}, y, 1.f, b), ShapeError);
  CHECK_THROWS_AS(ops::scale(Gpu{}, y.view().transposed(), 1.f), ShapeError);
}

// --- scale_add and its backward -------------------------------------------------------------------------

LNF_GPU_TEST_CASE("gpu scale_add matches Reference for every gate and alpha, in place too") {
  Rng rng(105);
  for_each_gate_case({1.f, 0.7f, -2.f}, kShapes, [&](Gate g, float alpha, Shape const& s) {
    auto const [xr, fr, wr, xg, fg, wg] = gated_operands<Reference, Gpu>(g, s, rng);
    Tensor<Reference> yr(s);
    ops::scale_add(Reference{}, yr, xr, wr, alpha, fr);
    Tensor<Gpu> yg(s);
    ops::scale_add(Gpu{}, yg, xg, wg, alpha, fg);
    check_gpu_close(yg, yr, kRtol, 1e-6, "y");
    auto yx = xg.clone();
    ops::scale_add(Gpu{}, yx, yx, wg, alpha, fg);
    check_gpu_close(yx, yr, kRtol, 1e-6, "y aliasing x");
    auto yf = fg.clone();
    ops::scale_add(Gpu{}, yf, xg, wg, alpha, yf);
    check_gpu_close(yf, yr, kRtol, 1e-6, "y aliasing f");
  });
  Tensor<Gpu> x(Shape{4, 7}), w8(Shape{8}), y(Shape{4, 7});
  CHECK_THROWS_WITH_AS(ops::scale_add(Gpu{}, y, x, w8, 1.f, x),
                       doctest::Contains("w must be [7] (the last dim of x) or [1]"), ShapeError);
}

LNF_GPU_TEST_CASE("gpu scale_add_backward matches Reference: dx assigns, dw accumulates, deterministic") {
  Rng rng(106);
  std::vector<Shape> shapes = kShapes;
  shapes.push_back(Shape{2000, 96});     // many row chunks
  shapes.push_back(Shape{3, 100003});    // many column tiles, one chunk
  shapes.push_back(Shape{1 << 20, 2});   // d = 2, a million rows
  for_each_gate_case({1.f, -0.6f}, shapes, [&](Gate g, float alpha, Shape const& s) {
    auto const [xr, dyr, wr, xg, dyg, wg] = gated_operands<Reference, Gpu>(g, s, rng);
    bool const gated = g != Gate::none;

    Tensor<Reference> dxr(s);
    Tensor<Reference> dwr = gated ? Tensor<Reference>(wr.shape()) : Tensor<Reference>();
    if (gated) ops::fill(Reference{}, dwr, 0.5f);
    ops::scale_add_backward(Reference{}, dxr, dwr, dyr, xr, wr, alpha);

    Tensor<Gpu> dxg(s);
    ops::fill(Gpu{}, dxg, 9.f);  // dx assigns over whatever is there
    Tensor<Gpu> dwg = gated ? Tensor<Gpu>(wr.shape()) : Tensor<Gpu>();
    if (gated) ops::fill(Gpu{}, dwg, 0.5f);
    auto const dw_start = gated ? dwg.clone() : Tensor<Gpu>();
    ops::scale_add_backward(Gpu{}, dxg, dwg, dyg, xg, wg, alpha);
    check_gpu_close(dxg, dxr, kRtol, 1e-7, "dx");
    if (gated) {
      check_gpu_close(dwg, dwr, kRtol, 1e-5, "dw");
      // The same call from the same start gives the same bits (deterministic reduction).
      auto again = dw_start.clone();
      ops::scale_add_backward(Gpu{}, View<Gpu>{}, again, dyg, xg, wg, alpha);
      CHECK(bit_differences(again.to_host(), dwg.to_host()) == 0);
    }

    // dx alone; dx aliasing dy.
    Tensor<Gpu> dx_only(s);
    ops::scale_add_backward(Gpu{}, dx_only, View<Gpu>{}, dyg, xg, wg, alpha);
    check_gpu_close(dx_only, dxr, kRtol, 1e-7, "dx alone");
    auto g2 = dyg.clone();
    ops::scale_add_backward(Gpu{}, g2, View<Gpu>{}, g2, xg, wg, alpha);
    check_gpu_close(g2, dxr, kRtol, 1e-7, "dx aliasing dy");
    if (gated) {
      // dx aliasing dy with dw wanted: dw is computed from the incoming dy (before dx overwrites it).
      auto g3 = dyg.clone();
      auto dw3 = dw_start.clone();
      ops::scale_add_backward(Gpu{}, g3, dw3, g3, xg, wg, alpha);
      check_gpu_close(g3, dxr, kRtol, 1e-7, "dx aliasing dy, with dw");
      check_gpu_close(dw3, dwr, kRtol, 1e-5, "dw with dx aliasing dy");
    }
  });
  Tensor<Gpu> a(Shape{4, 7}), w7(Shape{7});
  CHECK_THROWS_WITH_AS(ops::scale_add_backward(Gpu{}, View<Gpu>{}, w7, a, a, CView<Gpu>{}, 1.f),
                       doctest::Contains("dw has shape [7] but w is absent"), ShapeError);
}

// --- copy -----------------------------------------------------------------------------------------------

LNF_GPU_TEST_CASE("gpu copy makes strided views contiguous, exactly as Reference") {
  Rng rng(107);
  auto const xr = random_tensor<Reference>(Shape{6, 7, 300}, rng);
  auto const bigr = random_tensor<Reference>(Shape{64, 1030}, rng);
  auto const hr = random_tensor<Reference>(Shape{3, 8, 37, 64}, rng);
  auto const onesr = random_tensor<Reference>(Shape{2, 1, 3, 1}, rng);
  auto const xg = to_gpu(xr);
  auto const bigg = to_gpu(bigr);
  auto const hg = to_gpu(hr);
  auto const onesg = to_gpu(onesr);
  // The same view of the Reference and the Gpu buffers.
  auto cases = [](auto const& x, auto const& big, auto const& h, auto const& ones) {
    using V = decltype(x.cview());
    return std::vector<V>{
        x.cview(),
        x.cview().transposed(),
        x.cview().permute({2, 0, 1}),
        x.cview().permute({1, 2, 0}),
        x.cview().slice(2, 5).permute({1, 0, 2}),
        x.cview().slice(1, 4),
        x.cview().reshape(Shape{42, 300}).transposed(),
        big.cview().transposed(),
        big.cview().reshape(Shape{8, 8, 2, 515}).permute({2, 1, 0, 3}),
        h.cview().permute({0, 2, 1, 3}),  // the attention head merge
        ones.cview().permute({0, 2, 1, 3}),
        ones.cview().permute({3, 1, 2, 0}),
        x.cview().slice(3, 4).permute({2, 1, 0}),
    };
  };
  auto const vr = cases(xr, bigr, hr, onesr);
  auto const vg = cases(xg, bigg, hg, onesg);
  for (std::size_t i = 0; i < vr.size(); ++i) {
    CAPTURE(i);
    CAPTURE(vr[i].shape().str());
    Tensor<Reference> yr(vr[i].shape());
    ops::copy(Reference{}, yr, vr[i]);
    Tensor<Gpu> yg(vg[i].shape());
    ops::copy(Gpu{}, yg, vg[i]);
    check_gpu_close(yg, yr, 0, 0, "copy");
  }
  // One element (all dimensions 1), contiguous copies of every shape.
  auto const one = gpu_of<float>({3.5f}, Shape{1, 1, 1});
  Tensor<Gpu> one_y(Shape{1, 1, 1});
  ops::copy(Gpu{}, one_y, one.cview().permute({2, 0, 1}));
  CHECK(one_y.to_host()[0] == 3.5f);
  for (auto const& s : kShapes) {
    auto const ar = random_tensor<Reference>(s, rng);
    Tensor<Gpu> b(s);
    ops::copy(Gpu{}, b, to_gpu(ar));
    check_gpu_close(b, ar, 0, 0, "contiguous copy");
  }
  Tensor<Gpu> y(Shape{4, 7}), t(Shape{7, 4});
  CHECK_THROWS_WITH_AS(ops::copy(Gpu{}, y, t), doctest::Contains("copy: y has shape [4, 7] but x has shape [7, 4]"),
                       ShapeError);
  CHECK_THROWS_AS(ops::copy(Gpu{}, y.view().transposed(), t), ShapeError);
  Tensor<Gpu> e(Shape{0, 3});
  ops::copy(Gpu{}, e, e.cview().transposed().transposed());
}

// --- sum_squares, global_l2_norm ------------------------------------------------------------------------

LNF_GPU_TEST_CASE("gpu sum_squares and global_l2_norm: double accumulation, deterministic, NaN and inf propagate") {
  Rng rng(108);
  std::vector<Shape> shapes = kShapes;
  shapes.push_back(Shape{(1 << 22) + 7});  // more blocks than the partial-sum launch has
  std::vector<Tensor<Reference>> rs;
  std::vector<Tensor<Gpu>> gs;
  for (auto const& s : shapes) {
    rs.push_back(random_tensor<Reference>(s, rng, -3.f, 3.f));
    gs.push_back(to_gpu(rs.back()));
  }
  std::vector<CView<Reference>> rviews(rs.begin(), rs.end());
  std::vector<CView<Gpu>> gviews(gs.begin(), gs.end());

  for (std::size_t k = 0; k < rs.size(); ++k) {
    CAPTURE(shapes[k].str());
    CHECK(ops::sum_squares(Gpu{}, gs[k]) == doctest::Approx(ops::sum_squares(Reference{}, rs[k])).epsilon(1e-12));
  }
  double const norm = ops::global_l2_norm(Gpu{}, gviews);
  CHECK(norm == doctest::Approx(ops::global_l2_norm(Reference{}, rviews)).epsilon(1e-12));
  CHECK(std::bit_cast<std::uint64_t>(ops::global_l2_norm(Gpu{}, gviews)) == std::bit_cast<std::uint64_t>(norm));
  double const big_sum = ops::sum_squares(Gpu{}, gs.back());
  CHECK(std::bit_cast<std::uint64_t>(ops::sum_squares(Gpu{}, gs.back())) == std::bit_cast<std::uint64_t>(big_sum));

  // Absent tensors contribute nothing.
  CHECK(ops::global_l2_norm(Gpu{}, std::span<CView<Gpu> const>{}) == 0.0);
  CHECK(ops::sum_squares(Gpu{}, CView<Gpu>{}) == 0.0);
  std::vector<CView<Gpu>> with_absent{CView<Gpu>{}, gviews[3], CView<Gpu>{}, gviews[5]};
  double const want = ops::sum_squares(Reference{}, rs[3]) + ops::sum_squares(Reference{}, rs[5]);
  CHECK(ops::global_l2_norm(Gpu{}, with_absent) == doctest::Approx(std::sqrt(want)).epsilon(1e-12));

  // Squares that overflow float stay finite in double.
  auto const tb = gpu_of<float>({3e20f, -4e20f}, Shape{2});
  CHECK(ops::sum_squares(Gpu{}, tb) == doctest::Approx(25e40).epsilon(1e-6));

  // A NaN or an inf anywhere (small or large tensor) makes the results non-finite.
  for (std::size_t k : {std::size_t{0}, rs.size() - 1}) {
    for (float bad : test::kNonFinite) {
      CAPTURE(k);
      CAPTURE(bad);
      auto h = rs[k].to_host();
      h[h.size() / 2] = bad;
      auto const poisoned = gpu_of<float>(h, rs[k].shape());
      auto views = gviews;
      views[k] = poisoned;
      double const n = ops::global_l2_norm(Gpu{}, views);
      CHECK(!std::isfinite(n));
      CHECK(std::isnan(n) == std::isnan(bad));
      CHECK(!std::isfinite(ops::sum_squares(Gpu{}, poisoned)));
    }
  }
  Tensor<Gpu> a(Shape{4, 7});
  CHECK_THROWS_WITH_AS((void)ops::sum_squares(Gpu{}, a.view().transposed()), doctest::Contains("must be contiguous"),
                       ShapeError);
  std::vector<CView<Gpu>> strided{a.cview(), a.cview().transposed()};
  CHECK_THROWS_AS((void)ops::global_l2_norm(Gpu{}, strided), ShapeError);
}

// --- embedding ------------------------------------------------------------------------------------------

namespace {
// The embedding cases, and a batch of 8192 ids.
std::vector<EmbeddingCase> const kEmbeddingCases = [] {
  auto cases = test::kEmbeddingCases;
  cases.push_back({{16, 512}, 4000, 96, 1});
  return cases;
}();
}  // namespace

LNF_GPU_TEST_CASE("gpu embedding_forward matches Reference exactly and assigns") {
  Rng rng(109);
  for (auto const& c : kEmbeddingCases) {
    CAPTURE(c.str());
    auto const [table, ids, yr] = test::embedding_forward_reference(c, 2.5f, rng);
    auto yg = random_tensor<Gpu>(with_last(c.ids, c.d), rng, 100.f, 200.f);  // stale contents are overwritten
    ops::embedding_forward(Gpu{}, yg, to_gpu(table), to_gpu(ids), 2.5f);
    check_gpu_close(yg, yr, 0, 0, "embedding_forward y");  // one correctly rounded product on both sides
  }
}

LNF_GPU_TEST_CASE("gpu embedding_backward matches Reference: accumulates, repeated ids add up, padding untouched") {
  Rng rng(110);
  for (auto const& c : kEmbeddingCases) {
    CAPTURE(c.str());
    auto const [ids, dy, before, dtable_ref] = test::embedding_backward_reference(c, 0.5f, rng);
    auto dtable = to_gpu(before);  // an existing gradient: += keeps it
    ops::embedding_backward(Gpu{}, dtable, to_gpu(dy), to_gpu(ids), 0.5f, c.pad);
    // Float atomics add a repeated id's rows in any order (the CPU adds them in token order, the Reference
    // in double): with thousands of repeats the rounding differs by a few 1e-5 absolute.
    check_gpu_close(dtable, dtable_ref, kRtol, 1e-4, "embedding_backward dtable");
    if (c.pad >= 0) {  // the padding row's bits are unchanged
      auto const h = dtable.to_host();
      std::int64_t changed = 0;
      for (std::int64_t k = 0; k < c.d; ++k)
        changed += std::bit_cast<std::uint32_t>(h[c.pad * c.d + k]) != std::bit_cast<std::uint32_t>(before(c.pad, k));
      CHECK(changed == 0);
    }
  }
  // Hand-checked: ids [2, 0, 2, 2], scale 3 (every partial sum is exact, so the order does not matter).
  std::vector<float> const dy_h{1, 2, 10, 20, 100, 200, 1000, 2000};
  auto const ids = gpu_of<std::int32_t>({2, 0, 2, 2}, Shape{4});
  auto const dy = gpu_of<float>(dy_h, Shape{4, 2});
  Tensor<Gpu> dtable(Shape{3, 2});
  ops::embedding_backward(Gpu{}, dtable, dy, ids, 3.f);
  CHECK(dtable.to_host() == std::vector<float>{30.f, 60.f, 0.f, 0.f, 3.f * 1101, 3.f * 2202});
  Tensor<Gpu> dpad(Shape{3, 2});
  ops::embedding_backward(Gpu{}, dpad, dy, ids, 3.f, 2);
  CHECK(dpad.to_host() == std::vector<float>{30.f, 60.f, 0.f, 0.f, 0.f, 0.f});
}

LNF_GPU_TEST_CASE("gpu embedding: ids out of range are the CPU's ValueError; nothing is written") {
  Tensor<Gpu> const table(Shape{5, 2});
  auto y = gpu_of<float>({42.f, 1.f, 2.f, 3.f, 4.f, 5.f, 6.f, 7.f}, Shape{2, 2, 2});
  auto const y_before = y.to_host();
  auto const bad = gpu_of<std::int32_t>({0, 1, 7, 2}, Shape{2, 2});
  CHECK_THROWS_WITH_AS(ops::embedding_forward(Gpu{}, y, table, bad, 1.f),
                       doctest::Contains("embedding_forward: id 7 at position 2 of ids (shape [2, 2]) is out of range "
                                         "[0, V = 5) for a table of shape [5, 2]"),
                       ValueError);
  CHECK(y.to_host() == y_before);
  auto const negative = gpu_of<std::int32_t>({0, 1, 2, -1}, Shape{2, 2});
  CHECK_THROWS_WITH_AS(ops::embedding_forward(Gpu{}, y, table, negative, 1.f), doctest::Contains("id -1 at position 3"),
                       ValueError);
  auto const two_bad = gpu_of<std::int32_t>({0, 5, 2, -4}, Shape{4});  // the first bad position is named
  CHECK_THROWS_WITH_AS(ops::embedding_forward(Gpu{}, y, table, two_bad, 1.f), doctest::Contains("id 5 at position 1"),
                       ValueError);
  CHECK(y.to_host() == y_before);

  auto dtable = gpu_of<float>({1, 2, 3, 4, 5, 6, 7, 8, 9, 10}, Shape{5, 2});
  auto const dtable_before = dtable.to_host();
  auto const dy = gpu_of<float>({1, 1, 1, 1, 1, 1, 1, 1}, Shape{2, 2, 2});
  CHECK_THROWS_WITH_AS(ops::embedding_backward(Gpu{}, dtable, dy, bad, 1.f),
                       doctest::Contains("embedding_backward: id 7 at position 2"), ValueError);
  CHECK_THROWS_WITH_AS(ops::embedding_backward(Gpu{}, dtable, dy, negative, 1.f, 2),
                       doctest::Contains("id -1 at position 3"), ValueError);
  CHECK(dtable.to_host() == dtable_before);
  auto const good = gpu_of<std::int32_t>({0, 1, 2, 3}, Shape{2, 2});
  CHECK_THROWS_WITH_AS(ops::embedding_backward(Gpu{}, dtable, dy, good, 1.f, 5),
                       doctest::Contains("padding_idx 5 is out of range for dtable of shape [5, 2]"), ValueError);
  CHECK_NOTHROW(ops::embedding_backward(Gpu{}, dtable, dy, good, 1.f, -7));  // any negative: no padding
  // A good call after the failures works (the device flag is reset per call).
  Tensor<Gpu> y2(Shape{2, 2, 2});
  CHECK_NOTHROW(ops::embedding_forward(Gpu{}, y2, table, good, 1.f));
  // Empty batches are fine; shape errors are the shared checks'.
  Tensor<Gpu, std::int32_t> const no_ids(Shape{0});
  Tensor<Gpu> no_y(Shape{0, 2});
  ops::embedding_forward(Gpu{}, no_y, table, no_ids, 1.f);
  ops::embedding_backward(Gpu{}, dtable, no_y, no_ids, 1.f);
  Tensor<Gpu> y_wrong_d(Shape{4, 3});
  CHECK_THROWS_AS(ops::embedding_forward(Gpu{}, y_wrong_d, table, good, 1.f), ShapeError);
}

// --- optimizer updates ----------------------------------------------------------------------------------

namespace {

/// GPU and host copies of one parameter with its optimizer buffers.
struct OptimState {
  Tensor<Reference> p, b0, b1;
  Tensor<Gpu> gp, gb0, gb1;
  OptimState(Shape s, Rng& rng)
      : p(random_tensor<Reference>(s, rng)), b0(s), b1(s), gp(to_gpu(p)), gb0(s), gb1(s) {}
  void check(std::string const& what) {
    check_gpu_close(gp, p, kRtol, 1e-6, what + ": param");
    check_gpu_close(gb0, b0, kRtol, 1e-7, what + ": buffer 0");
    check_gpu_close(gb1, b1, kRtol, 1e-9, what + ": buffer 1");
    // The same operations in the same order, each rounded once: bit for bit where the host loops are
    // compiled without FMA contraction (the default for x86-64). A warning, not a failure, elsewhere.
    WARN(bit_differences(gp.to_host(), p.to_host()) == 0);
    WARN(bit_differences(gb0.to_host(), b0.to_host()) == 0);
    WARN(bit_differences(gb1.to_host(), b1.to_host()) == 0);
  }
};

std::vector<Shape> const kOptimShapes = {Shape{1}, Shape{17}, Shape{4099}, Shape{301, 257}};
constexpr int kSteps = 8;

}  // namespace

LNF_GPU_TEST_CASE("gpu sgd_update follows the host update over several steps (momentum, nesterov, decay)") {
  Rng rng(111);
  struct Config {
    char const* name;
    float wd, momentum, dampening;
    bool nesterov;
  };
  for (auto const& cfg : {Config{"plain", 0.f, 0.f, 0.f, false}, Config{"decay", 0.01f, 0.f, 0.f, false},
                          Config{"momentum", 0.f, 0.9f, 0.1f, false},
                          Config{"nesterov+decay", 0.05f, 0.9f, 0.f, true}}) {
    for (auto const& s : kOptimShapes) {
      CAPTURE(cfg.name);
      CAPTURE(s.str());
      OptimState st(s, rng);
      bool const has_buffer = cfg.momentum != 0.f;
      for (int t = 0; t < kSteps; ++t) {
        auto const g = random_tensor<Reference>(s, rng);
        float const lr = 0.05f / static_cast<float>(t + 1);
        ops::SgdCoefficients const c{.neg_lr = -lr,
                                     .weight_decay = cfg.wd,
                                     .momentum = cfg.momentum,
                                     .one_minus_dampening = static_cast<float>(1.0 - double{cfg.dampening}),
                                     .nesterov = cfg.nesterov,
                                     .first = t == 0};
        ops::sgd_update(Reference{}, st.p.view(), has_buffer ? st.b0.view() : View<Reference>{}, g.cview(), c);
        ops::sgd_update(Gpu{}, st.gp, has_buffer ? st.gb0.view() : View<Gpu>{}, to_gpu(g), c);
        st.check(fmt::format("sgd {} step {}", cfg.name, t + 1));
      }
    }
  }
}

LNF_GPU_TEST_CASE("gpu adam_update follows the host update over several steps (Adam and AdamW decay)") {
  Rng rng(112);
  struct Config {
    char const* name;
    float wd, decoupled_wd;
  };
  float const beta1 = 0.9f, beta2 = 0.98f, eps = 1e-8f;
  for (auto const& cfg : {Config{"plain", 0.f, 0.f}, Config{"coupled", 0.01f, 0.f}, Config{"decoupled", 0.f, 0.1f},
                          Config{"both", 0.01f, 0.1f}}) {
    for (auto const& s : kOptimShapes) {
      CAPTURE(cfg.name);
      CAPTURE(s.str());
      OptimState st(s, rng);
      for (int t = 1; t <= kSteps; ++t) {
        auto const g = random_tensor<Reference>(s, rng);
        float const lr = 1e-2f;
        double const b1 = beta1, b2 = beta2;
        double const bc1 = 1.0 - std::pow(b1, t), bc2 = 1.0 - std::pow(b2, t);
        ops::AdamCoefficients const c{.beta1 = beta1,
                                      .one_minus_beta1 = static_cast<float>(1.0 - b1),
                                      .beta2 = beta2,
                                      .one_minus_beta2 = static_cast<float>(1.0 - b2),
                                      .weight_decay = cfg.wd,
                                      .param_scale = static_cast<float>(1.0 - lr * double{cfg.decoupled_wd}),
                                      .bias_correction2_sqrt = static_cast<float>(std::sqrt(bc2)),
                                      .eps = eps,
                                      .neg_step_size = static_cast<float>(-lr / bc1)};
        ops::adam_update(Reference{}, st.p.view(), st.b0.view(), st.b1.view(), g.cview(), c);
        ops::adam_update(Gpu{}, st.gp, st.gb0, st.gb1, to_gpu(g), c);
        st.check(fmt::format("adam {} step {}", cfg.name, t));
      }
    }
  }
}

LNF_GPU_TEST_CASE("gpu radam_update follows the host update over several steps, before and after rectification") {
  Rng rng(113);
  float const beta1 = 0.9f, beta2 = 0.999f, eps = 1e-8f, lr = 1e-2f;
  int rectified = 0, plain = 0;
  for (float wd : {0.f, 0.01f}) {
    for (auto const& s : kOptimShapes) {
      CAPTURE(wd);
      CAPTURE(s.str());
      OptimState st(s, rng);
      for (int t = 1; t <= kSteps; ++t) {  // with beta2 0.999, rho_t > 5 from t = 6 on
        auto const g = random_tensor<Reference>(s, rng);
        double const b1 = beta1, b2 = beta2;
        double const bc1 = 1.0 - std::pow(b1, t), bc2 = 1.0 - std::pow(b2, t);
        double const rho_inf = 2.0 / (1.0 - b2) - 1.0;
        double const rho_t = rho_inf - 2.0 * t * std::pow(b2, t) / bc2;
        bool const rectify = rho_t > 5.0;
        double const rect =
            rectify ? std::sqrt((rho_t - 4.0) * (rho_t - 2.0) * rho_inf / ((rho_inf - 4.0) * (rho_inf - 2.0) * rho_t))
                    : 1.0;
        (rectify ? rectified : plain) += 1;
        ops::RAdamCoefficients const c{.beta1 = beta1,
                                       .one_minus_beta1 = static_cast<float>(1.0 - b1),
                                       .beta2 = beta2,
                                       .one_minus_beta2 = static_cast<float>(1.0 - b2),
                                       .weight_decay = wd,
                                       .bias_correction1 = static_cast<float>(bc1),
                                       .lr = lr,
                                       .rectify = rectify,
                                       .bias_correction2_sqrt = static_cast<float>(std::sqrt(bc2)),
                                       .eps = eps,
                                       .rect = static_cast<float>(rect)};
        ops::radam_update(Reference{}, st.p.view(), st.b0.view(), st.b1.view(), g.cview(), c);
        ops::radam_update(Gpu{}, st.gp, st.gb0, st.gb1, to_gpu(g), c);
        st.check(fmt::format("radam wd {} step {} ({})", wd, t, rectify ? "rectified" : "sgd-like"));
      }
    }
  }
  CHECK(rectified > 0);
  CHECK(plain > 0);
}

LNF_GPU_TEST_CASE("gpu optimizer updates: operands must be contiguous and of one size; empty is a no-op") {
  Tensor<Gpu> p(Shape{4, 5}), m(Shape{4, 5}), v(Shape{4, 5}), g(Shape{4, 5}), small(Shape{3});
  CHECK_THROWS_WITH_AS(ops::adam_update(Gpu{}, p, m, v, small, ops::AdamCoefficients{}),
                       doctest::Contains("adam_update: grad has shape [3]"), ShapeError);
  CHECK_THROWS_AS(ops::radam_update(Gpu{}, p, small, v, g, ops::RAdamCoefficients{}), ShapeError);
  CHECK_THROWS_AS(ops::sgd_update(Gpu{}, p, View<Gpu>{}, g, ops::SgdCoefficients{.neg_lr = -1.f, .momentum = 0.9f}),
                  ShapeError);
  CHECK_THROWS_AS(ops::sgd_update(Gpu{}, p.view().transposed(), m, g.cview().transposed(), ops::SgdCoefficients{}),
                  ShapeError);
  Tensor<Gpu> e(Shape{0});
  ops::sgd_update(Gpu{}, e, e, e, ops::SgdCoefficients{.momentum = 0.9f});
  ops::adam_update(Gpu{}, e, e, e, e, ops::AdamCoefficients{});
  ops::radam_update(Gpu{}, e, e, e, e, ops::RAdamCoefficients{});
}
