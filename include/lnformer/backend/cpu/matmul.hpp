#pragma once
// CPU GEMMs: every op is one or more oneDNN matmul primitives reading the caller's views through
// their real strides (a transposed or per-head operand is never copied), with alpha as the output
// scale, beta as a sum post-op, and the linear bias (and a ReLU epilogue, an eltwise post-op) fused.
// Contract in ops/matmul.hpp.
//
// One cache entry per (dims, strides, bias, alpha, beta, math, relu) in cpu::context() holds the primitive, its
// memory objects (rebound with set_data_handle) and the argument map, so a steady-state call builds a
// key in a reused buffer, looks it up and executes: nothing is created. The scratchpad is the
// context's per-thread workspace (user scratchpad mode), not the entry's: entries stay small however
// many shapes token-based batches produce.
//
// The one layout oneDNN has no fast kernel for, an operand with no unit stride in either of its last
// two dims (e.g. every other column), is packed into the context's workspace first.
//
// Which of oneDNN's kernels runs a problem is settled once per entry (see Entry): its gemm-based
// matmul ignores the scratchpad and mallocs inside calls, so where oneDNN has brgemm (AVX-512) strided
// operands are copied compact to reach it; where gemm-based is all there is (AVX2) the layouts its
// no-copy kernel reads slowly are re-laid instead.
//
// GEMM math (cpu::set_gemm_math): f32 (the default), or bf16: both operands rounded to bfloat16
// (round to nearest even), products accumulated in f32 into the f32 output, weights and everything
// else staying f32 (mixed precision with f32 master weights). Where oneDNN has bf16 matmul kernels
// (AVX-512 CPUs; native_bf16_gemm()) the operands are converted to bf16 in the workspace, keeping
// their strides, and the bf16 kernels run. Elsewhere (oneDNN 2.6 has no bf16 matmul for AVX2) the
// same numbers are computed by rounding the operands to bf16 values stored as f32 and running the
// f32 kernel: a product of two bf16 values is exact in f32, so the result differs from the native
// one only in summation order. That keeps bf16 training testable on every CPU, at f32 speed plus
// the rounding pass, never faster.

#include <lnformer/backend/cpu/cpu.hpp>
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

namespace lnformer::cpu {

/// What the CPU GEMMs compute in: see the comment at the top of this file.
enum class GemmMath { f32, bf16 };

[[nodiscard]] inline std::string_view to_string(GemmMath m) { return m == GemmMath::bf16 ? "bf16" : "f32"; }

/// "f32" or "bf16"; anything else is a ValueError naming the choices.
[[nodiscard]] inline GemmMath parse_gemm_math(std::string_view s) {
  if (s == "f32") return GemmMath::f32;
  if (s == "bf16") return GemmMath::bf16;
  throw ValueError(fmt::format("GEMM math '{}': expected f32 or bf16", s));
}

namespace detail {
inline std::atomic<GemmMath>& gemm_math_state() {
  static std::atomic<GemmMath> m{GemmMath::f32};
  return m;
}
}  // namespace detail

/// The math of every CPU GEMM from now on, process-wide (all threads). Primitives are cached per
/// math, so switching back and forth costs nothing after the first use of each.
inline void set_gemm_math(GemmMath m) { detail::gemm_math_state().store(m, std::memory_order_relaxed); }
[[nodiscard]] inline GemmMath gemm_math() { return detail::gemm_math_state().load(std::memory_order_relaxed); }

/// Sets the GEMM math for a scope and restores the previous one on leaving it.
class ScopedGemmMath {
 public:
  explicit ScopedGemmMath(GemmMath m) : previous_(gemm_math()) { set_gemm_math(m); }
  ~ScopedGemmMath() { set_gemm_math(previous_); }
  ScopedGemmMath(ScopedGemmMath const&) = delete;
  ScopedGemmMath& operator=(ScopedGemmMath const&) = delete;

