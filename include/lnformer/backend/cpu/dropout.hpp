#pragma once
// CPU dropout: OpenMP over tiles of elements; each tile draws its random bits with one
// Philox4x32 block per 4 elements (a block yields exactly the 4 values key.bits gives for offsets
// 4k..4k+3), eight blocks at a time with AVX2 where the CPU has it, then applies the mask in a
// vectorisable loop. Bit-identical to the reference, which calls key.uniform(i) per element.
// Contract in ops/dropout.hpp.

#include <lnformer/backend/cpu/cpu.hpp>
#include <lnformer/backend/cpu/elementwise.hpp>
#include <lnformer/core/rng.hpp>
#include <lnformer/ops/dropout.hpp>

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <string_view>

// The AVX2 Philox path: GCC or Clang on x86-64 (function-level target attributes and
// __builtin_cpu_supports), nvcc's host pass included, so that every translation unit of a program
// sees the same definitions.
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define LNF_DROPOUT_AVX2 1
#include <immintrin.h>
#else
#define LNF_DROPOUT_AVX2 0
#endif

namespace lnformer::cpu::detail {

inline constexpr std::int64_t kDropoutTile = 2048;  // elements per task; a multiple of 4
static_assert(kDropoutTile % 4 == 0);
inline constexpr std::int64_t kDropoutBlocks = kDropoutTile / 4 + 1;  // Philox blocks a tile touches, at most

/// bits[4 b + j] = output j of Philox4x32::block(counter (first_block + b, stream), key) for b < blocks:
/// the random bits of elements 4 first_block .. 4 (first_block + blocks) - 1, in counter order.
/// Portable: the four words of every counter as a structure of arrays, rounds outermost, so that
/// the round vectorises across counters with whatever the build targets, then interleaved.
[[gnu::noinline]] inline void philox_bits_portable(std::uint32_t* bits, std::uint64_t first_block, std::int64_t blocks,
                                                   std::uint32_t k0, std::uint32_t k1, std::uint32_t s0,
                                                   std::uint32_t s1) {
  alignas(64) std::uint32_t c[4][kDropoutBlocks];
#pragma omp simd
  for (std::int64_t b = 0; b < blocks; ++b) {
    std::uint64_t const n = first_block + static_cast<std::uint64_t>(b);
    c[0][b] = static_cast<std::uint32_t>(n);
    c[1][b] = static_cast<std::uint32_t>(n >> 32);
    c[2][b] = s0;
    c[3][b] = s1;
  }
  for (int r = 0; r < 10; ++r) {
#pragma omp simd
    for (std::int64_t b = 0; b < blocks; ++b) {
      std::uint64_t const p0 = std::uint64_t{lnformer::detail::kPhiloxM0} * c[0][b];
      std::uint64_t const p1 = std::uint64_t{lnformer::detail::kPhiloxM1} * c[2][b];
      std::uint32_t const next0 = static_cast<std::uint32_t>(p1 >> 32) ^ c[1][b] ^ k0;
      std::uint32_t const next2 = static_cast<std::uint32_t>(p0 >> 32) ^ c[3][b] ^ k1;
      c[1][b] = static_cast<std::uint32_t>(p1);
      c[3][b] = static_cast<std::uint32_t>(p0);
      c[0][b] = next0;
      c[2][b] = next2;
    }
    k0 += lnformer::detail::kPhiloxW0;
    k1 += lnformer::detail::kPhiloxW1;
  }
  for (std::int64_t b = 0; b < blocks; ++b)
    for (int j = 0; j < 4; ++j) bits[4 * b + j] = c[j][b];
}

#if LNF_DROPOUT_AVX2
/// The state of eight Philox counters: word j of counter i in lane i of c[j].
struct Philox8 {
  __m256i c[4];
};

[[gnu::target("avx2")]] inline Philox8 philox8_start(std::uint64_t n, std::uint32_t s0, std::uint32_t s1) {
  // The 8 counters' low words; n + 7 may carry into the high word.
  __m256i const sign = _mm256_set1_epi32(static_cast<int>(0x80000000u));
  __m256i const lo = _mm256_add_epi32(_mm256_set1_epi32(static_cast<int>(static_cast<std::uint32_t>(n))),
                                      _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
  __m256i const carry = _mm256_cmpgt_epi32(  // unsigned lo < low word of n, as all ones
      _mm256_xor_si256(_mm256_set1_epi32(static_cast<int>(static_cast<std::uint32_t>(n))), sign),
      _mm256_xor_si256(lo, sign));
  return {{lo, _mm256_sub_epi32(_mm256_set1_epi32(static_cast<int>(static_cast<std::uint32_t>(n >> 32))), carry),
           _mm256_set1_epi32(static_cast<int>(s0)), _mm256_set1_epi32(static_cast<int>(s1))}};
}

/// One Philox round on eight counters: the 32 x 32 -> 64-bit products are vpmuludq on the even
/// lanes and on the odd ones (shifted down), their high and low words regrouped by blends.
[[gnu::target("avx2")]] inline void philox8_round(Philox8& x, __m256i k0, __m256i k1) {
  __m256i const m0 = _mm256_set1_epi64x(lnformer::detail::kPhiloxM0);
  __m256i const m1 = _mm256_set1_epi64x(lnformer::detail::kPhiloxM1);
  __m256i const pe0 = _mm256_mul_epu32(x.c[0], m0), po0 = _mm256_mul_epu32(_mm256_srli_epi64(x.c[0], 32), m0);
  __m256i const pe1 = _mm256_mul_epu32(x.c[2], m1), po1 = _mm256_mul_epu32(_mm256_srli_epi64(x.c[2], 32), m1);
  __m256i const hi0 = _mm256_blend_epi32(_mm256_srli_epi64(pe0, 32), po0, 0xAA);
  __m256i const lo0 = _mm256_blend_epi32(pe0, _mm256_slli_epi64(po0, 32), 0xAA);
  __m256i const hi1 = _mm256_blend_epi32(_mm256_srli_epi64(pe1, 32), po1, 0xAA);
  __m256i const lo1 = _mm256_blend_epi32(pe1, _mm256_slli_epi64(po1, 32), 0xAA);
  x.c[0] = _mm256_xor_si256(_mm256_xor_si256(hi1, x.c[1]), k0);
  x.c[2] = _mm256_xor_si256(_mm256_xor_si256(hi0, x.c[3]), k1);
  x.c[1] = lo1;
  x.c[3] = lo0;
}

/// All 10 rounds on G groups of eight counters, the groups interleaved.
template <int G>
[[gnu::target("avx2")]] inline void philox8_rounds(Philox8 (&x)[G], std::uint32_t k0, std::uint32_t k1) {
  for (int r = 0; r < 10; ++r) {
    __m256i const a = _mm256_set1_epi32(static_cast<int>(k0)), b = _mm256_set1_epi32(static_cast<int>(k1));
    for (int g = 0; g < G; ++g) philox8_round(x[g], a, b);
    k0 += lnformer::detail::kPhiloxW0;
    k1 += lnformer::detail::kPhiloxW1;
  }
}

/// The 32 words of eight counters to counter order at out.
[[gnu::target("avx2")]] inline void philox8_store(Philox8 const& x, std::uint32_t* out) {
  __m256i const t0 = _mm256_unpacklo_epi32(x.c[0], x.c[1]), t1 = _mm256_unpackhi_epi32(x.c[0], x.c[1]);
  __m256i const t2 = _mm256_unpacklo_epi32(x.c[2], x.c[3]), t3 = _mm256_unpackhi_epi32(x.c[2], x.c[3]);
  // u0: counters 0 and 4 (one per 128-bit half), u1: 1 and 5, u2: 2 and 6, u3: 3 and 7.
  __m256i const u0 = _mm256_unpacklo_epi64(t0, t2), u1 = _mm256_unpackhi_epi64(t0, t2);
  __m256i const u2 = _mm256_unpacklo_epi64(t1, t3), u3 = _mm256_unpackhi_epi64(t1, t3);
  auto* o = reinterpret_cast<__m256i*>(out);
  _mm256_storeu_si256(o + 0, _mm256_permute2x128_si256(u0, u1, 0x20));
  _mm256_storeu_si256(o + 1, _mm256_permute2x128_si256(u2, u3, 0x20));
  _mm256_storeu_si256(o + 2, _mm256_permute2x128_si256(u0, u1, 0x31));
  _mm256_storeu_si256(o + 3, _mm256_permute2x128_si256(u2, u3, 0x31));
}

/// The same bits as philox_bits_portable, eight counters per AVX2 register and two registers in
/// flight (a round's multiply-blend-xor chain is latency-bound alone). ~2.5x the portable path on
/// AVX2 machines, where the build targets SSE2 only (the x86-64 default: the library is header-only
/// and leaves its users' flags alone). Counters past the last multiple of 8 go through
/// Philox4x32::block.
[[gnu::target("avx2")]] inline void philox_bits_avx2(std::uint32_t* bits, std::uint64_t first_block,
                                                     std::int64_t blocks, std::uint32_t k0, std::uint32_t k1,
                                                     std::uint32_t s0, std::uint32_t s1) {
  std::int64_t b = 0;
  for (; b + 16 <= blocks; b += 16) {
    std::uint64_t const n = first_block + static_cast<std::uint64_t>(b);
    Philox8 x[2] = {philox8_start(n, s0, s1), philox8_start(n + 8, s0, s1)};
    philox8_rounds(x, k0, k1);
    philox8_store(x[0], bits + 4 * b);
    philox8_store(x[1], bits + 4 * (b + 8));
  }
  for (; b + 8 <= blocks; b += 8) {
    Philox8 x[1] = {philox8_start(first_block + static_cast<std::uint64_t>(b), s0, s1)};
    philox8_rounds(x, k0, k1);
    philox8_store(x[0], bits + 4 * b);
  }
  for (; b < blocks; ++b) {
    std::uint64_t const n = first_block + static_cast<std::uint64_t>(b);
    auto const r = Philox4x32::block({static_cast<std::uint32_t>(n), static_cast<std::uint32_t>(n >> 32), s0, s1}, {k0, k1});
    for (int j = 0; j < 4; ++j) bits[4 * b + j] = r[j];
  }
}
#endif

/// Whether philox_bits runs the AVX2 path in this process: where the CPU has AVX2, unless the
/// environment variable LNF_SCALAR_PHILOX is set to anything but "0" (read once): then the portable
/// path runs, so that it is tested on machines that would never take it (scripts/test.sh does).
inline bool philox_uses_avx2() {
#if LNF_DROPOUT_AVX2
  static bool const avx2 = [] {
    if (char const* forced = std::getenv("LNF_SCALAR_PHILOX"); forced != nullptr && std::string_view(forced) != "0")
      return false;
    __builtin_cpu_init();  // idempotent; needed if the first call comes from a static initialiser
    return __builtin_cpu_supports("avx2") != 0;
  }();
  return avx2;
#else
  return false;
#endif
}

inline void philox_bits(std::uint32_t* bits, std::uint64_t first_block, std::int64_t blocks, std::uint32_t k0,
                        std::uint32_t k1, std::uint32_t s0, std::uint32_t s1, bool avx2 = philox_uses_avx2()) {
#if LNF_DROPOUT_AVX2
  if (avx2) return philox_bits_avx2(bits, first_block, blocks, k0, k1, s0, s1);
#endif
  (void)avx2;
  philox_bits_portable(bits, first_block, blocks, k0, k1, s0, s1);
}

/// The integer form of the mask's test: key.uniform(i) < p, i.e. float(bits >> 8) 2^-24 < p (exact:
/// 24-bit integers times a power of two), holds exactly when bits >> 8 < drop_below(p) = ceil(p 2^24)
/// (p 2^24 is exact in double), for p in [0, 1].
inline std::uint32_t drop_below(float p) {
  return static_cast<std::uint32_t>(std::ceil(static_cast<double>(p) * 0x1.0p24));
}

/// out[i] = in[i] / (1 - p) where kept, 0 where dropped (key.uniform(i) < p), plus res[i] where res is
/// given (the residual connection res + drop(in) in the same pass), i < n; out may alias in or res.
inline void dropout_apply(float* out, float const* in, std::int64_t n, float p, RngKey key,
                          bool avx2 = philox_uses_avx2(), float const* res = nullptr) {
  if (n <= 0) return;
  if (p == 0.f) {  // nothing is dropped and the scale is 1
    if (res != nullptr) {
#pragma omp parallel for simd schedule(static) if (n >= kElementwiseParallelMin)
      for (std::int64_t i = 0; i < n; ++i) out[i] = res[i] + in[i];
    } else if (out != in) {
      elementwise_copy(out, in, n);
    }
    return;
  }
  float const scale = static_cast<float>(1.0 / (1.0 - static_cast<double>(p)));
  auto const threshold = static_cast<std::int32_t>(drop_below(p));
  auto const k0 = static_cast<std::uint32_t>(key.seed);
  auto const k1 = static_cast<std::uint32_t>(key.seed >> 32);
  auto const s0 = static_cast<std::uint32_t>(key.stream);
  auto const s1 = static_cast<std::uint32_t>(key.stream >> 32);
  // Element i has global counter g = offset + i: Philox block g >> 2, lane g & 3. Tiles start at
  // multiples of kDropoutTile, so every tile's first element sits at the same lane `lead`.
  auto const lead = static_cast<std::int64_t>(key.offset & 3u);
  std::int64_t const tiles = (n + kDropoutTile - 1) / kDropoutTile;

#pragma omp parallel for schedule(static) if (tiles > 1)
  for (std::int64_t t = 0; t < tiles; ++t) {
    std::int64_t const begin = t * kDropoutTile;
    std::int64_t const len = std::min(kDropoutTile, n - begin);
    std::uint64_t const first_block = (key.offset + static_cast<std::uint64_t>(begin)) >> 2;
    std::int64_t const blocks = (lead + len + 3) / 4;
    alignas(64) std::uint32_t bits[4 * kDropoutBlocks];
    philox_bits(bits, first_block, blocks, k0, k1, s0, s1, avx2);
    float* o = out + begin;
    float const* x = in + begin;
    std::uint32_t const* u = bits + lead;
    // Branch-free, so that it vectorises: the kept value ANDed with all ones, or with zero (+0 even
    // where x is inf or NaN). The compare is signed (both sides below 2^25): SSE2 has no unsigned one.
    auto const masked = [&](std::int64_t j) {
      auto const keep = static_cast<std::uint32_t>(-static_cast<std::int32_t>(static_cast<std::int32_t>(u[j] >> 8) >= threshold));
      return std::bit_cast<float>(std::bit_cast<std::uint32_t>(x[j] * scale) & keep);
    };
    if (res != nullptr) {
      float const* r = res + begin;
#pragma omp simd
      for (std::int64_t j = 0; j < len; ++j) o[j] = r[j] + masked(j);
    } else {
#pragma omp simd
      for (std::int64_t j = 0; j < len; ++j) o[j] = masked(j);
    }
  }
}
}  // namespace lnformer::cpu::detail

namespace lnformer::ops {

inline void dropout_forward(Cpu, View<Cpu> y, CView<Cpu> x, float p, RngKey key) {
  check::dropout_forward<Cpu>(y, x, p);
  cpu::detail::dropout_apply(y.data(), x.data(), x.numel(), p, key);
}

inline void dropout_backward(Cpu, View<Cpu> dx, CView<Cpu> dy, float p, RngKey key) {
  check::dropout_backward<Cpu>(dx, dy, p);
  cpu::detail::dropout_apply(dx.data(), dy.data(), dy.numel(), p, key);
}

inline void dropout_add(Cpu, View<Cpu> y, CView<Cpu> x, CView<Cpu> h, float p, RngKey key) {
  check::dropout_add<Cpu>(y, x, h, p);
  cpu::detail::dropout_apply(y.data(), h.data(), h.numel(), p, key, cpu::detail::philox_uses_avx2(), x.data());
}

}  // namespace lnformer::ops
