// Data-parallel training on GPUs, run as `mpirun -np 2 gpu_data_parallel` (ctest does, where the
// CUDA language, MPI and NCCL are available; tests/dist/CMakeLists.txt).
//
// What it shows, on a machine with GPUs:
// - with NCCL (two or more GPUs: one per rank), K data-parallel steps on two ranks reach the
//   parameters that single-GPU training reaches on the concatenated batches (PreLN and AdminLN,
//   Adam with clipping, the last step with one rank idle), to f32 reduction-order tolerance, and the
//   gradient all-reduce and parameter broadcast go through NCCL (device collectives);
// - over MPI with the gradients staged through host memory (any number of GPUs, ranks may share
//   one), the same equivalence.
// Without a CUDA device every rank says so and the test passes (skipped); with one GPU the NCCL part
// is skipped with a message (NCCL needs a GPU per rank).
#define DOCTEST_CONFIG_IMPLEMENT
#include <lnformer/dist/nccl.cuh>
#include <lnformer/lnformer.hpp>

#include <doctest/doctest.h>
#include <fmt/format.h>

#include <cmath>
#include <memory>
#include <string>
#include <vector>

using namespace lnformer;

namespace {

dist::Communicator* g_comm = nullptr;
dist::Communicator& comm() { return *g_comm; }

SyntheticTask task() { return SyntheticTask{.kind = SyntheticKind::reverse, .symbols = 8, .min_len = 3, .max_len = 8}; }

ModelConfig config(SyntheticTask const& t) {
  return ModelConfig{.enc_layers = 2, .dec_layers = 2, .d_model = 32, .ffn = 64, .heads = 4, .vocab = t.vocab(),
                     .max_positions = 16, .dropout = 0.f};
}

template <class Norm>
void check_equivalence() {
  constexpr int kSteps = 4;
  int const n = comm().size();
  Rng rng(7, 1);
  std::vector<std::vector<SyntheticExample>> data;  // kSteps * n - 1: the last rank idles in the last step
  for (int i = 0; i < kSteps * n - 1; ++i) data.push_back(task().sample(rng, 5 + 3 * (i % 3)));
  auto const t = task();
  auto profile = [](auto& model) {  // the policy's calibrate hook (Admin's profiling), where it has one
    Rng prng(7, 9);
    (void)calibrate_norm(model, make_batch<Gpu>(task().sample(prng, 16)), ForwardContext{});
  };
  Seq2Seq<Norm, Gpu> dp_model(config(t), 1 + static_cast<std::uint64_t>(comm().rank()));  // differs per rank
  profile(dp_model);
  Trainer dp(dp_model, Adam{}, Constant{.lr = 2e-3f}, TrainerOptions{.clip_norm = 0.5f, .comm = &comm()});
  Seq2Seq<Norm, Gpu> ref_model(config(t), 1);
  profile(ref_model);
  Trainer ref(ref_model, Adam{}, Constant{.lr = 2e-3f}, TrainerOptions{.clip_norm = 0.5f});
  for (int s = 0; s < kSteps; ++s) {
    auto const mine = static_cast<std::size_t>(s * n + comm().rank());
    StepStats const a = mine < data.size() ? dp.step(make_batch<Gpu>(data[mine])) : dp.step_idle();
    std::vector<SyntheticExample> all;
    for (int r = 0; r < n; ++r)
      if (auto const k = static_cast<std::size_t>(s * n + r); k < data.size()) all.insert(all.end(), data[k].begin(), data[k].end());
    StepStats const b = ref.step(make_batch<Gpu>(all));
    CHECK(a.loss.tokens == b.loss.tokens);
    CHECK(a.loss.loss == doctest::Approx(b.loss.loss).epsilon(1e-5));
    CHECK(a.grad_norm == doctest::Approx(b.grad_norm).epsilon(1e-4));
  }
  double diff = 0;
  for (std::size_t i = 0; i < dp.parameters().size(); ++i) {
    auto const x = dp.parameters()[i].param->value.to_host(), y = ref.parameters()[i].param->value.to_host();
    for (std::size_t k = 0; k < x.size(); ++k) diff = std::max(diff, static_cast<double>(std::abs(x[k] - y[k])));
  }
  fmt::print("rank {}: {} over {} after {} steps on {} ranks: max |data-parallel - single GPU| = {:.3g} (tolerance 2e-4)\n",
             comm().rank(), Norm::name, comm().name(), kSteps, n, diff);
  CHECK(diff <= 2e-4);
  CHECK(diff > 0.0);
}

}  // namespace

TEST_CASE("data-parallel GPU training equals single-GPU training on the concatenated batches") {
  check_equivalence<PreLN>();
  check_equivalence<AdminLN>();
}

int main(int argc, char** argv) {
  dist::MpiSession session(argc, argv);
  dist::Mpi world;
  // Every rank must agree on what runs: count the ranks with a device and the host's devices.
  std::int64_t have[2] = {cuda::device_available() ? 1 : 0, 0};
  if (have[0] != 0) {
    int devices = 0;
    cudaGetDeviceCount(&devices);
    have[1] = devices >= world.size() ? 1 : 0;  // a GPU per rank (single host, as under ctest)
  }
  world.allreduce_sum(std::span<std::int64_t>(have, 2));
  bool const g_skip = have[0] != world.size();
  std::unique_ptr<dist::Nccl> nccl;
  if (g_skip) {  // nothing to run: say why, and pass (CI machines have no GPU)
    if (world.is_root())
      fmt::print("gpu data-parallel tests SKIPPED: {} of {} ranks see a CUDA device ({})\n", have[0], world.size(),
                 cuda::device_unavailable_reason());
    return 0;
  }
  // NCCL picks this rank's GPU, so it is made before anything touches the GPU.
  bool const use_nccl = have[1] == world.size();
  if (use_nccl) nccl = std::make_unique<dist::Nccl>(world);
  doctest::Context ctx(argc, argv);
  int failed = 0;
  g_comm = &world;  // MPI, device tensors staged through host memory
  if (world.is_root()) fmt::print("over MPI (gradients staged through host memory)\n");
  failed |= ctx.run();
  if (use_nccl) {
    g_comm = nccl.get();
    if (world.is_root()) fmt::print("over NCCL\n");
    failed |= ctx.run();
  } else if (world.is_root()) {
    fmt::print("NCCL part SKIPPED: it needs a GPU per rank ({} ranks, fewer GPUs)\n", world.size());
  }
  std::int64_t any = failed != 0 ? 1 : 0;
  world.allreduce_sum(std::span<std::int64_t>(&any, 1));
  if (world.is_root()) fmt::print("gpu data-parallel tests on {} ranks: {}\n", world.size(), any == 0 ? "passed" : "FAILED");
  return any == 0 ? 0 : 1;
}
