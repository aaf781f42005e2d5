// Must NOT compile: a normalization policy whose Residual has no backward. The test expects the
// compiler to name the missing member (see tests/compile_fail/CMakeLists.txt).
#include <lnformer/lnformer.hpp>

struct NoBackward {
  static constexpr std::string_view name = "no-backward";
  static constexpr bool additive_residual = true;
  template <class B>
  struct Residual {
    Residual(std::int64_t, float, std::string_view) {}
    template <class F>
    lnformer::CView<B> forward(lnformer::CView<B> x, F&, lnformer::ForwardContext const&) { return x; }
    void collect(std::string const&, lnformer::ResidualNames, lnformer::ParameterList<B>&) {}
  };
  template <class B>
  using Final = lnformer::Identity<B>;
};

int main() {
  lnformer::Seq2Seq<NoBackward, lnformer::Cpu> m(lnformer::ModelConfig{}, 1);
  return 0;
}
