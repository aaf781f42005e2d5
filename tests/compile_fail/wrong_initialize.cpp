// Must NOT compile: a policy whose initialize hook has the wrong signature (no Rng&). Without the
// check it would silently never be called.
#include <lnformer/lnformer.hpp>

struct BadInit {
  static constexpr std::string_view name = "bad-init";
  static constexpr bool additive_residual = true;
  template <class B>
  using Residual = lnformer::PreLN::Residual<B>;
  template <class B>
  using Final = lnformer::LayerNorm<B>;
  template <class Model>
  static void initialize(Model& model);  // should be (Model& model, Rng& rng)
};

int main() {
  lnformer::Seq2Seq<BadInit, lnformer::Cpu> model(lnformer::ModelConfig{}, 1);
  (void)model;
  return 0;
}
