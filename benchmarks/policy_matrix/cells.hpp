#pragma once
// The cells of the policy matrix (benchmarks/bench_policy_matrix.cpp): one training run of a Seq2Seq
// for a normalization policy x optimizer x schedule. Split from the program so that each norm's 24
// cells compile in a translation unit of their own (cells_<norm>.cpp, generated in the build tree for
// every policy of the list: an explicit instantiation of run_cell<Norm>, defined in run_cell.hpp): one
// 133 s / 1.3 GB compile became one per norm of 34-38 s and at most 767 MB that build in parallel
// (benchmarks/compile_cost.sh; README "Compile cost").

#include <lnformer/lnformer.hpp>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <string>
#include <string_view>
#include <type_traits>
#include <vector>

namespace lnformer::bench {

using Clock = std::chrono::steady_clock;

struct Options {
  int layers = 3;
  std::int64_t d_model = 256, ffn = 1024, heads = 4, vocab = 8000;
  int sentences = 64, src_len = 24, tgt_len = 24;  // one batch: sentences x length, no padding
  int batches = 4;                                 // distinct batches, used in turn
  int warm_steps = 1, steps = 3;
  float lr = 1e-3f;
  std::int64_t warmup = 4;  // schedules with a warm-up
  float clip_norm = 1.f;
  std::uint64_t seed = 1;
  std::int64_t peak_size = 1024;
  std::string gemm_math = "f32";  // cpu::parse_gemm_math: f32 or bf16
  std::string norms, optimizers, schedules, json;
};

/// Forward GEMM FLOPs of one batch (N sentences, padded lengths s and t) through the Seq2Seq.
inline double forward_flops(Options const& o) {
  double const n = o.sentences, s = o.src_len, t = o.tgt_len, d = static_cast<double>(o.d_model);
  double const f = static_cast<double>(o.ffn), v = static_cast<double>(o.vocab);
  double const enc = 2 * n * s * (4 * d * d + 2 * d * f) + 2 * 2 * n * s * s * d;
  double const dec = 2 * n * t * (4 * d * d + 2 * d * f)    // self-attention projections, FFN
                     + 2 * 2 * n * t * t * d                // self-attention products
                     + 2 * n * (2 * t * d * d + 2 * s * d * d)  // cross-attention: q, out on t; k, v on s
                     + 2 * 2 * n * t * s * d;               // cross-attention products
  return o.layers * (enc + dec) + 2 * n * t * d * v;
}

/// The benchmarked Seq2Seq's shape (dropout 0.1 everywhere).
inline ModelConfig model_config(Options const& o) {
  return ModelConfig{.enc_layers = o.layers,
                     .dec_layers = o.layers,
                     .d_model = o.d_model,
                     .ffn = o.ffn,
                     .heads = o.heads,
                     .vocab = o.vocab,
                     .max_positions = std::max(o.src_len, o.tgt_len) + 8,
                     .dropout = 0.1f};
}

inline std::vector<Batch<Cpu>> make_batches(Options const& o) {
  Rng rng(o.seed, /*stream=*/7);
  std::vector<Batch<Cpu>> out;
  auto sentence = [&](int len) {
    std::vector<std::int32_t> s(static_cast<std::size_t>(len));
    for (auto& x : s) x = 4 + static_cast<std::int32_t>(rng.next_u32() % static_cast<std::uint32_t>(o.vocab - 4));
    return s;
  };
  for (int b = 0; b < o.batches; ++b) {
    std::vector<std::vector<std::int32_t>> src, tgt;
    for (int i = 0; i < o.sentences; ++i) src.push_back(sentence(o.src_len - 1)), tgt.push_back(sentence(o.tgt_len - 1));
    out.push_back(make_batch<Cpu>(src, tgt));  // each side gains its end-of-sentence token
  }
  return out;
}

template <class S>
S make_schedule(Options const& o) {
  return configure_schedule<S>({.lr = o.lr, .warmup = o.warmup, .total = o.warmup + o.warm_steps + o.steps});
}

template <class Opt>
Opt make_optimizer() {
  Opt opt{};
  if constexpr (requires { opt.beta2; }) opt.beta2 = 0.98f;  // the papers' fairseq recipes
  return opt;
}

/// What a child reports through its pipe (plain bytes: parent and child are the same program).
struct Result {
  double ms_per_step = 0, tokens_per_s = 0, gflops = 0, loss = 0;
  std::int64_t target_tokens = 0;
  char error[200] = {};
};

/// The cell (Norm, the optimizer and schedule called opt and sched) run in this process. Defined in
/// policy_matrix/run_cell.hpp, which only the cells' units include: benchmarks/CMakeLists.txt generates
/// one per policy of NormPolicies (cells_<norm>.cpp in the build tree, an explicit instantiation of
/// run_cell<Norm>), so the program's own unit compiles none of them.
template <class Norm>
Result run_cell(std::string_view opt, std::string_view sched, Options const& o);

}  // namespace lnformer::bench
