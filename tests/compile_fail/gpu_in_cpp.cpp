// Must NOT compile: the Gpu backend named in a plain C++ translation unit (it is CUDA code, built by
// nvcc). The diagnostic must say so rather than fail deep inside the model.
#include <lnformer/lnformer.hpp>

int main() {
  lnformer::Seq2Seq<lnformer::PreLN, lnformer::Gpu> model(lnformer::ModelConfig{}, 1);
  (void)model;
  return 0;
}
