#pragma once
// CPU dropout: OpenMP over tiles of elements; each tile draws its random bits with one
// Philox4x32::block per 4 elements (a block yields exactly the 4 values key.bits gives for offsets
// 4k..4k+3), then applies the mask in a vectorisable loop. Bit-identical to the reference, which
// calls key.uniform(i) per element. Contract in ops/dropout.hpp.

#include <lnformer/backend/cpu/cpu.hpp>
#include <lnformer/backend/cpu/elementwise.hpp>
#include <lnformer/core/rng.hpp>
#include <lnformer/ops/dropout.hpp>

#include <algorithm>
#include <cstdint>

namespace lnformer::cpu::detail {

inline constexpr std::int64_t kDropoutTile = 2048;  // elements per task; a multiple of 4
static_assert(kDropoutTile % 4 == 0);
inline constexpr std::int64_t kDropoutBlocks = kDropoutTile / 4 + 1;  // Philox blocks a tile touches, at most

/// lane[j][b] = output j of Philox4x32::block(counter (first_block + b, stream), key) for b < blocks:
/// 4 outputs per counter, written as a structure of arrays so that the rounds vectorise across
/// counters (about 10x faster than key.bits per element with AVX-512, 3x with SSE2). Kept out of
/// line: inlined into the OpenMP region, GCC 12 no longer scalarises the counter array and gives up.
[[gnu::noinline]] inline void philox_lanes(std::uint32_t (&lane)[4][kDropoutBlocks],
                                           std::uint64_t first_block, std::int64_t blocks, std::uint32_t k0,
                                           std::uint32_t k1, std::uint32_t s0, std::uint32_t s1) {
#pragma omp simd
  for (std::int64_t b = 0; b < blocks; ++b) {
    std::uint64_t const c = first_block + static_cast<std::uint64_t>(b);
    auto const r = Philox4x32::block(
        {static_cast<std::uint32_t>(c), static_cast<std::uint32_t>(c >> 32), s0, s1}, {k0, k1});
    lane[0][b] = r[0];
    lane[1][b] = r[1];
    lane[2][b] = r[2];
    lane[3][b] = r[3];
  }
}

/// out[i] = in[i] / (1 - p) where kept, 0 where dropped (key.uniform(i) < p), i < n; out may alias in.
inline void dropout_apply(float* out, float const* in, std::int64_t n, float p, RngKey key) {
  if (n <= 0) return;
  if (p == 0.f) {  // nothing is dropped and the scale is 1
    if (out != in) elementwise_copy(out, in, n);
    return;
  }
  float const scale = static_cast<float>(1.0 / (1.0 - static_cast<double>(p)));
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
    // Philox output lane by lane, then interleaved into counter order: bits[4b + k] is lane k of
    // block first_block + b.
    alignas(64) std::uint32_t lane[4][kDropoutBlocks];
    alignas(64) std::uint32_t bits[4 * kDropoutBlocks];
    philox_lanes(lane, first_block, blocks, k0, k1, s0, s1);
#pragma omp simd
    for (std::int64_t b = 0; b < blocks; ++b) {
      bits[4 * b + 0] = lane[0][b];
      bits[4 * b + 1] = lane[1][b];
      bits[4 * b + 2] = lane[2][b];
      bits[4 * b + 3] = lane[3][b];
    }
    float* o = out + begin;
    float const* x = in + begin;
    std::uint32_t const* u = bits + lead;
#pragma omp simd
    for (std::int64_t j = 0; j < len; ++j) {
      float const uniform = static_cast<float>(u[j] >> 8) * 0x1.0p-24f;  // exactly RngKey::uniform
      o[j] = uniform < p ? 0.f : x[j] * scale;
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

}  // namespace lnformer::ops
