// Must NOT compile: a normalization policy that does not say what comes after the stack.
#include <lnformer/lnformer.hpp>

struct NoFinal {
  static constexpr std::string_view name = "no-final";
  static constexpr bool additive_residual = true;
  template <class B>
  using Residual = lnformer::PreLN::Residual<B>;
};

int main() {
  lnformer::Encoder<NoFinal, lnformer::Cpu>* e = nullptr;
  lnformer::EncoderLayer<NoFinal, lnformer::Cpu> layer(lnformer::ModelConfig{}, "x");
  (void)e;
  return 0;
}