 private:
  GemmMath previous_;
};

/// x rounded to the nearest bfloat16 (ties to even), as its 16 bits. NaN stays a (quiet) NaN;
/// values beyond the largest bf16 round to infinity, as IEEE rounding does.
[[nodiscard]] inline std::uint16_t to_bf16_bits(float x) {
  std::uint32_t u = std::bit_cast<std::uint32_t>(x);
  if ((u & 0x7fffffffu) > 0x7f800000u) return static_cast<std::uint16_t>((u >> 16) | 0x40u);
  u += 0x7fffu + ((u >> 16) & 1u);
  return static_cast<std::uint16_t>(u >> 16);
}
/// x rounded to the nearest bfloat16, as a float (exactly representable).
[[nodiscard]] inline float round_to_bf16(float x) {
  return std::bit_cast<float>(static_cast<std::uint32_t>(to_bf16_bits(x)) << 16);
}

/// Whether oneDNN has bf16 matmul kernels on this CPU (asked once, with a small problem). Without
/// them GemmMath::bf16 is emulated: same numbers, not faster than f32.
[[nodiscard]] inline bool native_bf16_gemm() {
  static bool const native = [] {
    try {
      dnnl::engine eng(dnnl::engine::kind::cpu, 0);
      using dt = dnnl::memory::data_type;
      using tag = dnnl::memory::format_tag;
      dnnl::memory::desc const a({64, 64}, dt::bf16, tag::ab), c({64, 64}, dt::f32, tag::ab);
      dnnl::matmul::primitive_desc const pd(dnnl::matmul::desc(a, a, c), eng);
      return true;
    } catch (dnnl::error const&) {
      return false;
    }
  }();
  return native;
}

/// Whether oneDNN has a matmul other than its gemm-based one for compact f32 batches on this CPU
/// (brgemm, AVX-512 and newer; asked once). Without it the gemm-based one runs every product.
[[nodiscard]] inline bool compact_batches_leave_gemm() {
  static bool const yes = [] {
    try {
      dnnl::engine eng(dnnl::engine::kind::cpu, 0);
      using dt = dnnl::memory::data_type;
      using tag = dnnl::memory::format_tag;
      dnnl::memory::desc const x({4, 32, 32}, dt::f32, tag::abc);
      std::string_view const impl = dnnl::matmul::primitive_desc(dnnl::matmul::desc(x, x, x), eng).impl_info_str();
      return impl.substr(0, 5) != "gemm:";
    } catch (dnnl::error const&) {
      return false;
    }
  }();
  return yes;
}

}  // namespace lnformer::cpu

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

/// The row stride b is re-laid with where padding_pays.
inline std::int64_t padded_ld(std::int64_t n) { return n + 16; }

/// oneDNN 2.6's f32 GEMM reads a and b in place (its "no-copy" kernel) when c is about [512, 512] or
/// smaller, and that kernel loses a third of its speed when b's rows lie a power of two apart (taken
/// here as a multiple of 256 floats; measured at 512): at
/// c [512, 512], k 4,096, 2 threads (AVX2), b with rows 512 floats apart ran at ~30 ms, the same b
/// with rows 528 apart at ~21 (a transposed or row-major a alike; c's and a's strides made no
/// difference). The weight gradient of a d x d projection is this product, dy^T @ x, so b is copied
/// into the workspace with padded rows first: ~2 ms for a [4096, 512] b. Larger c go through
/// oneDNN's packing kernels, which do not care, and a short k leaves nothing to save. Where
/// widened_n applies (c [512, 512] among others) it does better and is used instead.
inline bool padding_pays(Shape const& a, Dims const& bs, Shape const& c, int rank) {
  for (int i = 0; i < rank - 2; ++i)
    if (c[i] != 1) return false;
  std::int64_t const m = c[rank - 2], n = c[rank - 1], k = a[rank - 1];
  bool const pow2_rows = bs[rank - 1] == 1 && bs[rank - 2] % 256 == 0;
  return pow2_rows && m >= 256 && m <= 512 && n >= 256 && n <= 512 && k >= 1024;
}

