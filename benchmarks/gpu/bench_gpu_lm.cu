// GPU training throughput: LanguageModel<PreLN, Gpu> (GPT-2-small shape by default: 12 layers, d 768,
// 12 heads, FFN 3072, vocabulary 50,257, sequences of 1,024) trained with AdamW for a number of timed
// steps after warm-up steps. Prints tokens/s, model FLOP/s (6 x parameters x tokens plus attention's
// 12 x layers x T x d per token, the usual accounting), and model-FLOPs utilisation against the cuBLAS
// GEMM peaks measured in the same run: bf16 (f32 accumulation) and f32.
//
// Without a CUDA device it says so and exits with status 2.
#include <lnformer/lnformer.hpp>

#include <CLI/CLI.hpp>
#include <cublas_v2.h>
#include <cuda_bf16.h>
#include <fmt/format.h>

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <vector>

using namespace lnformer;

namespace {

/// Peak GEMM rate (FLOP/s) of an n x n x n product with the given input type and compute type: the best
/// of `reps` timed calls after one warm-up call, timed with CUDA events on the context's stream.
double gemm_peak(cudaDataType_t type, cublasComputeType_t compute, int n, int reps) {
  auto& ctx = cuda::context();
  std::size_t const elem = type == CUDA_R_16BF ? 2 : 4;
  std::size_t const bytes = static_cast<std::size_t>(n) * n * elem;
  void *a = nullptr, *b = nullptr, *c = nullptr;
  LNF_CUDA_CHECK(cudaMalloc(&a, bytes));
  LNF_CUDA_CHECK(cudaMalloc(&b, bytes));
  LNF_CUDA_CHECK(cudaMalloc(&c, bytes));
  LNF_CUDA_CHECK(cudaMemsetAsync(a, 0, bytes, ctx.stream()));
  LNF_CUDA_CHECK(cudaMemsetAsync(b, 0, bytes, ctx.stream()));
  float const one = 1.f, zero = 0.f;
  cudaEvent_t start = nullptr, stop = nullptr;
  LNF_CUDA_CHECK(cudaEventCreate(&start));
  LNF_CUDA_CHECK(cudaEventCreate(&stop));
  double best = 0;
  for (int r = 0; r <= reps; ++r) {
    LNF_CUDA_CHECK(cudaEventRecord(start, ctx.stream()));
    LNF_CUBLAS_CHECK(cublasGemmEx(ctx.blas(), CUBLAS_OP_N, CUBLAS_OP_N, n, n, n, &one, a, type, n, b, type, n, &zero, c,
                                  type, n, compute, CUBLAS_GEMM_DEFAULT));
    LNF_CUDA_CHECK(cudaEventRecord(stop, ctx.stream()));
    LNF_CUDA_CHECK(cudaEventSynchronize(stop));
    float ms = 0;
    LNF_CUDA_CHECK(cudaEventElapsedTime(&ms, start, stop));
    if (r > 0) best = std::max(best, 2.0 * n * n * static_cast<double>(n) / (ms * 1e-3));
  }
  cudaEventDestroy(start);
  cudaEventDestroy(stop);
  cudaFree(a);
  cudaFree(b);
  cudaFree(c);
  return best;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"GPU training throughput of LanguageModel<PreLN, Gpu> and its model-FLOPs utilisation"};
  int layers = 12, warm = 3, steps = 10, batch = 8, seq = 1024, gemm_n = 8192;
  std::int64_t d_model = 768, heads = 12, ffn = 3072, vocab = 50257;
  app.add_option("--layers", layers, "decoder layers")->check(CLI::PositiveNumber);
  app.add_option("--d-model", d_model, "model width")->check(CLI::PositiveNumber);
  app.add_option("--heads", heads, "attention heads")->check(CLI::PositiveNumber);
  app.add_option("--ffn", ffn, "feed-forward width")->check(CLI::PositiveNumber);
  app.add_option("--vocab", vocab, "vocabulary size")->check(CLI::PositiveNumber);
  app.add_option("--batch", batch, "sequences per step")->check(CLI::PositiveNumber);
  app.add_option("--seq", seq, "tokens per sequence")->check(CLI::PositiveNumber);
  app.add_option("--warm-steps", warm, "untimed steps first")->check(CLI::NonNegativeNumber);
  app.add_option("--steps", steps, "timed steps")->check(CLI::PositiveNumber);
  app.add_option("--gemm-n", gemm_n, "size of the square GEMM that measures the peak")->check(CLI::PositiveNumber);
  CLI11_PARSE(app, argc, argv);

