#pragma once
// The definition of run_cell<Norm> (declared in cells.hpp): included only by the cells' translation
// units, which benchmarks/CMakeLists.txt generates, one per normalization policy of the list.

#include "policy_matrix/cells.hpp"

namespace lnformer::bench {

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

}  // namespace lnformer::bench
