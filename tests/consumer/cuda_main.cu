// Built only when the CUDA language is available (CONSUMER_CUDA): proves that lnformer::cuda brings
// the CUDA runtime and cuBLAS/cuBLASLt, and that the umbrella header, with the GPU backend it includes
// under nvcc (backend/cuda/*.cuh, installed with the package), compiles into a Seq2Seq<PreLN, Gpu>
// training step. No GPU is needed to build it: without one it reports why; with one it trains a step.
#include <lnformer/lnformer.hpp>
#include <lnformer/version.hpp>

#include <cublasLt.h>

#include <fmt/format.h>

#include <cmath>
#include <string>

int main() {
  using namespace lnformer;
  std::string const why = cuda::device_unavailable_reason();
  std::string result = why.empty() ? "" : why;
  if (why.empty()) {  // with a GPU: one training step of a tiny model must give a finite loss
    Seq2Seq<PreLN, Gpu> model(ModelConfig{.enc_layers = 1, .dec_layers = 1, .d_model = 8, .ffn = 16, .heads = 2,
                                          .vocab = 16, .max_positions = 8},
                              1);
    Trainer trainer(model, Adam{}, Constant{.lr = 1e-3f});
    double const loss = trainer.step(make_batch<Gpu>({{4, 5, 6}}, {{7, 8}})).loss.mean_loss();
    if (!std::isfinite(loss)) {
      fmt::print("gpu training step gave loss {}\n", loss);
      return 1;
    }
    result = fmt::format("gpu step ok, loss {:.3f}", loss);
  }
  fmt::print("lnformer {} cuda consumer ok: shape {}, cublasLt {}, {}\n", LNF_VERSION_STRING, Shape{2, 3},
             cublasLtGetVersion(), result);
  return 0;
}
