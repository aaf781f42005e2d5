#pragma once
// The CPU GEMMs' cached problems (Entry) and the layout decisions they settle once per problem.
// Used by backend/cpu/gemm_run.hpp; the ops are in backend/cpu/matmul.hpp.
//
// One cache entry per (dims, strides, bias, alpha, beta, math, relu) in cpu::context() holds the primitive, its
// memory objects (rebound with set_data_handle) and the argument map, so a steady-state call builds a
// key in a reused buffer, looks it up and executes: nothing is created. The scratchpad is the
// context's per-thread workspace (user scratchpad mode), not the entry's: entries stay small however
// many shapes token-based batches produce.
//
// Which of oneDNN's kernels runs a problem is settled once per entry (see Entry): its gemm-based
// matmul ignores the scratchpad and mallocs inside calls, so where oneDNN has brgemm (AVX-512) strided
// operands are copied compact to reach it; where gemm-based is all there is (AVX2) the layouts its
// no-copy kernel reads slowly are re-laid instead.

#include <lnformer/backend/cpu/cpu.hpp>
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

}  // namespace lnformer::cpu::detail::gemm
