// Shared backward buffers (ModelConfig::share_backward_buffers, nn/layer.hpp BackwardBuffer): the
// layers of a stack keep two sets of the buffers only backward uses, alternating; four layers per
// stack so that layers 2 and 3 write the sets of layers 0 and 1. Every policy of the list, Seq2Seq and
// LanguageModel, every dropout active: the losses and every parameter gradient must be bit-identical
// with and without sharing, over two steps. A buffer that forward's results live in, shared by
// mistake, fails it (checked: Dropout's output buffer shared fails 6 of 6 policies); so does sharing
// that frees nothing (checked: the stack's sharing loop switched off fails the memory case).
#include <lnformer/lnformer.hpp>

#include "support.hpp"

#include <doctest/doctest.h>

#include <malloc.h>

#if defined(__SANITIZE_ADDRESS__)
#define LNF_TEST_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define LNF_TEST_ASAN 1
#endif
#endif
#ifdef LNF_TEST_ASAN
// The sanitizer runtime's count (sanitizer/allocator_interface.h, which GCC does not install).
extern "C" std::size_t __sanitizer_get_current_allocated_bytes();
#endif

#include <cstring>
#include <functional>
#include <vector>

using namespace lnformer;

namespace {

ModelConfig deep_config(bool share) {
  return ModelConfig{.enc_layers = 4, .dec_layers = 4, .d_model = 16, .ffn = 24, .heads = 2, .vocab = 17,
                     .max_positions = 32, .dropout = 0.2f, .attention_dropout = 0.1f, .activation_dropout = 0.1f,
                     .label_smoothing = 0.1f, .share_backward_buffers = share};
}

Batch<Cpu> batch() {
  return make_batch<Cpu>({{4, 5, 6, 7, 12}, {8, 9}, {10, 4, 11, 13}}, {{5, 6, 14}, {7, 8, 9, 10, 15}, {11}});
}
LmBatch<Cpu> lm_batch() { return make_lm_batch<Cpu>({{4, 5, 6, 7, 8, 16}, {9, 10}, {11, 12, 4, 13}}); }

/// Loss and every gradient (in parameter order) after `steps` forward/backward passes with distinct
/// dropout masks, gradients accumulating.
template <class Model, class BatchT>
std::vector<std::vector<float>> run(Model& m, BatchT const& b, int steps) {
  std::vector<std::vector<float>> out;
  m.zero_grad();
  for (int s = 0; s < steps; ++s) {
    ForwardContext const ctx{.training = true, .seed = 11, .pass = static_cast<std::uint64_t>(s)};
    double const loss = m.forward(b, ctx).loss;  // its bytes, as two floats: compared bit for bit below
    std::vector<float> bits(2);
    std::memcpy(bits.data(), &loss, sizeof loss);
    out.push_back(bits);
    m.backward(1.f);
  }
  for (auto& p : m.parameters()) out.push_back(p.param->grad.to_host());
  return out;
}

template <class Model, class BatchT>
void check_same(BatchT const& b, std::string const& what) {
  Model shared(deep_config(true), 5), own(deep_config(false), 5);
  auto const a = run(shared, b, 2), c = run(own, b, 2);
  REQUIRE(a.size() == c.size());
  for (std::size_t i = 0; i < a.size(); ++i) {
    INFO(what << ": entry " << i << " (0, 1: losses; then the gradients in parameter order)");
    REQUIRE(a[i].size() == c[i].size());
    CHECK(std::memcmp(a[i].data(), c[i].data(), a[i].size() * sizeof(float)) == 0);
  }
}

/// Bytes the C heap has handed out and not taken back (tensors are allocated there): glibc's count,
/// or under AddressSanitizer, whose allocator replaces glibc's, the sanitizer's.
std::size_t heap_in_use() {
#ifdef LNF_TEST_ASAN
  return __sanitizer_get_current_allocated_bytes();
#else
  struct mallinfo2 const mi = mallinfo2();
  return mi.uordblks + mi.hblkhd;
#endif
}

}  // namespace

TEST_CASE_TEMPLATE_DEFINE("shared backward buffers give bit-identical gradients", Norm, same_gradients) {
  check_same<Seq2Seq<Norm, Cpu>>(batch(), std::string("Seq2Seq ") + std::string(Norm::name));
  check_same<LanguageModel<Norm, Cpu>>(lm_batch(), std::string("LanguageModel ") + std::string(Norm::name));
}
TEST_CASE_TEMPLATE_APPLY(same_gradients, test::TupleOf<NormPolicies>);

TEST_CASE("shared backward buffers free the memory of all but two layers' backward buffers") {
  // A model whose activations dwarf its parameters: 8 + 8 layers, 64 x 32 tokens, d 64.
  auto config = [](bool share) {
    return ModelConfig{.enc_layers = 8, .dec_layers = 8, .d_model = 64, .ffn = 128, .heads = 4, .vocab = 50,
                       .max_positions = 64, .dropout = 0.1f, .share_backward_buffers = share};
  };
  std::vector<std::vector<std::int32_t>> src(64, std::vector<std::int32_t>(32, 7)), tgt = src;
  auto const b = make_batch<Cpu>(src, tgt);
  auto step_memory = [&](bool share) {
    std::size_t const before = heap_in_use();
    Seq2Seq<PreLN, Cpu> m(config(share), 3);
    ForwardContext const ctx{.training = true, .seed = 1};
    (void)m.forward(b, ctx);
    m.backward(1.f);
    return static_cast<double>(heap_in_use() - before);
  };
  (void)step_memory(false);  // oneDNN's primitives and the workspace for these shapes, once
  double const own = step_memory(false), shared = step_memory(true);
  MESSAGE("heap after one step: " << own / 1e6 << " MB with a set of backward buffers per layer, " << shared / 1e6
                                  << " MB with two sets per stack");
  // Backward's buffers are about half of the activations; 14 of 16 layers' sets are gone.
  CHECK(shared < 0.75 * own);
}
