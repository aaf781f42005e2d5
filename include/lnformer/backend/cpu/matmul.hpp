#pragma once
// CPU GEMMs: every op is one or more oneDNN matmul primitives reading the caller's views through
// their real strides (a transposed or per-head operand is never copied), with alpha as the output
// scale, beta as a sum post-op and the linear bias fused. Contract in ops/matmul.hpp.
//
// One cache entry per (dims, strides, bias, alpha, beta) in cpu::context() holds the primitive, its
// memory objects (rebound with set_data_handle) and the argument map, so a steady-state call builds a
// key in a reused buffer, looks it up and executes: nothing is created. The scratchpad is the
// context's per-thread workspace (user scratchpad mode), not the entry's: entries stay small however
// many shapes token-based batches produce.
//
// The one layout oneDNN has no fast kernel for, an operand with no unit stride in either of its last
// two dims (e.g. every other column), is packed into the context's workspace first.

#include <lnformer/backend/cpu/cpu.hpp>
#include <lnformer/ops/matmul.hpp>

#include <fmt/format.h>
#include <oneapi/dnnl/dnnl.hpp>

#include <algorithm>
#include <array>
#include <bit>
#include <cstdint>
#include <iterator>
#include <string>
#include <unordered_map>
#include <vector>

namespace lnformer::cpu::detail::gemm {

using Dims = std::array<std::int64_t, 4>;

/// The strides oneDNN is given for view v. A size-1 dim addresses nothing, so its stride is set to
/// what a row-major layout would have there (the span of the dims inside it): one-row operands and
/// broadcast batch dims then keep oneDNN's fast kernels and share cache entries whatever the caller's
/// stride was.
template <class T>
Dims dnnl_strides(TensorView<Cpu, T> const& v) {
  Dims s{};
  int const r = v.rank();
  std::int64_t span = 1;  // max extent of the dims inside the current one
  for (int i = r - 1; i >= 0; --i) {
    s[i] = v.size(i) == 1 ? span : v.strides()[i];
    span = std::max(span, s[i] * v.size(i));
  }
  return s;
}

/// oneDNN only has its reference kernel when neither of the last two dims has unit stride.
inline bool needs_pack(Dims const& s, int rank) { return s[rank - 1] != 1 && s[rank - 2] != 1; }

inline dnnl::memory::desc make_desc(int rank, std::int64_t const* dims, std::int64_t const* strides) {
  return dnnl::memory::desc(dnnl::memory::dims(dims, dims + rank), dnnl::memory::data_type::f32,
                            dnnl::memory::dims(strides, strides + rank));
}

/// One cached GEMM problem: c[..., m, n] = alpha a[..., m, k] @ b[..., k, n] (+ bias[n]) + beta c.
struct Entry : CacheEntryBase {
  dnnl::matmul prim;
  dnnl::memory a, b, c, bias, scratchpad;
  std::unordered_map<int, dnnl::memory> args;
  bool pack_a = false, pack_b = false;  // operands that need a row-major copy first
  std::size_t scratch_bytes = 0;        // 0: the primitive needs no scratchpad

