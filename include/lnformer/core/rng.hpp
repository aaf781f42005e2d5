#pragma once
// Counter-based RNG: Philox4x32-10 (Salmon et al., SC'11). A random number is a pure function of
// (seed, stream, offset), so a dropout mask can be regenerated exactly in the backward pass, on any
// backend, and after a resume: nothing but the three integers has to be stored.
//
// Layout: key = seed (64 bits); counter = (offset / 4 as 64 bits, stream as 64 bits); the
// 4 outputs of one counter serve offsets 4k..4k+3.

#include <array>
#include <cstdint>

#if defined(__CUDACC__)
#define LNF_HOST_DEVICE __host__ __device__
#else
#define LNF_HOST_DEVICE
#endif

namespace lnformer {

namespace detail {
inline constexpr std::uint32_t kPhiloxM0 = 0xD2511F53u;
inline constexpr std::uint32_t kPhiloxM1 = 0xCD9E8D57u;
inline constexpr std::uint32_t kPhiloxW0 = 0x9E3779B9u;
inline constexpr std::uint32_t kPhiloxW1 = 0xBB67AE85u;

LNF_HOST_DEVICE constexpr void mulhilo(std::uint32_t a, std::uint32_t b, std::uint32_t& hi,
                                       std::uint32_t& lo) {
  std::uint64_t const p = static_cast<std::uint64_t>(a) * b;
  hi = static_cast<std::uint32_t>(p >> 32);
  lo = static_cast<std::uint32_t>(p);
}
}  // namespace detail

struct Philox4x32 {
  using Counter = std::array<std::uint32_t, 4>;
  using Key = std::array<std::uint32_t, 2>;

  /// The raw bijection: 10 rounds of Philox4x32 on counter `c` under key `k`.
  LNF_HOST_DEVICE static constexpr Counter block(Counter c, Key k) {
    for (int r = 0; r < 10; ++r) {
      std::uint32_t hi0 = 0, lo0 = 0, hi1 = 0, lo1 = 0;
      detail::mulhilo(detail::kPhiloxM0, c[0], hi0, lo0);
      detail::mulhilo(detail::kPhiloxM1, c[2], hi1, lo1);
      c = {hi1 ^ c[1] ^ k[0], lo1, hi0 ^ c[3] ^ k[1], lo0};
      k[0] += detail::kPhiloxW0;
      k[1] += detail::kPhiloxW1;
    }
    return c;
  }
};

/// Where a stream of random numbers lives: everything needed to regenerate it.
struct RngKey {
  std::uint64_t seed = 0;
  std::uint64_t stream = 0;  // e.g. one per dropout site
  std::uint64_t offset = 0;  // advanced by the number of values consumed, e.g. per step

  /// 32 random bits for element i of this stream (i counts from `offset`).
  [[nodiscard]] LNF_HOST_DEVICE constexpr std::uint32_t bits(std::uint64_t i) const {
    std::uint64_t const n = offset + i;
    auto const out = Philox4x32::block(
        {static_cast<std::uint32_t>(n >> 2), static_cast<std::uint32_t>(n >> 34),
         static_cast<std::uint32_t>(stream), static_cast<std::uint32_t>(stream >> 32)},
        {static_cast<std::uint32_t>(seed), static_cast<std::uint32_t>(seed >> 32)});
    return out[n & 3u];
  }
  /// Uniform float in [0, 1) with 24 random bits, for element i.
  [[nodiscard]] LNF_HOST_DEVICE constexpr float uniform(std::uint64_t i) const {
    return static_cast<float>(bits(i) >> 8) * 0x1.0p-24f;
  }
};

/// Convenience generator for host-side initialisation (weights, data shuffling): a running
/// counter over one RngKey, with normal variates by Box-Muller.
class Rng {
 public:
  explicit Rng(std::uint64_t seed, std::uint64_t stream = 0) : key_{seed, stream, 0} {}
  std::uint32_t next_u32() { return key_.bits(n_++); }
  /// Uniform in [0, 1).
  float uniform() { return key_.uniform(n_++); }
  /// Uniform in [lo, hi).
  float uniform(float lo, float hi) { return lo + (hi - lo) * uniform(); }
  /// Standard normal (double-precision Box-Muller, one value per call).
  float normal();
  /// Uniform integer in [0, n), n > 0 (rejection sampling, unbiased).
  std::uint32_t below(std::uint32_t n);
  [[nodiscard]] std::uint64_t position() const { return n_; }
  void seek(std::uint64_t n) { n_ = n; }

 private:
  RngKey key_;
  std::uint64_t n_ = 0;
};

}  // namespace lnformer

#include <cmath>

namespace lnformer {
inline float Rng::normal() {
  // u1 in (0, 1] so that log never sees 0.
  double const u1 = (static_cast<double>(next_u32()) + 1.0) * 0x1.0p-32;
  double const u2 = static_cast<double>(next_u32()) * 0x1.0p-32;
  return static_cast<float>(std::sqrt(-2.0 * std::log(u1)) * std::cos(2.0 * 3.14159265358979323846 * u2));
}
inline std::uint32_t Rng::below(std::uint32_t n) {
  std::uint32_t const limit = static_cast<std::uint32_t>(-n) % n;  // 2^32 mod n
  for (;;) {
    std::uint64_t const m = static_cast<std::uint64_t>(next_u32()) * n;
    if (static_cast<std::uint32_t>(m) >= limit) return static_cast<std::uint32_t>(m >> 32);
  }
}
}  // namespace lnformer