/// Whether oneDNN 2.6's f32 GEMM sends c [m, n] to its no-copy kernel regardless of k: it does so
/// when 1/m + 1/n >= 0.0038 (measured here: m 512 with n 536 went there, n 544 did not).
inline bool dnnl_forces_nocopy(std::int64_t m, std::int64_t n) { return 1.0 / m + 1.0 / n >= 0.0038; }

/// The width n' > n that c and b are widened to for oneDNN, or 0 where widening does not pay.
/// The no-copy kernel is slow when an operand's rows (a^T's columns) lie a multiple of 256 floats
/// apart, and padding b's rows (padding_pays) mends only half of it: c [512, 512] = dy^T [512, 4096]
/// @ x [4096, 512], the weight gradient of every d x d projection at d 512, ran at ~90 GFLOP/s that
/// way (2 threads, AVX2), ~125-140 with both a and b padded, and ~120-130 counting only the useful
/// columns when b is copied with n' - n zero columns appended so that c [512, 544] goes to oneDNN's
/// packing kernel instead; that last costs one copy (of b, as padding does) where padding a too
/// would cost two. So: a 2-D problem (not a batch) without bias, k >= 1,024, a c oneDNN sends to
/// no-copy with an operand whose leading stride is a multiple of 256 floats, and an n' (a multiple
/// of 16) that leaves no-copy and is at most 1/8 wider than n. Columns of c beyond n are computed in
/// the workspace and dropped. (With c [496, 496] and no power-of-two strides, no-copy ran at
/// ~125-145: it is the strides, not the kernel, that are slow.)
inline std::int64_t widened_n(Shape const& a, Dims const& as, Dims const& bs, Shape const& c, int rank,
                              bool has_bias) {
  if (rank != 2) return 0;
  std::int64_t const m = c[0], n = c[1], k = a[1];
  auto pow2_rows = [&](Dims const& s) {
    std::int64_t const ld = s[1] == 1 ? s[0] : s[1];
    return ld % 256 == 0;
  };
  if (has_bias || k < 1024 || m < 256 || n < 256 || !dnnl_forces_nocopy(m, n) || !(pow2_rows(as) || pow2_rows(bs)))
    return 0;
  std::int64_t wide = (n + 15) / 16 * 16;
  while (dnnl_forces_nocopy(m, wide) && wide * 8 <= n * 9) wide += 16;
  return wide * 8 <= n * 9 && !dnnl_forces_nocopy(m, wide) ? wide : 0;
}

inline dnnl::memory::desc make_desc(int rank, std::int64_t const* dims, std::int64_t const* strides,
                                    dnnl::memory::data_type type = dnnl::memory::data_type::f32) {
  return dnnl::memory::desc(dnnl::memory::dims(dims, dims + rank), type, dnnl::memory::dims(strides, strides + rank));
}

/// Compact strides for `shape` with its dims in the order of `s` (largest stride outermost; ties keep
/// their order): the densest copy of a view that keeps its layout, so that a transposed operand
/// stays transposed and the copy reads and writes in the same order.
inline Dims compact_like(Shape const& shape, Dims const& s, int rank) {
  std::array<int, 4> order{0, 1, 2, 3};
  std::stable_sort(order.begin(), order.begin() + rank, [&](int x, int y) { return s[x] > s[y]; });
  Dims out{};
  std::int64_t span = 1;
  for (int i = rank - 1; i >= 0; --i) {
    out[order[i]] = span;
    span *= shape[order[i]];
  }
  return out;
}

/// Whether oneDNN picked its gemm-based matmul ("gemm:jit"; every matmul on CPUs without AVX-512).
/// That implementation ignores the user scratchpad: on AVX-512 CPUs oneDNN 2.6's no-copy sgemm
/// driver mallocs a ~74 KiB workspace (BK 384 x 48 floats) on every call, and the batched matmul calls
/// it once per batch member, so a strided attention product made ~128 allocations per execution;
/// its copy-based driver mallocs its packing buffers per call on every ISA.
inline bool is_gemm_impl(dnnl::matmul::primitive_desc const& pd) {
  std::string_view const impl = pd.impl_info_str();
  return impl.substr(0, 5) == "gemm:";
}

