// Must NOT compile: a policy whose calibrate hook has the wrong signature (no ForwardContext).
#include <lnformer/lnformer.hpp>

struct BadCalibrate {
  static constexpr std::string_view name = "bad-calibrate";
  static constexpr bool additive_residual = true;
  template <class B>
  using Residual = lnformer::PreLN::Residual<B>;
  template <class B>
  using Final = lnformer::LayerNorm<B>;
  template <class Model, class BatchT>
  static void calibrate(Model& model, BatchT const& batch);  // should take the ForwardContext too
};

int main() {
  lnformer::Seq2Seq<BadCalibrate, lnformer::Cpu> model(lnformer::ModelConfig{}, 1);
  (void)model;
  return 0;
}
