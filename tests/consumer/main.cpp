// A user's program, built by tests/consumer/CMakeLists.txt against an installed lnformer or one added
// with add_subdirectory. It makes a tensor, starts the CPU backend's oneDNN engine, runs an OpenMP
// loop and prints with fmt, so linking lnformer::lnformer alone must bring every dependency along.
// run_consumer.cmake checks the printed line. The two backend/core includes stand in for the
// umbrella header <lnformer/lnformer.hpp>, which will replace them.
#include <lnformer/backend/cpu/cpu.hpp>
#include <lnformer/core/tensor.hpp>
#include <lnformer/version.hpp>

#include <fmt/format.h>

#include <span>
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
  fmt::print("lnformer {} consumer ok: shape {}, sum {}, engine kind cpu={}\n", LNF_VERSION_STRING, t.shape(),
             sum, ctx.engine().get_kind() == dnnl::engine::kind::cpu);
  return sum == 42.0 ? 0 : 1;
}
