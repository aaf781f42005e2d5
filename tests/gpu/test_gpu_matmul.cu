// GPU GEMMs (backend/cuda/matmul.cuh) against the Reference backend: 2-D shapes with alpha and beta,
// transposed, strided (packed) and per-head operands, batched rank 3/4 with broadcast batch dims,
// matmul_backward including broadcast operands, and the linear layer forward and backward.
// Skipped, with the reason printed, where there is no CUDA device.
#include <lnformer/backend/cuda/matmul.cuh>

#include "gpu_support.cuh"
#include "ops/fixtures_matmul.hpp"

#include <doctest/doctest.h>
#include <fmt/format.h>

#include <array>
#include <cstdint>
#include <functional>
#include <string>
#include <tuple>
#include <type_traits>
#include <vector>

using namespace lnformer;
using test::check_gpu_close;
using test::heads_of;
using test::kMatmulAtol;
using test::kMatmulRtol;
using test::plain;
using test::random_tensor;
using test::to_gpu;

namespace {

/// matmul on the Gpu against the Reference (tests/ops/fixtures_matmul.hpp).
template <class Views>
void agree(std::string const& what, Shape as, Shape bs, Shape cs, Views views, float alpha = 1.f, float beta = 0.f) {
  test::check_matmul_agrees<Gpu>(what, as, bs, cs, views, alpha, beta);
}

}  // namespace

LNF_GPU_TEST_CASE("gpu matmul: 2-D shapes, alpha and beta, transposed operands") {
  for (auto [m, k, n] : std::vector<std::array<std::int64_t, 3>>{
           {1, 1, 1}, {1, 17, 33}, {3, 5, 7}, {33, 257, 17}, {64, 64, 64}, {257, 3, 33}, {5, 1, 9}}) {
    auto const name = fmt::format("m {} k {} n {}", m, k, n);
    for (auto [alpha, beta] : std::vector<std::pair<float, float>>{{1.f, 0.f}, {1.f, 1.f}, {-1.5f, 0.25f}})
      agree("plain " + name, Shape{m, k}, Shape{k, n}, Shape{m, n}, plain, alpha, beta);
    agree("a^T " + name, Shape{k, m}, Shape{k, n}, Shape{m, n},
          [](auto& c, auto& a, auto& b) { return std::tuple{c.view(), a.cview().transposed(), b.cview()}; });
    agree("a^T b^T " + name, Shape{k, m}, Shape{n, k}, Shape{m, n}, [](auto& c, auto& a, auto& b) {
      return std::tuple{c.view(), a.cview().transposed(), b.cview().transposed()};
    });
  }
}

LNF_GPU_TEST_CASE("gpu matmul: operands with no unit stride are packed; a strided c keeps the rest") {
  std::int64_t const m = 17, k = 33, n = 9;
  agree("strided a and b", Shape{m, 2 * k}, Shape{n, 3 * k}, Shape{m, n}, [=](auto& c, auto& a, auto& b) {
    using B = typename std::remove_reference_t<decltype(c)>::backend;
    return std::tuple{c.view(), CView<B>(a.data(), Shape{m, k}, Strides{2 * k, 2}),
                      CView<B>(b.data(), Shape{k, n}, Strides{3, 3 * k})};
  });
  agree(
      "strided c", Shape{m, k}, Shape{k, n}, Shape{m, n + 3},
      [=](auto& c, auto& a, auto& b) {
        using B = typename std::remove_reference_t<decltype(c)>::backend;
        return std::tuple{View<B>(c.data() + 1, Shape{m, n}, Strides{n + 3, 1}), a.cview(), b.cview()};
      },
      1.f, 1.f);
}

