// bench_matmul: the library's GEMM ops (ops::matmul, ops::linear_forward, ops::linear_backward's dw)
// against a raw oneDNN matmul of the same problem (same layouts, primitive created once, outside the
// timing), in the same run, on the same buffers. Samples alternate between the two so that frequency
// and neighbour noise hit both alike; the ratio is the median of the ratios of adjacent samples.
//
//   OMP_NUM_THREADS=2 ./bench_matmul [seconds per side per shape, default 2.5] [only shapes containing]
//
// Prints per shape GFLOP/s through the library, GFLOP/s of raw oneDNN and their ratio, then the
// smallest ratio: the overhead of the library's dispatch (key, cache lookup, handle rebinding). A
// ratio above 1 is the library steering oneDNN off a slow kernel, which the raw call does not do
// (the [512, 512] dW row: b copied with zero columns appended so that c is [512, 544],
// cpu::detail::gemm::widened_n).

#include <lnformer/backend/cpu/cpu.hpp>
#include <lnformer/backend/cpu/matmul.hpp>
#include <lnformer/core/rng.hpp>

#include <fmt/format.h>
#include <omp.h>
#include <oneapi/dnnl/dnnl.hpp>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <functional>
#include <string>
#include <unordered_map>
#include <vector>

using namespace lnformer;
using dnnl::memory;

namespace {

using Clock = std::chrono::steady_clock;

Tensor<Cpu> random_tensor(Shape s, Rng& rng) {
  Tensor<Cpu> t(s);
  for (std::int64_t i = 0; i < t.numel(); ++i) t.data()[i] = rng.uniform(-1.f, 1.f);
  return t;
}

/// A raw oneDNN matmul bound once to fixed buffers: what a hand-written caller would do.
struct RawMatmul {
  dnnl::matmul prim;
  std::unordered_map<int, memory> args;

