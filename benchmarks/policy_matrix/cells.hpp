#pragma once
// The cells of the policy matrix (benchmarks/bench_policy_matrix.cpp): one training run of a Seq2Seq
// for a normalization policy x optimizer x schedule. Split from the program so that each norm's 24
// cells compile in a translation unit of their own (policy_matrix/cells_<norm>.cpp, explicit
// instantiations of run_cell<Norm>): one 133 s / 1.3 GB compile became six of 34-38 s and at most
// 767 MB that build in parallel (benchmarks/compile_cost.sh; README "Compile cost").

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

template <class Norm, class Opt, class Sched>
Result run_combination(Options const& o) {
  cpu::set_gemm_math(cpu::parse_gemm_math(o.gemm_math));  // this cell's process only
  Seq2Seq<Norm, Cpu> model(model_config(o), o.seed);
  auto const batches = make_batches(o);
  Trainer trainer(model, make_optimizer<Opt>(), make_schedule<Sched>(o),
                  TrainerOptions{.clip_norm = o.clip_norm, .seed = o.seed});
  (void)trainer.calibrate(batches[0]);  // a policy that sets parameters from data (Admin's w)
  Result r;
  std::vector<double> ms;
  StepStats last;
  for (int i = 0; i < o.warm_steps + o.steps; ++i) {
    auto const& batch = batches[static_cast<std::size_t>(i) % batches.size()];
    auto const t0 = Clock::now();
    last = trainer.step(batch);
    double const dt = std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
    if (i >= o.warm_steps) {
      ms.push_back(dt);
      r.target_tokens = last.loss.tokens;
    }
  }
  std::sort(ms.begin(), ms.end());
  r.ms_per_step = ms[ms.size() / 2];
  r.tokens_per_s = static_cast<double>(r.target_tokens) / (r.ms_per_step / 1e3);
  r.gflops = 3 * forward_flops(o) / (r.ms_per_step / 1e3) / 1e9;
  r.loss = last.loss.loss / static_cast<double>(last.loss.tokens);
  return r;
}

/// The cell (Norm, the optimizer and schedule called opt and sched) run in this process.
template <class Norm>
Result run_cell(std::string_view opt, std::string_view sched, Options const& o) {
  return dispatch(
      Optimizers{}, opt,
      [&](auto otag) {
        using Opt = typename decltype(otag)::type;
        return dispatch(
            Schedules{}, sched,
            [&](auto stag) { return run_combination<Norm, Opt, typename decltype(stag)::type>(o); }, "schedule");
      },
      "optimizer");
}

// Instantiated in policy_matrix/cells_<norm>.cpp, one translation unit per norm.
extern template Result run_cell<PostLN>(std::string_view, std::string_view, Options const&);
extern template Result run_cell<PreLN>(std::string_view, std::string_view, Options const&);
extern template Result run_cell<AdminLN>(std::string_view, std::string_view, Options const&);
extern template Result run_cell<DeepNorm>(std::string_view, std::string_view, Options const&);
extern template Result run_cell<ReZero>(std::string_view, std::string_view, Options const&);

}  // namespace lnformer::bench