LNF_GPU_TEST_CASE("gpu matmul: batched rank 3 and 4, broadcast batch dims, per-head views") {
  std::vector<std::array<Shape, 3>> const cases{
      {Shape{4, 3, 5}, Shape{4, 5, 2}, Shape{4, 3, 2}},          {Shape{1, 3, 5}, Shape{4, 5, 2}, Shape{4, 3, 2}},
      {Shape{4, 3, 5}, Shape{1, 5, 2}, Shape{4, 3, 2}},          {Shape{2, 3, 4, 5}, Shape{2, 3, 5, 6}, Shape{2, 3, 4, 6}},
      {Shape{2, 1, 4, 5}, Shape{1, 3, 5, 6}, Shape{2, 3, 4, 6}}, {Shape{1, 1, 17, 33}, Shape{2, 3, 33, 3}, Shape{2, 3, 17, 3}},
      {Shape{2, 3, 4, 5}, Shape{2, 1, 5, 6}, Shape{2, 3, 4, 6}}, {Shape{3, 1, 4, 5}, Shape{3, 1, 5, 6}, Shape{3, 2, 4, 6}},
  };
  for (auto const& [a, b, c] : cases)
    for (auto [alpha, beta] : std::vector<std::pair<float, float>>{{1.f, 0.f}, {0.5f, 1.f}})
      agree(fmt::format("{} @ {} -> {}", a, b, c), a, b, c, plain, alpha, beta);

  std::int64_t const batch = 3, t = 5, heads = 4, dh = 8;
  agree(
      "q @ k^T per head", Shape{batch, t, heads, dh}, Shape{batch, t, heads, dh}, Shape{batch, heads, t, t},
      [](auto& c, auto& q, auto& k) { return std::tuple{c.view(), heads_of(q), heads_of(k).transposed()}; }, 0.5f);
  agree("p @ v into heads", Shape{batch, heads, t, t}, Shape{batch, t, heads, dh}, Shape{batch, t, heads, dh},
        [](auto& c, auto& p, auto& v) {
          return std::tuple{c.view().permute({0, 2, 1, 3}), p.cview(), heads_of(v)};
        });
}

LNF_GPU_TEST_CASE("gpu matmul_backward: broadcast batch dims, per-head operands, a skipped gradient") {
  std::vector<std::array<Shape, 3>> const cases{
      {Shape{17, 33}, Shape{33, 3}, Shape{17, 3}},          {Shape{1, 257}, Shape{257, 5}, Shape{1, 5}},
      {Shape{4, 3, 5}, Shape{4, 5, 2}, Shape{4, 3, 2}},     {Shape{1, 3, 5}, Shape{4, 5, 2}, Shape{4, 3, 2}},
      {Shape{2, 1, 4, 5}, Shape{1, 3, 5, 6}, Shape{2, 3, 4, 6}}, {Shape{1, 1, 4, 5}, Shape{2, 3, 5, 6}, Shape{2, 3, 4, 6}},
  };
  for (auto const& [as, bs, cs] : cases) test::check_matmul_backward_agrees<Gpu>(as, bs, cs);
  Rng rng(6);
  std::int64_t const batch = 2, t = 5, heads = 3, dh = 4;
  auto qr = random_tensor<Reference>(Shape{batch, t, heads, dh}, rng), kr = random_tensor<Reference>(qr.shape(), rng);
  auto dsr = random_tensor<Reference>(Shape{batch, heads, t, t}, rng);
  auto qg = to_gpu(qr), kg = to_gpu(kr), dsg = to_gpu(dsr);
  Tensor<Reference> dqr(Shape{batch, heads, t, dh}), dktr(Shape{batch, heads, dh, t});
  Tensor<Gpu> dqg(dqr.shape()), dktg(dktr.shape()), db2(dktr.shape());
  ops::matmul_backward(Reference{}, dqr, dktr, dsr, heads_of(qr), heads_of(kr).transposed(), 0.5f);
  ops::matmul_backward(Gpu{}, dqg, dktg, dsg, heads_of(qg), heads_of(kg).transposed(), 0.5f);
  check_gpu_close(dqg, dqr, kMatmulRtol, kMatmulAtol, "dq");
  check_gpu_close(dktg, dktr, kMatmulRtol, kMatmulAtol, "dk^T");
  ops::matmul_backward(Gpu{}, View<Gpu>{}, db2, dsg, heads_of(qg), heads_of(kg).transposed(), 0.5f);
  check_gpu_close(db2, dktr, kMatmulRtol, kMatmulAtol, "db alone");
}