  Entry(Context& ctx, CView<Cpu> av, Dims const& as, CView<Cpu> bv, Dims const& bs, View<Cpu> cv,
        Dims const& cs, CView<Cpu> biasv, float alpha, float beta) {
    int const r = cv.rank();
    auto const& eng = ctx.engine();
    auto desc_of = [&](auto const& v, Dims const& s, bool packed) {
      if (packed) {
        auto const rm = lnformer::detail::contiguous_strides(v.shape());
        return make_desc(r, v.shape().begin(), rm.data());
      }
      return make_desc(r, v.shape().begin(), s.data());
    };
    pack_a = needs_pack(as, r);
    pack_b = needs_pack(bs, r);
    auto const a_md = desc_of(av, as, pack_a);
    auto const b_md = desc_of(bv, bs, pack_b);
    auto const c_md = make_desc(r, cv.shape().begin(), cs.data());

    dnnl::primitive_attr attr;
    attr.set_scratchpad_mode(dnnl::scratchpad_mode::user);  // the context's workspace: no allocation per call
    if (alpha != 1.f) attr.set_output_scales(0, {alpha});
    if (beta != 0.f) {
      dnnl::post_ops po;
      po.append_sum(beta);
      attr.set_post_ops(po);
    }
    dnnl::matmul::primitive_desc pd;
    if (biasv.empty()) {
      pd = dnnl::matmul::primitive_desc(dnnl::matmul::desc(a_md, b_md, c_md), attr, eng);
    } else {
      // bias [n] broadcast over every dim but the last: dims [1, ..., 1, n].
      std::int64_t const n = cv.size(-1);
      std::array<std::int64_t, 4> bd{1, 1, 1, 1}, bst{};
      bd[r - 1] = n;
      for (int i = 0; i < r; ++i) bst[i] = i == r - 1 ? (n == 1 ? 1 : biasv.stride(0)) : n * biasv.stride(0);
      pd = dnnl::matmul::primitive_desc(
          dnnl::matmul::desc(a_md, b_md, make_desc(r, bd.data(), bst.data()), c_md), attr, eng);
      bias = dnnl::memory(pd.bias_desc(), eng, DNNL_MEMORY_NONE);
    }
    prim = dnnl::matmul(pd);
    a = dnnl::memory(a_md, eng, DNNL_MEMORY_NONE);
    b = dnnl::memory(b_md, eng, DNNL_MEMORY_NONE);
    c = dnnl::memory(c_md, eng, DNNL_MEMORY_NONE);
    args = {{DNNL_ARG_SRC, a}, {DNNL_ARG_WEIGHTS, b}, {DNNL_ARG_DST, c}};
    if (!biasv.empty()) args.emplace(DNNL_ARG_BIAS, bias);
    scratch_bytes = pd.scratchpad_desc().get_size();
    if (scratch_bytes != 0) {
      scratchpad = dnnl::memory(pd.scratchpad_desc(), eng, DNNL_MEMORY_NONE);
      args.emplace(DNNL_ARG_SCRATCHPAD, scratchpad);
    }
  }
};

/// Row-major copy of a rank <= 4 view (any strides) into dst.
inline void pack(float* dst, CView<Cpu> v) {
  Dims d{1, 1, 1, 1}, s{0, 0, 0, 0};
  int const off = 4 - v.rank();
  for (int i = 0; i < v.rank(); ++i) d[off + i] = v.size(i), s[off + i] = v.strides()[i];
  std::int64_t const rows = d[0] * d[1] * d[2];
  float const* src = v.data();
#pragma omp parallel for schedule(static) if (rows * d[3] > 16384)
  for (std::int64_t r = 0; r < rows; ++r) {
    std::int64_t const i0 = r / (d[1] * d[2]), i1 = r / d[2] % d[1], i2 = r % d[2];
    float const* row = src + i0 * s[0] + i1 * s[1] + i2 * s[2];
    float* out = dst + r * d[3];
    for (std::int64_t j = 0; j < d[3]; ++j) out[j] = row[j * s[3]];
  }
}

template <class T>
void append_view(std::string& key, char tag, TensorView<Cpu, T> const& v, Dims const& s) {
  fmt::format_to(std::back_inserter(key), "{}[{}|{}]", tag,
                 fmt::join(v.shape().begin(), v.shape().end(), ","),
                 fmt::join(s.begin(), s.begin() + v.rank(), ","));
}

/// c = alpha a @ b (+ bias) + beta c, all rank r in 2..4, shapes already checked; bias empty or [n].
inline void run(View<Cpu> c, CView<Cpu> a, CView<Cpu> b, CView<Cpu> bias, float alpha, float beta) {
  if (c.numel() == 0) return;
  if (a.size(-1) == 0) {
    // k = 0: the product is zero, so c = beta c + bias (oneDNN is not asked about empty reductions).
    Dims d{1, 1, 1, 1}, s{0, 0, 0, 0};
    int const off = 4 - c.rank();
    for (int i = 0; i < c.rank(); ++i) d[off + i] = c.size(i), s[off + i] = c.strides()[i];
    for (std::int64_t i0 = 0; i0 < d[0]; ++i0)
      for (std::int64_t i1 = 0; i1 < d[1]; ++i1)
        for (std::int64_t i2 = 0; i2 < d[2]; ++i2) {
          float* row = c.data() + i0 * s[0] + i1 * s[1] + i2 * s[2];
          for (std::int64_t j = 0; j < d[3]; ++j) {
            float const add = bias.empty() ? 0.f : bias.data()[j * bias.stride(0)];
            row[j] = (beta == 0.f ? 0.f : beta * row[j]) + add;
          }
        }
    return;
  }
  int const r = c.rank();
  for (int i = 0; i < r - 2; ++i) {
    if (c.size(i) > 1 && a.size(i) == 1 && b.size(i) == 1) {
      // oneDNN wants c's batch dims to be those of a or b: the same product goes to each slice of c.
      Dims d{};
      for (int j = 0; j < r; ++j) d[j] = c.size(j);
      d[i] = 1;
      Shape const s = Shape::from(d.begin(), d.begin() + r);
      for (std::int64_t j = 0; j < c.size(i); ++j)
        run(View<Cpu>(c.data() + j * c.strides()[i], s, c.strides()), a, b, bias, alpha, beta);
      return;
    }
  }
  Dims const as = dnnl_strides(a), bs = dnnl_strides(b), cs = dnnl_strides(c);

  // The key names the problem completely; it is built in a per-thread buffer that keeps its capacity.
  thread_local std::string key;
  key.clear();
  key += "matmul:";
  append_view(key, 'a', a, as);
  append_view(key, 'b', b, bs);
  append_view(key, 'c', c, cs);
  fmt::format_to(std::back_inserter(key), "bias{}:{}|alpha{:08x}|beta{:08x}", bias.empty() ? 0 : 1,
                 bias.empty() ? 0 : bias.stride(0), std::bit_cast<std::uint32_t>(alpha),
                 std::bit_cast<std::uint32_t>(beta));

  auto& ctx = context();
  auto& entry = ctx.cached<Entry>(key, [&] { return Entry(ctx, a, as, b, bs, c, cs, bias, alpha, beta); });
  float const* a_data = a.data();
  float const* b_data = b.data();
  auto packed = [&](int slot, CView<Cpu> v) {
    auto* dst = static_cast<float*>(ctx.workspace(slot, static_cast<std::size_t>(v.numel()) * sizeof(float)));
    pack(dst, v);
    return dst;
  };
  if (entry.pack_a) a_data = packed(1, a);
  if (entry.pack_b) b_data = packed(2, b);
  LNF_DNNL_CHECK(if (entry.scratch_bytes != 0) entry.scratchpad.set_data_handle(ctx.workspace(0, entry.scratch_bytes));
                 entry.a.set_data_handle(const_cast<float*>(a_data));
                 entry.b.set_data_handle(const_cast<float*>(b_data)); entry.c.set_data_handle(c.data());
                 if (!bias.empty()) entry.bias.set_data_handle(const_cast<float*>(bias.data()));
                 entry.prim.execute(ctx.stream(), entry.args); ctx.stream().wait());
}

using ops::detail::gemm::rows_of;
using ops::detail::gemm::swap_last2;

/// c = alpha x @ y where c may be 1 in batch dims where x or y are not: the product is summed over
/// those dims (the gradient of a broadcast operand), one GEMM per index of the summed dims, the first
/// assigning and the rest accumulating (ops::detail::gemm::for_each_reduced); all share one primitive.
inline void run_reduce(View<Cpu> c, CView<Cpu> x, CView<Cpu> y, float alpha) {
  ops::detail::gemm::for_each_reduced(
      c, x, y, [&](View<Cpu> cs, CView<Cpu> xs, CView<Cpu> ys, float beta) { run(cs, xs, ys, {}, alpha, beta); });
}

/// dbias[j] += sum_i dy[i, j] for dy [rows, out], accumulated in double.
inline void column_sums_add(View<Cpu> dbias, CView<Cpu> dy) {
  std::int64_t const rows = dy.size(0), cols = dy.size(1);
  std::int64_t const s0 = dy.stride(0), s1 = dy.stride(1), sb = dbias.stride(0);
  float const* src = dy.data();
  float* out = dbias.data();
  if (rows == 0 || cols == 0) return;
  if (s1 != 1) {  // columns not contiguous (rare): one column at a time
#pragma omp parallel for schedule(static) if (rows * cols > 32768)
    for (std::int64_t j = 0; j < cols; ++j) {
      double acc = 0;
      for (std::int64_t i = 0; i < rows; ++i) acc += src[i * s0 + j * s1];
      out[j * sb] += static_cast<float>(acc);
    }
    return;
  }
  // Rows stream contiguously: each fixed chunk of kRows rows gives a partial sum per column (double),
  // then the partials are added in chunk order. The chunks do not depend on the thread count, so
  // neither does the result. (Walking 64-column blocks down all rows instead read 256 bytes per row
  // at a row stride: 1.2-1.7x slower, more with AVX2 code.)
  constexpr std::int64_t kRows = 64;
  std::int64_t const chunks = (rows + kRows - 1) / kRows;
  thread_local std::vector<double> partial;  // the caller's thread: reused across calls
  partial.resize(static_cast<std::size_t>(chunks * cols));
  double* part = partial.data();
  bool const parallel = rows * cols > 32768;
#pragma omp parallel if (parallel)
  {
#pragma omp for schedule(static)
    for (std::int64_t c = 0; c < chunks; ++c) {
      double* acc = part + c * cols;
      std::int64_t const r0 = c * kRows, r1 = std::min(rows, r0 + kRows);
      float const* first = src + r0 * s0;
#pragma omp simd
      for (std::int64_t j = 0; j < cols; ++j) acc[j] = first[j];
      for (std::int64_t i = r0 + 1; i < r1; ++i) {
        float const* row = src + i * s0;
#pragma omp simd
        for (std::int64_t j = 0; j < cols; ++j) acc[j] += row[j];
      }
    }
#pragma omp for schedule(static)
    for (std::int64_t j = 0; j < cols; ++j) {
      double s = 0;
      for (std::int64_t c = 0; c < chunks; ++c) s += part[c * cols + j];
      out[j * sb] += static_cast<float>(s);
    }
  }
}

}  // namespace lnformer::cpu::detail::gemm

