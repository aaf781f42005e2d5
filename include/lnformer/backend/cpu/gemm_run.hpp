#pragma once
// Running a CPU GEMM: find or build its cache entry (backend/cpu/gemm_entry.hpp), feed the operands as
// the entry says, execute, and the reductions and bias sums the backward ops need.
//
// The one layout oneDNN has no fast kernel for, an operand with no unit stride in either of its last
// two dims (e.g. every other column), is packed into the context's workspace first.

#include <lnformer/backend/cpu/cpu.hpp>
#include <lnformer/backend/cpu/gemm_entry.hpp>
#include <lnformer/backend/cpu/gemm_math.hpp>
#include <lnformer/ops/matmul.hpp>

#include <fmt/format.h>
#include <oneapi/dnnl/dnnl.hpp>

#include <algorithm>
#include <array>
#include <atomic>
#include <bit>
#include <cstdint>
#include <iterator>
#include <string>
#include <string_view>
#include <type_traits>
#include <unordered_map>
#include <vector>

namespace lnformer::cpu::detail::gemm {

/// Elements needed to hold a layout of `shape` with strides `s` (1 + the largest offset).
inline std::int64_t span_of(Shape const& shape, Dims const& s) {
  std::int64_t last = 0;
  for (int i = 0; i < shape.rank(); ++i) last += (shape[i] - 1) * s[i];
  return last + 1;
}

/// copy_view's f for bf16 operands: to_bf16_bits, with contiguous rows converted by to_bf16_row.
struct ToBf16 {
  std::uint16_t operator()(float x) const { return to_bf16_bits(x); }
};

/// dst[offset under dst_strides] = f(v[i]) (or f(v[i], dst[...]) where f takes two) for every index i
/// of the rank <= 4 view v, walking v's memory in order (the dim of smallest stride innermost) so a transposed operand streams too.
/// Elements of dst that no index reaches are left as they were (the primitive never reads them).
template <class Out, class F>
void copy_view(Out* dst, CView<Cpu> v, Dims const& dst_strides, F f) {
  struct Dim {
    std::int64_t size, src, dst;
  };
  std::array<Dim, 4> d{Dim{1, 0, 0}, Dim{1, 0, 0}, Dim{1, 0, 0}, Dim{1, 0, 0}};
  int const off = 4 - v.rank();
  for (int i = 0; i < v.rank(); ++i) d[off + i] = Dim{v.size(i), v.strides()[i], dst_strides[i]};
  // Size-1 dims address nothing; the rest go outermost-first by source stride.
  std::stable_sort(d.begin(), d.end(), [](Dim const& x, Dim const& y) {
    return (x.size == 1 ? -1 : x.src) > (y.size == 1 ? -1 : y.src);
  });
  std::stable_partition(d.begin(), d.end(), [](Dim const& x) { return x.size == 1; });
  std::int64_t const rows = d[0].size * d[1].size * d[2].size, cols = d[3].size;
  float const* src = v.data();
#pragma omp parallel for schedule(static) if (rows * cols > 16384)
  for (std::int64_t r = 0; r < rows; ++r) {
    std::int64_t const i0 = r / (d[1].size * d[2].size), i1 = r / d[2].size % d[1].size, i2 = r % d[2].size;
    float const* in = src + i0 * d[0].src + i1 * d[1].src + i2 * d[2].src;
    Out* out = dst + i0 * d[0].dst + i1 * d[1].dst + i2 * d[2].dst;
    std::int64_t const si = d[3].src, so = d[3].dst;
    if constexpr (std::is_invocable_v<F, float, Out>) {  // f(value, what dst held)
      for (std::int64_t j = 0; j < cols; ++j) out[j * so] = f(in[j * si], out[j * so]);
    } else if (si == 1 && so == 1) {
      if constexpr (std::is_same_v<F, ToBf16>) {
        to_bf16_row(out, in, cols);  // AVX-512 where the CPU has it
      } else {
#pragma omp simd
        for (std::int64_t j = 0; j < cols; ++j) out[j] = f(in[j]);
      }
    } else {
      for (std::int64_t j = 0; j < cols; ++j) out[j * so] = f(in[j * si]);
    }
  }
}

/// b [k, n] copied row-major into workspace slot 2 with rows `wide` long, columns n.. zero.
inline float* widened_copy(Context& ctx, CView<Cpu> b, std::int64_t wide) {
  std::int64_t const k = b.size(-2), n = b.size(-1);
  auto* dst = static_cast<float*>(ctx.workspace(2, static_cast<std::size_t>(k * wide) * sizeof(float)));
  copy_view(dst, b, Dims{wide, 1, 0, 0}, [](float x) { return x; });
#pragma omp parallel for schedule(static) if (k * (wide - n) > 16384)
  for (std::int64_t i = 0; i < k; ++i) std::fill(dst + i * wide + n, dst + (i + 1) * wide, 0.f);
  return dst;
}

/// c = w + beta c, where w holds c's values laid out as `strides` (the primitive's c in the workspace,
/// alpha already applied; wider than c where widened).
inline void copy_out(View<Cpu> c, float const* w, Dims const& strides, float beta) {
  Strides ws{};
  std::copy(strides.begin(), strides.begin() + c.rank(), ws.begin());
  CView<Cpu> const computed(w, c.shape(), ws);
  Dims cs{};
  std::copy(c.strides().begin(), c.strides().begin() + c.rank(), cs.begin());
  if (beta == 0.f)
    copy_view(c.data(), computed, cs, [](float x) { return x; });
  else
    copy_view(c.data(), computed, cs, [beta](float x, float old) { return x + beta * old; });
}

template <class T>
void append_view(std::string& key, char tag, TensorView<Cpu, T> const& v, Dims const& s) {
  fmt::format_to(std::back_inserter(key), "{}[{}|{}]", tag,
                 fmt::join(v.shape().begin(), v.shape().end(), ","),
                 fmt::join(s.begin(), s.begin() + v.rank(), ","));
}

/// The cached problem for these operands (built the first time they are seen): a, b, c of rank
/// 2..4 with c's batch dims those of a or b, k > 0.
inline Entry& entry_for(Context& ctx, View<Cpu> c, CView<Cpu> a, CView<Cpu> b, CView<Cpu> bias, float alpha,
                        float beta, bool relu) {
  Dims const as = dnnl_strides(a), bs = dnnl_strides(b), cs = dnnl_strides(c);
  // The key names the problem completely; it is built in a per-thread buffer that keeps its capacity.
  thread_local std::string key;
  key.clear();
  key += "matmul:";
  append_view(key, 'a', a, as);
  append_view(key, 'b', b, bs);
  append_view(key, 'c', c, cs);
  GemmMath const math = gemm_math();
  fmt::format_to(std::back_inserter(key), "bias{}:{}|alpha{:08x}|beta{:08x}|{}|relu{}", bias.empty() ? 0 : 1,
                 bias.empty() ? 0 : bias.stride(0), std::bit_cast<std::uint32_t>(alpha),
                 std::bit_cast<std::uint32_t>(beta), to_string(math), relu ? 1 : 0);
  return ctx.cached<Entry>(key, [&] { return Entry(ctx, a, as, b, bs, c, cs, bias, alpha, beta, math, relu); });
}

/// oneDNN's name for the kernel that c = a @ b runs on here, and how a and b reach it (for tests and
/// benchmarks: which layouts leave the gemm-based implementation, and at what copy).
struct GemmPlan {
  std::string implementation;
  Feed feed_a, feed_b;
  std::int64_t wide_n;  // widened_n where the problem is computed wider, else 0
};
inline GemmPlan plan(View<Cpu> c, CView<Cpu> a, CView<Cpu> b, float alpha = 1.f, float beta = 0.f) {
  auto& e = entry_for(context(), c, a, b, {}, alpha, beta, false);
  return {e.implementation, e.feed_a, e.feed_b, e.wide_n};
}

/// c = alpha a @ b (+ bias) + beta c, all rank r in 2..4, shapes already checked; bias empty or [n].
/// relu (with beta = 0 only): c = relu(alpha a @ b + bias), applied by the primitive as it writes c.
inline void run(View<Cpu> c, CView<Cpu> a, CView<Cpu> b, CView<Cpu> bias, float alpha, float beta,
                bool relu = false) {
  LNF_EXPECTS_AS(ValueError, !relu || beta == 0.f, "gemm: a relu epilogue with beta = {}; it needs beta = 0", beta);
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
            float const v = (beta == 0.f ? 0.f : beta * row[j]) + add;
            row[j] = relu && v <= 0.f ? 0.f : v;
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
        run(View<Cpu>(c.data() + j * c.strides()[i], s, c.strides()), a, b, bias, alpha, beta, relu);
      return;
    }
  }
  auto& ctx = context();
  auto& entry = entry_for(ctx, c, a, b, bias, alpha, beta, relu);
  // The operand as the primitive reads it: the caller's memory, or a copy in workspace slot `slot`.
  auto fed = [&](int slot, CView<Cpu> v, Feed feed, Dims const& s) -> void* {
    if (feed == Feed::as_is) return const_cast<float*>(v.data());
    auto const n = static_cast<std::size_t>(span_of(v.shape(), s));
    if (feed == Feed::bf16) {
      auto* dst = static_cast<std::uint16_t*>(ctx.workspace(slot, n * sizeof(std::uint16_t)));
      copy_view(dst, v, s, ToBf16{});
      return dst;
    }
    auto* dst = static_cast<float*>(ctx.workspace(slot, n * sizeof(float)));
    if (feed == Feed::pack)
      copy_view(dst, v, s, [](float x) { return x; });
    else
      copy_view(dst, v, s, [](float x) { return round_to_bf16(x); });
    return dst;
  };
  std::int64_t const wide = entry.wide_n;
  void* const a_data = fed(1, a, entry.feed_a, entry.a_strides);
  void* const b_data = wide == 0 ? fed(2, b, entry.feed_b, entry.b_strides) : widened_copy(ctx, b, wide);
  Shape const c_computed = wide == 0 ? c.shape() : c.shape().with_last(wide);
  float* const c_data = entry.c_in_workspace
                            ? static_cast<float*>(ctx.workspace(3, static_cast<std::size_t>(span_of(c_computed, entry.c_strides)) * sizeof(float)))
                            : c.data();
  LNF_DNNL_CHECK(if (entry.scratch_bytes != 0) entry.scratchpad.set_data_handle(ctx.workspace(0, entry.scratch_bytes));
                 entry.a.set_data_handle(a_data); entry.b.set_data_handle(b_data); entry.c.set_data_handle(c_data);
                 if (!bias.empty()) entry.bias.set_data_handle(const_cast<float*>(bias.data()));
                 entry.prim.execute(ctx.stream(), entry.args); ctx.stream().wait());
  if (entry.c_in_workspace) copy_out(c, c_data, entry.c_strides, beta);
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