/// How an operand reaches the primitive.
enum class Feed : std::uint8_t {
  as_is,        // the caller's memory, through its strides
  pack,         // an f32 copy in the workspace, laid out as Entry::a_strides / b_strides say: compact
                //   (compact_like) where oneDNN's gemm-based matmul would otherwise run, row-major
                //   where no unit stride is left, rows padded to padded_ld for a b where padding_pays,
                //   widened_n long with zeros after the n columns of b where that is not 0
  bf16,         // converted to bf16, compact (compact_like)
  bf16_as_f32,  // rounded to bf16 values stored as f32, compact (bf16 math without bf16 kernels)
};

/// One cached GEMM problem: c[..., m, n] = alpha a[..., m, k] @ b[..., k, n] (+ bias[n]) + beta c.
///
/// How the operands are fed is settled here, once per problem, by asking oneDNN:
///  1. as they are (packed row-major only where no unit stride is left);
///  2. if that picks the gemm-based implementation, which allocates per call (is_gemm_impl), with the
///     strided operands copied compact: oneDNN's brgemm matmul (AVX-512) takes batched problems
///     only with compact operands, and uses the scratchpad it is given. The heads of attention are
///     strided views of the q|k|v rows, so this is where their products land; the copy is one read of
///     an operand per 2 x (its other dim) flops;
///  3. where the gemm-based implementation is all there is (AVX2), the layouts its no-copy kernel
///     reads slowly are re-laid (widened_n, padding_pays).
/// bf16 math converts both operands anyway, so it converts them compact.
struct Entry : CacheEntryBase {
  dnnl::matmul prim;
  dnnl::memory a, b, c, bias, scratchpad;
  std::unordered_map<int, dnnl::memory> args;
  Feed feed_a = Feed::as_is, feed_b = Feed::as_is;
  Dims a_strides{}, b_strides{};  // of the memory the primitive reads (the copy's, when fed one)
  Dims c_strides{};               // of the memory the primitive writes: c's own, or the workspace's
  bool c_in_workspace = false;    // c is computed compact (c_strides) in the workspace and copied out
  std::int64_t wide_n = 0;        // widened_n: b and c are [.., wide_n] for the primitive, c in the workspace
  std::size_t scratch_bytes = 0;  // 0: the primitive needs no scratchpad

