#pragma once
// GPU dropout with the counter-based mask of core/rng.hpp: element i is dropped when
// key.uniform(i) < p, i.e. (bits >> 8) * 2^-24 < p with bits = output (offset + i) & 3 of the Philox4x32-10
// block at counter ((offset + i) >> 2, stream) under key seed. Each thread computes one Philox block
// and serves the (up to) 4 consecutive elements that share it, so every random word is computed once.
// Kept elements are x * scale with scale = (float)(1 / (1 - p)) rounded once on the host, as the CPU
// backend does, so a Gpu dropout equals the CPU one bit for bit and has the Reference's mask.
// Contract in ops/dropout.hpp. out may alias in (each element is read, then written, by one thread).
//
// The Philox block is core/rng.hpp's own (Philox4x32::block, __host__ __device__ under nvcc; its
// std::array needs nvcc's --expt-relaxed-constexpr, which lnformer::cuda adds). The tests check the
// Gpu masks against RngKey::uniform on the host, bit for bit, for lane offsets 0..3 and a block
// counter above 2^32.

#include <lnformer/backend/cuda/gpu.cuh>
#include <lnformer/core/rng.hpp>
#include <lnformer/ops/dropout.hpp>

#include <cstdint>

namespace lnformer::cuda::detail::dropout {

/// The 4 words RngKey::bits gives for offsets 4 block .. 4 block + 3 of (stream, seed).
__host__ __device__ inline uint4 philox_block(std::uint64_t block, std::uint64_t stream, std::uint64_t seed) {
  auto const c = Philox4x32::block({static_cast<std::uint32_t>(block), static_cast<std::uint32_t>(block >> 32),
                                    static_cast<std::uint32_t>(stream), static_cast<std::uint32_t>(stream >> 32)},
                                   {static_cast<std::uint32_t>(seed), static_cast<std::uint32_t>(seed >> 32)});
  return make_uint4(c[0], c[1], c[2], c[3]);
}

/// Thread j handles Philox block (offset >> 2) + j, i.e. elements i = 4 j - lead + k for lanes k = 0..3
/// (lead = offset & 3), those of them inside [0, n); res, where given, is added (the residual connection
/// res + drop(in)). A template (instantiated for float): a non-template
/// __global__ function in a header would be defined in every .cu file including it.
template <class T>
__global__ void apply_kernel(T* out, T const* in, T const* res, std::int64_t n, std::int64_t blocks, float p, T scale,
                             RngKey key) {
  std::int64_t const lead = static_cast<std::int64_t>(key.offset & 3u);
  std::uint64_t const first_block = key.offset >> 2;
  std::int64_t const stride = static_cast<std::int64_t>(gridDim.x) * blockDim.x;
  for (std::int64_t j = static_cast<std::int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; j < blocks; j += stride) {
    uint4 const r = philox_block(first_block + static_cast<std::uint64_t>(j), key.stream, key.seed);
    std::uint32_t const words[4] = {r.x, r.y, r.z, r.w};
#pragma unroll
    for (int k = 0; k < 4; ++k) {
      std::int64_t const i = 4 * j - lead + k;
      if (i < 0 || i >= n) continue;
      float const uniform = static_cast<float>(words[k] >> 8) * 0x1.0p-24f;  // exactly RngKey::uniform
      T const v = in[i];
      T const kept = uniform < p ? T(0) : v * scale;
      out[i] = res != nullptr ? res[i] + kept : kept;
    }
  }
}

inline void apply(float* out, float const* in, std::int64_t n, float p, RngKey key, float const* res = nullptr) {
  if (n <= 0) return;
  auto& ctx = context();
  if (p == 0.f && res == nullptr) {  // nothing is dropped and the scale is 1
    if (out != in)
      LNF_CUDA_CHECK(cudaMemcpyAsync(out, in, static_cast<std::size_t>(n) * sizeof(float), cudaMemcpyDeviceToDevice,
                                     ctx.stream()));
    return;
  }
  float const scale = static_cast<float>(1.0 / (1.0 - static_cast<double>(p)));
  std::int64_t const lead = static_cast<std::int64_t>(key.offset & 3u);
  std::int64_t const blocks = (lead + n + 3) / 4;  // Philox blocks the n elements touch
  apply_kernel<float><<<blocks_for(blocks), kThreads, 0, ctx.stream()>>>(out, in, res, n, blocks, p, scale, key);
  LNF_CUDA_LAUNCH_CHECK(dropout_apply_kernel);
}

}  // namespace lnformer::cuda::detail::dropout

namespace lnformer::ops {

inline void dropout_forward(Gpu, View<Gpu> y, CView<Gpu> x, float p, RngKey key) {
  check::dropout_forward<Gpu>(y, x, p);
  cuda::detail::dropout::apply(y.data(), x.data(), x.numel(), p, key);
}

inline void dropout_backward(Gpu, View<Gpu> dx, CView<Gpu> dy, float p, RngKey key) {
  check::dropout_backward<Gpu>(dx, dy, p);
  cuda::detail::dropout::apply(dx.data(), dy.data(), dy.numel(), p, key);
}

inline void dropout_add(Gpu, View<Gpu> y, CView<Gpu> x, CView<Gpu> h, float p, RngKey key) {
  check::dropout_add<Gpu>(y, x, h, p);
  cuda::detail::dropout::apply(y.data(), h.data(), h.numel(), p, key, x.data());
}

}  // namespace lnformer::ops