  RawMatmul(memory::desc const& src, memory::desc const& wei, memory::desc const* bias,
            memory::desc const& dst, float const* src_p, float const* wei_p, float const* bias_p,
            float* dst_p, float beta) {
    auto& ctx = cpu::context();
    dnnl::primitive_attr attr;
    if (beta != 0.f) {
      dnnl::post_ops po;
      po.append_sum(beta);
      attr.set_post_ops(po);
    }
    auto const d = bias ? dnnl::matmul::desc(src, wei, *bias, dst) : dnnl::matmul::desc(src, wei, dst);
    prim = dnnl::matmul(dnnl::matmul::primitive_desc(d, attr, ctx.engine()));
    auto mem = [&](memory::desc const& md, float const* p) {
      return memory(md, ctx.engine(), const_cast<float*>(p));
    };
    args = {{DNNL_ARG_SRC, mem(src, src_p)},
            {DNNL_ARG_WEIGHTS, mem(wei, wei_p)},
            {DNNL_ARG_DST, mem(dst, dst_p)}};
    if (bias) args.emplace(DNNL_ARG_BIAS, mem(*bias, bias_p));
  }
  void operator()() {
    auto& s = cpu::context().stream();
    prim.execute(s, args);
    s.wait();
  }
};

memory::desc md(memory::dims dims, memory::dims strides) {
  return memory::desc(dims, memory::data_type::f32, strides);
}

struct Case {
  std::string name;
  double flops;
  std::function<void()> lib, raw;
};

/// c[batch, m, n] = a[batch, m, k] @ b, b stored [batch, k, n] or (b_transposed) [batch, n, k].
struct MatmulProblem {
  Tensor<Cpu> a, b, c;
  MatmulProblem(std::int64_t batch, std::int64_t m, std::int64_t k, std::int64_t n, bool b_transposed,
                Rng& rng)
      : a(random_tensor(batch == 1 ? Shape{m, k} : Shape{batch, m, k}, rng)),
        b(random_tensor(batch == 1 ? (b_transposed ? Shape{n, k} : Shape{k, n})
                                   : (b_transposed ? Shape{batch, n, k} : Shape{batch, k, n}),
                        rng)),
        c(batch == 1 ? Shape{m, n} : Shape{batch, m, n}) {}
};

Case matmul_case(std::string name, std::int64_t batch, std::int64_t m, std::int64_t k, std::int64_t n,
                 bool b_transposed, Rng& rng) {
  auto p = std::make_shared<MatmulProblem>(batch, m, k, n, b_transposed, rng);
  memory::desc a_md, b_md, c_md;
  if (batch == 1) {
    a_md = md({m, k}, {k, 1});
    b_md = b_transposed ? md({k, n}, {1, k}) : md({k, n}, {n, 1});
    c_md = md({m, n}, {n, 1});
  } else {
    a_md = md({batch, m, k}, {m * k, k, 1});
    b_md = b_transposed ? md({batch, k, n}, {k * n, 1, k}) : md({batch, k, n}, {k * n, n, 1});
    c_md = md({batch, m, n}, {m * n, n, 1});
  }
  auto raw = std::make_shared<RawMatmul>(a_md, b_md, nullptr, c_md, p->a.data(), p->b.data(), nullptr,
                                         p->c.data(), 0.f);
  return {std::move(name), 2.0 * batch * m * n * k,
          [p, b_transposed] {
            CView<Cpu> b = p->b.cview();
            ops::matmul(Cpu{}, p->c, p->a, b_transposed ? b.transposed() : b);
          },
          [raw] { (*raw)(); }};
}

/// y[rows, out] = x[rows, in] @ w^T + bias, w [out, in].
Case linear_case(std::string name, std::int64_t rows, std::int64_t in, std::int64_t out, Rng& rng) {
  struct P {
    Tensor<Cpu> x, w, bias, y;
  };
  auto p = std::make_shared<P>(P{random_tensor(Shape{rows, in}, rng), random_tensor(Shape{out, in}, rng),
                                 random_tensor(Shape{out}, rng), Tensor<Cpu>(Shape{rows, out})});
  auto const bias_md = md({1, out}, {out, 1});
  auto raw = std::make_shared<RawMatmul>(md({rows, in}, {in, 1}), md({in, out}, {1, in}), &bias_md,
                                         md({rows, out}, {out, 1}), p->x.data(), p->w.data(), p->bias.data(),
                                         p->y.data(), 0.f);
  return {std::move(name), 2.0 * rows * in * out,
          [p] { ops::linear_forward(Cpu{}, p->y, p->x, p->w, p->bias); }, [raw] { (*raw)(); }};
}

/// dw[out, in] += dy[rows, out]^T @ x[rows, in] (linear_backward with only dw requested).
Case linear_dw_case(std::string name, std::int64_t rows, std::int64_t in, std::int64_t out, Rng& rng) {
  struct P {
    Tensor<Cpu> dy, x, w, dw;
  };
  auto p = std::make_shared<P>(P{random_tensor(Shape{rows, out}, rng), random_tensor(Shape{rows, in}, rng),
                                 random_tensor(Shape{out, in}, rng), Tensor<Cpu>(Shape{out, in})});
  auto raw = std::make_shared<RawMatmul>(md({out, rows}, {1, out}), md({rows, in}, {in, 1}), nullptr,
                                         md({out, in}, {in, 1}), p->dy.data(), p->x.data(), nullptr,
                                         p->dw.data(), 1.f);
  return {std::move(name), 2.0 * rows * in * out,
          [p] { ops::linear_backward(Cpu{}, View<Cpu>{}, p->dw, View<Cpu>{}, p->dy, p->x, p->w); },
          [raw] { (*raw)(); }};
}

double seconds(std::function<void()> const& f, int inner) {
  auto const t0 = Clock::now();
  for (int i = 0; i < inner; ++i) f();
  return std::chrono::duration<double>(Clock::now() - t0).count() / inner;
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  std::size_t const n = v.size();
  return n % 2 == 1 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

}  // namespace

int main(int argc, char** argv) {
  double const budget = argc > 1 ? std::atof(argv[1]) : 2.5;  // seconds per side per shape
  Rng rng(1);
  std::int64_t const tokens = 4096, d = 512;
  std::vector<Case> cases;
  cases.push_back(matmul_case("square 512", 1, 512, 512, 512, false, rng));
  cases.push_back(matmul_case("square 1024", 1, 1024, 1024, 1024, false, rng));
  cases.push_back(matmul_case("square 2048", 1, 2048, 2048, 2048, false, rng));
  cases.push_back(linear_case("QKV   x[4096,512] W^T[512,1536]", tokens, d, 3 * d, rng));
  cases.push_back(linear_case("proj  x[4096,512] W^T[512,512]", tokens, d, d, rng));
  cases.push_back(linear_case("FFN1  x[4096,512] W^T[512,1024]", tokens, d, 2 * d, rng));
  cases.push_back(linear_case("FFN2  x[4096,1024] W^T[1024,512]", tokens, 2 * d, d, rng));
  cases.push_back(matmul_case("attn  q[64,64,128] k^T[64,128,64]", 64, 64, 128, 64, true, rng));
  cases.push_back(matmul_case("attn  p[64,64,64] v[64,64,128]", 64, 64, 64, 128, false, rng));
  cases.push_back(linear_dw_case("dW    dy^T[512,4096] x[4096,512]", tokens, d, d, rng));
  cases.push_back(linear_dw_case("dW    dy^T[512,4096] x[4096,1024]", tokens, 2 * d, d, rng));

  fmt::print("bench_matmul: {} OpenMP threads, oneDNN {}.{}.{}, {:.1f} s per side per shape\n",
             omp_get_max_threads(), dnnl_version()->major, dnnl_version()->minor, dnnl_version()->patch,
             budget);
  fmt::print("{:<36} {:>14} {:>14} {:>7}\n", "shape", "lib GFLOP/s", "oneDNN GFLOP/s", "ratio");
  double min_ratio = INFINITY;
  std::string min_name;
  auto const start = Clock::now();
  std::string const only = argc > 2 ? argv[2] : "";
  for (auto& c : cases) {
    if (c.name.find(only) == std::string::npos) continue;
    // Warm up both (creates the library's cached primitive), then size the samples: each sample
    // runs `inner` calls (>= ~20 ms) and the two sides alternate sample by sample until the shape's
    // time budget is spent (wall clock, so a loaded machine does not stretch the run), >= 5 pairs.
    c.lib();
    c.raw();
    double const t1 = std::min(seconds(c.lib, 1), seconds(c.raw, 1));
    int const inner = std::max(1, static_cast<int>(std::ceil(0.02 / t1)));
    std::vector<double> lib, raw;
    auto const case_start = Clock::now();
    for (int s = 0;
         s < 5 || (s < 101 && std::chrono::duration<double>(Clock::now() - case_start).count() < 2 * budget);
         ++s) {
      if (s % 2 == 0) {
        lib.push_back(seconds(c.lib, inner));
        raw.push_back(seconds(c.raw, inner));
      } else {
        raw.push_back(seconds(c.raw, inner));
        lib.push_back(seconds(c.lib, inner));
      }
    }
    // The ratio is the median over adjacent (lib, raw) pairs, so load that drifts during the run
    // cancels out; the GFLOP/s columns are the medians of each side.
    std::vector<double> pair_ratio(lib.size());
    for (std::size_t i = 0; i < lib.size(); ++i) pair_ratio[i] = raw[i] / lib[i];
    double const g_lib = c.flops / median(lib) * 1e-9, g_raw = c.flops / median(raw) * 1e-9;
    double const ratio = median(pair_ratio);
    if (ratio < min_ratio) min_ratio = ratio, min_name = c.name;
    fmt::print("{:<36} {:>14.1f} {:>14.1f} {:>7.3f}\n", c.name, g_lib, g_raw, ratio);
    std::fflush(stdout);
  }
  fmt::print("min ratio {:.3f} ({}); {:.0f} s in all\n", min_ratio, min_name,
             std::chrono::duration<double>(Clock::now() - start).count());
  return 0;
}
