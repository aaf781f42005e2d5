// The translation unit whose compile cost benchmarks/compile_cost.sh reports: everything a user's
// program needs for one Seq2Seq<PreLN, Cpu> training step (model, Adam, inverse-sqrt schedule,
// Trainer) through the umbrella header. It is also a program: one step on a tiny random batch.
#include <lnformer/lnformer.hpp>

#include <fmt/format.h>

int main() {
  using namespace lnformer;
  ModelConfig const cfg{.enc_layers = 1, .dec_layers = 1, .d_model = 16, .ffn = 32, .heads = 2, .vocab = 32,
                        .max_positions = 16};
  Seq2Seq<PreLN, Cpu> model(cfg, 1);
  Trainer trainer(model, Adam{}, InverseSqrt{.peak = 1e-3f, .warmup = 10});
  auto const s = trainer.step(make_batch<Cpu>({{5, 6, 7}, {8, 9}}, {{10, 11}, {12, 13, 14}}));
  fmt::print("one step: loss {:.4f} over {} target tokens\n", s.loss.mean_loss(), s.loss.tokens);
  return 0;
}