  Entry(Context& ctx, CView<Cpu> av, Dims const& as, CView<Cpu> bv, Dims const& bs, View<Cpu> cv,
        Dims const& cs, CView<Cpu> biasv, float alpha, float beta, GemmMath math, bool relu) {
    int const r = cv.rank();
    auto const& eng = ctx.engine();
    auto row_major = [&](Shape const& shape) {
      Dims rm{};
      auto const c = lnformer::detail::contiguous_strides(shape);
      std::copy(c.begin(), c.begin() + r, rm.begin());
      return rm;
    };
    Dims const a_compact = compact_like(av.shape(), as, r), b_compact = compact_like(bv.shape(), bs, r);

    // bias [n] broadcast over every dim but the last: dims [1, ..., 1, n]; always f32.
    std::array<std::int64_t, 4> bd{1, 1, 1, 1}, bst{};
    if (!biasv.empty()) {
      std::int64_t const n = cv.size(-1);
      bd[r - 1] = n;
      for (int i = 0; i < r; ++i) bst[i] = i == r - 1 ? (n == 1 ? 1 : biasv.stride(0)) : n * biasv.stride(0);
    }
    // The primitive for a, b and c laid out as a_strides / b_strides / c_strides, b and c of width
    // `width` (wider than c's n only where widened). With c in the workspace beta is applied on the
    // way out, not by the primitive.
    c_strides = cs;
    auto make_pd = [&](dnnl::memory::data_type type, std::int64_t width) {
      dnnl::primitive_attr attr;
      attr.set_scratchpad_mode(dnnl::scratchpad_mode::user);  // the context's workspace: no allocation per call
      if (alpha != 1.f) attr.set_output_scales(0, {alpha});
      // relu comes only with beta = 0 (linear_forward), so it never meets a copy-out's beta.
      bool const sum = beta != 0.f && !c_in_workspace;
      if (sum || relu) {
        dnnl::post_ops po;
        if (sum) po.append_sum(beta);
        if (relu) po.append_eltwise(1.f, dnnl::algorithm::eltwise_relu, 0.f, 0.f);
        attr.set_post_ops(po);
      }
      Shape b_shape = bv.shape(), c_shape = cv.shape();
      if (width != cv.size(-1)) {
        b_shape = Shape{bv.size(-2), width};
        c_shape = Shape{cv.size(-2), width};
      }
      auto const a_md = make_desc(r, av.shape().begin(), a_strides.data(), type);
      auto const b_md = make_desc(r, b_shape.begin(), b_strides.data(), type);
      auto const c_md = make_desc(r, c_shape.begin(), c_strides.data());
      if (biasv.empty()) return dnnl::matmul::primitive_desc(dnnl::matmul::desc(a_md, b_md, c_md), attr, eng);
      return dnnl::matmul::primitive_desc(
          dnnl::matmul::desc(a_md, b_md, make_desc(r, bd.data(), bst.data()), c_md), attr, eng);
    };

    dnnl::matmul::primitive_desc pd;
    if (math == GemmMath::bf16) {
      a_strides = a_compact;
      b_strides = b_compact;
      // bf16 kernels where oneDNN has them for this problem; otherwise the same numbers from f32 ones.
      bool native = native_bf16_gemm();
      if (native) {
        try {
          pd = make_pd(dnnl::memory::data_type::bf16, cv.size(-1));
        } catch (dnnl::error const&) {
          native = false;
        }
      }
      if (!native) pd = make_pd(dnnl::memory::data_type::f32, cv.size(-1));
      feed_a = feed_b = native ? Feed::bf16 : Feed::bf16_as_f32;
    } else {
      // 1. As they are.
      bool packs_a = needs_pack(as, r), packs_b = needs_pack(bs, r);
      a_strides = packs_a ? row_major(av.shape()) : as;
      b_strides = packs_b ? row_major(bv.shape()) : bs;
      pd = make_pd(dnnl::memory::data_type::f32, cv.size(-1));
      if (is_gemm_impl(pd) && compact_batches_leave_gemm()) {
        // 2. Strided operands (a, b, c: bits 0, 1, 2) made compact, the fewest elements copied first.
        Dims const c_compact = compact_like(cv.shape(), cs, r);
        std::array<std::int64_t, 3> const sizes{av.numel(), bv.numel(), cv.numel()};
        std::array<bool, 3> const strided{!packs_a && as != a_compact, !packs_b && bs != b_compact, cs != c_compact};
        std::vector<int> subsets;
        for (int m = 1; m < 8; ++m) {
          bool ok = true;
          for (int i = 0; i < 3; ++i) ok = ok && (!(m >> i & 1) || strided[static_cast<std::size_t>(i)]);
          if (ok) subsets.push_back(m);
        }
        auto copied = [&](int m) {
          std::int64_t e = 0;
          for (int i = 0; i < 3; ++i) e += (m >> i & 1) ? sizes[static_cast<std::size_t>(i)] : 0;
          return e;
        };
        std::stable_sort(subsets.begin(), subsets.end(), [&](int x, int y) { return copied(x) < copied(y); });
        Dims const keep_a = a_strides, keep_b = b_strides;
        for (int m : subsets) {
          a_strides = (m & 1) ? a_compact : keep_a;
          b_strides = (m & 2) ? b_compact : keep_b;
          c_strides = (m & 4) ? c_compact : cs;
          c_in_workspace = (m & 4) != 0;
          auto candidate = make_pd(dnnl::memory::data_type::f32, cv.size(-1));
          if (!is_gemm_impl(candidate)) {
            pd = candidate;
            packs_a = packs_a || (m & 1);
            packs_b = packs_b || (m & 2);
            break;
          }
        }
        if (is_gemm_impl(pd)) {  // nothing left it: back to the layouts of step 1
          a_strides = keep_a;
          b_strides = keep_b;
          c_strides = cs;
          c_in_workspace = false;
        }
      }
      if (is_gemm_impl(pd)) {
        // 3. Only the gemm-based implementation: mend the layouts its no-copy kernel reads slowly.
        wide_n = widened_n(av.shape(), as, bs, cv.shape(), r, !biasv.empty());
        bool const pads_b = wide_n == 0 && padding_pays(av.shape(), bs, cv.shape(), r);
        if (wide_n != 0 || pads_b) {
          packs_b = true;
          b_strides = row_major(bv.shape());
          b_strides[r - 2] = wide_n != 0 ? wide_n : padded_ld(bv.size(-1));
          if (wide_n != 0) {
            c_in_workspace = true;
            c_strides = Dims{wide_n, 1, 0, 0};
          }
          pd = make_pd(dnnl::memory::data_type::f32, wide_n != 0 ? wide_n : cv.size(-1));
        }
      }
      feed_a = packs_a ? Feed::pack : Feed::as_is;
      feed_b = packs_b ? Feed::pack : Feed::as_is;
    }
    if (!biasv.empty()) bias = dnnl::memory(pd.bias_desc(), eng, DNNL_MEMORY_NONE);
    prim = dnnl::matmul(pd);
    a = dnnl::memory(pd.src_desc(), eng, DNNL_MEMORY_NONE);
    b = dnnl::memory(pd.weights_desc(), eng, DNNL_MEMORY_NONE);
    c = dnnl::memory(pd.dst_desc(), eng, DNNL_MEMORY_NONE);
    args = {{DNNL_ARG_SRC, a}, {DNNL_ARG_WEIGHTS, b}, {DNNL_ARG_DST, c}};
    if (!biasv.empty()) args.emplace(DNNL_ARG_BIAS, bias);
    scratch_bytes = pd.scratchpad_desc().get_size();
    if (scratch_bytes != 0) {
      scratchpad = dnnl::memory(pd.scratchpad_desc(), eng, DNNL_MEMORY_NONE);
      args.emplace(DNNL_ARG_SCRATCHPAD, scratchpad);
    }
    implementation = pd.impl_info_str();
  }
  std::string implementation;  // oneDNN's name for the kernel it chose ("brg:avx512_core", "gemm:jit")
};

/// Elements needed to hold a layout of `shape` with strides `s` (1 + the largest offset).
inline std::int64_t span_of(Shape const& shape, Dims const& s) {
  std::int64_t last = 0;
  for (int i = 0; i < shape.rank(); ++i) last += (shape[i] - 1) * s[i];
  return last + 1;
}

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
#pragma omp simd
      for (std::int64_t j = 0; j < cols; ++j) out[j] = f(in[j]);
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
      copy_view(dst, v, s, [](float x) { return to_bf16_bits(x); });
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

inline void linear_forward(Cpu, View<Cpu> y, CView<Cpu> x, CView<Cpu> w, CView<Cpu> bias,
                           Epilogue ep = Epilogue::none) {
  check::linear_forward<Cpu>(y, x, w, bias);
  namespace gm = cpu::detail::gemm;
  // y [N, out] = x [N, in] @ w^T [in, out]: w read through transposed strides, bias (and relu) fused.
  gm::run(gm::rows_of(y), gm::rows_of(x), gm::swap_last2(w), bias, 1.f, 0.f, ep == Epilogue::relu);
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
