#pragma once
// What the CPU GEMMs compute in, and what this CPU's oneDNN offers for it.
//
// GEMM math (cpu::set_gemm_math): f32 (the default), or bf16: both operands rounded to bfloat16
// (round to nearest even), products accumulated in f32 into the f32 output, weights and everything
// else staying f32 (mixed precision with f32 master weights). Where oneDNN has bf16 matmul kernels
// (AVX-512 CPUs; native_bf16_gemm()) the operands are converted to bf16 in the workspace, keeping
// their strides, and the bf16 kernels run. Elsewhere (oneDNN 2.6 has no bf16 matmul for AVX2) the
// same numbers are computed by rounding the operands to bf16 values stored as f32 and running the
// f32 kernel: a product of two bf16 values is exact in f32, so the result differs from the native
// one only in summation order. That keeps bf16 training testable on every CPU, at f32 speed plus

#include <lnformer/core/error.hpp>

#include <fmt/format.h>
#include <oneapi/dnnl/dnnl.hpp>

#include <atomic>
#include <bit>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

// The AVX-512 bf16 conversion of rows (to_bf16_row): GCC or Clang on x86-64, with function-level
// target attributes and __builtin_cpu_supports, as the AVX2 Philox path (backend/cpu/dropout.hpp).
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define LNF_BF16_ROWS_AVX512 1
#include <immintrin.h>
#else
#define LNF_BF16_ROWS_AVX512 0
#endif

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

namespace detail {
#if LNF_BF16_ROWS_AVX512
/// to_bf16_bits of 16 floats at a time with AVX-512's integer instructions (the same arithmetic,
/// wrap-around included, so the same bits). The portable loop compiles to SSE2 in a header built
/// without -march flags, 4 at a time: at fairseq's IWSLT shape the bf16 step spent ~9% of its
/// samples there (perf, AVX-512 EPYC).
[[gnu::target("avx512f,avx512bw")]] inline void to_bf16_row_avx512(std::uint16_t* out, float const* in,
                                                                   std::int64_t n) {
  __m512i const magnitude = _mm512_set1_epi32(0x7fffffff), inf = _mm512_set1_epi32(0x7f800000);
  __m512i const half = _mm512_set1_epi32(0x7fff), one = _mm512_set1_epi32(1), quiet = _mm512_set1_epi32(0x40);
  std::int64_t j = 0;
  for (; j + 16 <= n; j += 16) {
    __m512i const u = _mm512_loadu_si512(in + j);
    __mmask16 const nan = _mm512_cmpgt_epu32_mask(_mm512_and_si512(u, magnitude), inf);
    __m512i const high = _mm512_srli_epi32(u, 16);
    __m512i const rounded = _mm512_srli_epi32(_mm512_add_epi32(u, _mm512_add_epi32(half, _mm512_and_si512(high, one))), 16);
    __m512i const bits = _mm512_mask_blend_epi32(nan, rounded, _mm512_or_si512(high, quiet));
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(out + j), _mm512_cvtepi32_epi16(bits));
  }
  for (; j < n; ++j) out[j] = to_bf16_bits(in[j]);
}
#endif

/// Whether to_bf16_row takes the AVX-512 path in this process: where the CPU has AVX-512 F and BW
/// (asked once), unless LNF_SCALAR_BF16 is set to anything but "0" (then the portable loop runs, so
/// that it is tested on machines that would never take it; scripts/test.sh does).
[[nodiscard]] inline bool bf16_rows_use_avx512() {
#if LNF_BF16_ROWS_AVX512
  static bool const yes = [] {
    if (char const* forced = std::getenv("LNF_SCALAR_BF16"); forced != nullptr && std::string_view(forced) != "0")
      return false;
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx512f") != 0 && __builtin_cpu_supports("avx512bw") != 0;
  }();
  return yes;
#else
  return false;
#endif
}
}  // namespace detail

/// out[j] = to_bf16_bits(in[j]) for j < n, bit for bit, with AVX-512 where this CPU has it.
inline void to_bf16_row(std::uint16_t* out, float const* in, std::int64_t n) {
#if LNF_BF16_ROWS_AVX512
  if (detail::bf16_rows_use_avx512()) {
    detail::to_bf16_row_avx512(out, in, n);
    return;
  }
#endif
  for (std::int64_t j = 0; j < n; ++j) out[j] = to_bf16_bits(in[j]);
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