  if (std::string why = cuda::device_unavailable_reason(); !why.empty()) {
    fmt::print(stderr, "bench_gpu_lm: {}; nothing measured\n", why);
    return 2;
  }
  try {
    auto const& props = cuda::context().properties();
    fmt::print("device: {} ({} SMs, {:.1f} GiB)\n", props.name, props.multiProcessorCount,
               static_cast<double>(props.totalGlobalMem) / (1 << 30));
    double const peak_bf16 = gemm_peak(CUDA_R_16BF, CUBLAS_COMPUTE_32F, gemm_n, 5);
    double const peak_f32 = gemm_peak(CUDA_R_32F, CUBLAS_COMPUTE_32F, gemm_n, 5);
    fmt::print("cuBLAS GEMM peak ({}^3): bf16 {:.1f} TFLOP/s, f32 {:.1f} TFLOP/s\n", gemm_n, peak_bf16 / 1e12,
               peak_f32 / 1e12);

    ModelConfig const c{.enc_layers = 0, .dec_layers = layers, .d_model = d_model, .ffn = ffn, .heads = heads,
                        .vocab = vocab, .max_positions = seq + 2, .dropout = 0.1f,
                        .activation = ops::Activation::gelu};
    LanguageModel<PreLN, Gpu> model(c, 1);
    std::int64_t params = 0;
    for (auto const& p : model.parameters()) params += p.param->value.numel();
    Trainer trainer(model, AdamW{}, Constant{.lr = 1e-4f}, TrainerOptions{.clip_norm = 1.f});
    Rng rng(2);
    std::vector<std::vector<std::int32_t>> seqs(static_cast<std::size_t>(batch));
    for (auto& s : seqs) {
      s.resize(static_cast<std::size_t>(seq));
      for (auto& t : s) t = static_cast<std::int32_t>(4 + rng.below(static_cast<std::uint32_t>(vocab - 4)));
    }
    auto const lm_batch = make_lm_batch<Gpu>(seqs);
    for (int i = 0; i < warm; ++i) trainer.step(lm_batch);
    cuda::context().synchronize();
    auto const t0 = std::chrono::steady_clock::now();
    double loss = 0;
    for (int i = 0; i < steps; ++i) loss = trainer.step(lm_batch).loss.mean_loss();  // step() syncs on the loss
    cuda::context().synchronize();
    double const secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    double const tokens = static_cast<double>(batch) * seq * steps;
    double const flops_per_token = 6.0 * static_cast<double>(params) + 12.0 * layers * seq * static_cast<double>(d_model);
    double const rate = tokens * flops_per_token / secs;
    fmt::print("LanguageModel<PreLN, Gpu> f32: {} layers, d {}, {} heads, ffn {}, vocab {}, {:.1f} M parameters\n",
               layers, d_model, heads, ffn, vocab, static_cast<double>(params) / 1e6);
    fmt::print("batch {} x {} tokens: {:.1f} ms/step, {:.0f} tokens/s, {:.1f} TFLOP/s model, "
               "MFU {:.1f}% of the bf16 peak, {:.1f}% of the f32 peak; loss after the steps {:.3f}\n",
               batch, seq, 1e3 * secs / steps, tokens / secs, rate / 1e12, 100 * rate / peak_bf16,
               100 * rate / peak_f32, loss);
  } catch (Error const& e) {
    fmt::print(stderr, "bench_gpu_lm: {}\n", e.what());
    return 1;
  }
  return 0;
}
