#pragma once
// Block-per-row reductions shared by the GPU row kernels (softmax, layer norm, cross-entropy).
//
// A row kernel runs one thread block per row (a grid-stride loop over rows: at most kMaxRowBlocks
// blocks), its row_threads(cols) threads striding over the row's columns. Its block reductions are
// warp shuffles, then one value per warp through shared memory, then a shuffle reduction of those
// values that every warp does itself, in the same order: every thread of the block gets the same
// result. The sums are xor butterflies, so every lane of a warp ends with the same value too (its
// additions pair the same operands in every lane, and a + b == b + a exactly).
//
// Requirements of every block_* helper: blockDim.x is a multiple of 32 and at most 1024 (row_threads
// gives this for kMaxRowThreads), every thread of the block calls it (it holds __syncthreads), and
// `shared` is __shared__ memory of at least the size documented for the helper. A helper starts
// with a barrier, so one buffer serves any sequence of calls.

#include <lnformer/backend/cuda/gpu.cuh>

#include <algorithm>
#include <cstdint>

namespace lnformer::cuda::detail {

/// Threads of a row block: the row length rounded up to a warp, at most this many.
inline constexpr int kMaxRowThreads = 512;
/// At most this many row blocks; a grid-stride loop covers the rest of the rows.
inline constexpr std::int64_t kMaxRowBlocks = std::int64_t{1} << 16;

/// Threads of the block that handles a row of n columns.
inline int row_threads(std::int64_t n) {
  return static_cast<int>(std::min<std::int64_t>(kMaxRowThreads, (n + 31) / 32 * 32));
}
/// Blocks of a row kernel over `rows` rows.
inline unsigned row_blocks(std::int64_t rows) {
  return static_cast<unsigned>(std::min<std::int64_t>(rows, kMaxRowBlocks));
}

/// Launches a row kernel on the context's stream: row_blocks(rows) blocks of row_threads(cols) threads
/// (rows > 0). The caller checks the launch (LNF_CUDA_LAUNCH_CHECK).
template <class... Params, class... Args>
void launch_rows(void (*kernel)(Params...), std::int64_t rows, std::int64_t cols, Args... args) {
  kernel<<<row_blocks(rows), row_threads(cols), 0, context().stream()>>>(args...);
}

__device__ inline float neg_inf() { return -__int_as_float(0x7f800000); }
__device__ inline float quiet_nan() { return __int_as_float(0x7fc00000); }

__device__ inline float warp_sum(float v) {
  // xor butterfly: every lane ends with the same value (a + b == b + a exactly).
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}
/// Max over the warp, NaN ignored (fmaxf); every lane ends with it.
__device__ inline float warp_max(float v) {
  for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
  return v;
}

/// Sum (kMax false) or max (kMax true, NaN ignored as by fmaxf) of v over the block, returned to every
/// thread. `shared` holds 32 floats.
template <bool kMax>
__device__ inline float block_reduce(float v, float* shared) {
  v = kMax ? warp_max(v) : warp_sum(v);
  int const lane = static_cast<int>(threadIdx.x) & 31;
  int const warp = static_cast<int>(threadIdx.x) >> 5;
  int const warps = static_cast<int>(blockDim.x) >> 5;
  __syncthreads();  // readers of an earlier call are done with `shared`
  if (lane == 0) shared[warp] = v;
  __syncthreads();
  // Every warp reduces the per-warp results itself, in the same order: all threads agree.
  float const t = lane < warps ? shared[lane] : (kMax ? neg_inf() : 0.f);
  return kMax ? warp_max(t) : warp_sum(t);
}

/// Max of v over the block (NaN ignored), returned to every thread. `shared` holds 32 floats.
__device__ inline float block_max(float v, float* shared) { return block_reduce<true>(v, shared); }

/// Sum of v over the block, returned to every thread. `shared` holds 32 floats.
__device__ inline float block_sum(float v, float* shared) { return block_reduce<false>(v, shared); }

/// Sums of a and of b over the block, returned to every thread, each added exactly as block_sum adds
/// it. `shared` holds 64 floats.
__device__ inline void block_sum2(float& a, float& b, float* shared) {
  a = warp_sum(a);
  b = warp_sum(b);
  int const lane = static_cast<int>(threadIdx.x) & 31;
  int const warp = static_cast<int>(threadIdx.x) >> 5;
  int const warps = static_cast<int>(blockDim.x) >> 5;
  __syncthreads();  // readers of an earlier call are done with `shared`
  if (lane == 0) {
    shared[warp] = a;
    shared[32 + warp] = b;
  }
  __syncthreads();
  // Every warp reduces the per-warp sums itself, in the same order: all threads agree.
  a = warp_sum(lane < warps ? shared[lane] : 0.f);
  b = warp_sum(lane < warps ? shared[32 + lane] : 0.f);
}

}  // namespace lnformer::cuda::detail