LNF_GPU_TEST_CASE("gpu linear forward and backward: bias, rank 3, dx assigns, dw and dbias accumulate") {
  for (std::int64_t rows : {1, 3, 257})
    for (auto [in, out] : std::vector<std::pair<std::int64_t, std::int64_t>>{{1, 1}, {33, 17}, {64, 64}})
      for (bool with_bias : {true, false}) {
        std::string const what = fmt::format("rows {} in {} out {} bias {}", rows, in, out, with_bias);
        Rng rng(static_cast<std::uint64_t>(std::hash<std::string>{}(what)));
        Shape const xs = rows == 3 ? Shape{1, 3, in} : Shape{rows, in}, ys = rows == 3 ? Shape{1, 3, out} : Shape{rows, out};
        auto xr = random_tensor<Reference>(xs, rng), wr = random_tensor<Reference>(Shape{out, in}, rng),
             br = random_tensor<Reference>(Shape{out}, rng), dyr = random_tensor<Reference>(ys, rng);
        auto yr = random_tensor<Reference>(ys, rng, 50.f, 60.f), dxr = random_tensor<Reference>(xs, rng),
             dwr = random_tensor<Reference>(Shape{out, in}, rng), dbr = random_tensor<Reference>(Shape{out}, rng);
        auto xg = to_gpu(xr), wg = to_gpu(wr), bg = to_gpu(br), dyg = to_gpu(dyr), yg = to_gpu(yr), dxg = to_gpu(dxr),
             dwg = to_gpu(dwr), dbg = to_gpu(dbr);
        CView<Reference> const bias_r = with_bias ? br.cview() : CView<Reference>{};
        CView<Gpu> const bias_g = with_bias ? bg.cview() : CView<Gpu>{};
        ops::linear_forward(Reference{}, yr, xr, wr, bias_r);
        ops::linear_forward(Gpu{}, yg, xg, wg, bias_g);
        check_gpu_close(yg, yr, kMatmulRtol, kMatmulAtol, "y " + what);
        Tensor<Reference> yr_relu(ys);
        Tensor<Gpu> yg_relu(ys);
        ops::linear_forward(Reference{}, yr_relu, xr, wr, bias_r, ops::Epilogue::relu);
        ops::linear_forward(Gpu{}, yg_relu, xg, wg, bias_g, ops::Epilogue::relu);
        check_gpu_close(yg_relu, yr_relu, kMatmulRtol, kMatmulAtol, "y with the relu epilogue " + what);
        for (int rep = 0; rep < 2; ++rep) {  // twice: dw and dbias keep accumulating, dx is reassigned
          ops::linear_backward(Reference{}, dxr, dwr, dbr, dyr, xr, wr);
          ops::linear_backward(Gpu{}, dxg, dwg, dbg, dyg, xg, wg);
          check_gpu_close(dxg, dxr, kMatmulRtol, kMatmulAtol, fmt::format("dx {} (call {})", what, rep + 1));
          check_gpu_close(dwg, dwr, kMatmulRtol, kMatmulAtol, fmt::format("dw {} (call {})", what, rep + 1));
          check_gpu_close(dbg, dbr, kMatmulRtol, kMatmulAtol, fmt::format("dbias {} (call {})", what, rep + 1));
        }
      }
}

LNF_GPU_TEST_CASE("gpu matmul: shape errors are the shared checks' ShapeError") {
  Tensor<Gpu> a(Shape{2, 3}), b(Shape{4, 5}), c(Shape{2, 5});
  CHECK_THROWS_AS(ops::matmul(Gpu{}, c.view(), a.cview(), b.cview()), ShapeError);
}