namespace lnformer::ops {

inline void matmul(Cpu, View<Cpu> c, CView<Cpu> a, CView<Cpu> b, float alpha = 1.f, float beta = 0.f) {
  check::matmul<Cpu>(c, a, b, alpha, beta);
  cpu::detail::gemm::run(c, a, b, {}, alpha, beta);
}

inline void matmul_backward(Cpu, View<Cpu> da, View<Cpu> db, CView<Cpu> dc, CView<Cpu> a, CView<Cpu> b,
                            float alpha = 1.f) {
  check::matmul_backward<Cpu>(da, db, dc, a, b, alpha);
  namespace gm = cpu::detail::gemm;
  if (!da.empty()) gm::run_reduce(da, dc, gm::swap_last2(b), alpha);  // [.., m, n] @ [.., n, k]
  if (!db.empty()) gm::run_reduce(db, gm::swap_last2(a), dc, alpha);  // [.., k, m] @ [.., m, n]
}

inline void linear_forward(Cpu, View<Cpu> y, CView<Cpu> x, CView<Cpu> w, CView<Cpu> bias) {
  check::linear_forward<Cpu>(y, x, w, bias);
  namespace gm = cpu::detail::gemm;
  // y [N, out] = x [N, in] @ w^T [in, out]: w read through transposed strides, bias fused.
  gm::run(gm::rows_of(y), gm::rows_of(x), gm::swap_last2(w), bias, 1.f, 0.f);
}

inline void linear_backward(Cpu, View<Cpu> dx, View<Cpu> dw, View<Cpu> dbias, CView<Cpu> dy, CView<Cpu> x,
                            CView<Cpu> w) {
  check::linear_backward<Cpu>(dx, dw, dbias, dy, x, w);
  namespace gm = cpu::detail::gemm;
  auto const dy2 = gm::rows_of(dy);
  if (!dx.empty()) gm::run(gm::rows_of(dx), dy2, w, {}, 1.f, 0.f);                  // [N, out] @ [out, in]
  if (!dw.empty()) gm::run(dw, gm::swap_last2(dy2), gm::rows_of(x), {}, 1.f, 1.f);  // [out, N] @ [N, in]
  if (!dbias.empty()) gm::column_sums_add(dbias, dy2);
}

}  // namespace lnformer::ops
