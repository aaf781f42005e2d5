// A user's program, built by tests/consumer/CMakeLists.txt against an installed lnformer or one added
// with add_subdirectory. It includes only the umbrella header, makes a tensor, starts the CPU backend's
// oneDNN engine, runs an OpenMP loop, prints with fmt and runs one forward/backward pass of a tiny
// PreLN Seq2Seq, so linking lnformer::lnformer alone must bring every dependency along and the whole
// header set must compile outside this source tree. run_consumer.cmake checks the printed line.
#include <lnformer/lnformer.hpp>

#include <fmt/format.h>

#include <cmath>
#include <span>
#include <string>
#include <vector>

int main() {
  using namespace lnformer;
  std::vector<float> const host{1, 2, 3, 4, 5, 6};
  Tensor<Cpu> t(Shape{2, 3}, std::span<float const>(host));

  float* p = t.data();
#pragma omp parallel for
  for (int i = 0; i < 6; ++i) p[i] *= 2.0f;

  auto& ctx = cpu::context();  // the per-thread oneDNN engine and stream: libdnnl must be linked
  ctx.stream().wait();

  double sum = 0;
  for (float v : t.to_host()) sum += v;

  Seq2Seq<PreLN, Cpu> model(ModelConfig{.enc_layers = 1, .dec_layers = 1, .d_model = 8, .ffn = 16, .heads = 2,
                                        .vocab = 12, .dropout = 0.f},
                            /*seed=*/1);
  auto const batch = make_batch<Cpu>({{4, 5, 6}, {7, 8}}, {{9, 10}, {11}});
  auto const stats = model.forward(batch, ForwardContext{.training = false});
  model.backward(1.f);
  // One Trainer step (train/) and a BLEU score (metrics/): the umbrella header must bring them too.
  Trainer trainer(model, Adam{}, Constant{.lr = 1e-3f}, TrainerOptions{.clip_norm = 1.f});
  auto const step = trainer.step(batch);
  std::vector<std::string> const hyp{"the cat sat on the mat"}, ref{"the cat sat on the mat"};
  bool const model_ok = std::isfinite(stats.loss) && stats.tokens == 5 && step.step == 1 &&
                        std::isfinite(step.grad_norm) && std::abs(corpus_bleu(hyp, ref).score - 100.0) < 1e-9;

  fmt::print("lnformer {} consumer ok: shape {}, sum {}, engine kind cpu={}, model loss finite={}\n",
             LNF_VERSION_STRING, t.shape(), sum, ctx.engine().get_kind() == dnnl::engine::kind::cpu, model_ok);
  return sum == 42.0 && model_ok ? 0 : 1;
}
