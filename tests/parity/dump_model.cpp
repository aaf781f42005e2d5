// dump_model <policy> <seq2seq|lm> <out.safetensors> [paper]
//
// The C++ half of the PyTorch parity test (tests/parity/parity.py): builds a small model of the
// given normalization policy, gives every parameter that starts at a constant (LayerNorm gains and
// biases, linear biases, Admin w, ReZero r) random values so that every path is exercised, runs one
// forward pass (dropout off) and backward(1) of the summed label-smoothed loss, and writes one
// safetensors file with
//   param/<name>, grad/<name>   every parameter and its gradient, under the model's fairseq names;
//   batch/<name>                the int32 batch tensors (src, src_pos, prev, prev_pos, target for a
//                               Seq2Seq; input, input_pos, target for a LanguageModel);
//   logits                      [N, T, V]; loss, nll [1] (F32; the exact doubles are in the metadata)
// and the metadata: format, policy, kind, config (JSON: every ModelConfig field the model uses),
// loss, nll, tokens (decimal strings, loss and nll with 17 significant digits).
//
// The variants differ per policy so that the parity test covers, across the suite: ReLU and GELU,
// shared and separate encoder/decoder embeddings, tied and untied output projections, with and without
// an output bias (tied with a bias too), 2 and 4 heads. With `paper`, a Seq2Seq in the setup of the
// papers' measurements (analysis/paper_setup.hpp: untied output projection with a bias, plain
// cross-entropy, a batch of random tokens with the decoder fed the target), the models and data that
// paper_figures measures by default.
#include <lnformer/lnformer.hpp>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <cstdio>
#include <exception>
#include <map>
#include <string>
#include <string_view>
#include <vector>

using namespace lnformer;

namespace {

struct Variant {
  ops::Activation act;
  bool share_embeddings;
  bool tie_output;
  bool output_bias;
  std::int64_t heads;
};

/// One variant per (policy, kind); see the header comment.
Variant variant_for(std::string_view policy, bool lm) {
  using ops::Activation;
  if (policy == "post")
    return lm ? Variant{Activation::gelu, true, true, true, 4} : Variant{Activation::relu, true, true, false, 2};
  if (policy == "pre")
    return lm ? Variant{Activation::relu, true, false, false, 2} : Variant{Activation::gelu, false, false, true, 4};
  if (policy == "admin")
    return lm ? Variant{Activation::gelu, true, true, false, 2} : Variant{Activation::relu, true, false, false, 2};
  if (policy == "deepnorm")
    return lm ? Variant{Activation::relu, true, false, true, 4} : Variant{Activation::gelu, false, true, false, 4};
  return lm ? Variant{Activation::gelu, true, true, false, 4}  // rezero, and a policy not named above
            : Variant{Activation::relu, false, false, false, 2};
}

ModelConfig make_config(std::string_view policy, bool lm, bool paper) {
  Variant const v = variant_for(policy, lm);
  // Different encoder and decoder depths, so that a swapped DeepNorm constant would show.
  ModelConfig const c{.enc_layers = 3, .dec_layers = lm ? 3 : 2, .d_model = 16, .ffn = 32, .heads = v.heads,
                      .vocab = 23, .max_positions = 64, .dropout = 0.f, .attention_dropout = 0.f,
                      .activation_dropout = 0.f, .activation = v.act, .padding_idx = 1,
                      .share_embeddings = v.share_embeddings, .tie_output = v.tie_output,
                      .output_bias = v.output_bias, .init = InitScheme::fairseq, .zero_init_qk = false,
                      .label_smoothing = 0.1f};
  return paper ? PaperSetup{.vocab = c.vocab}.config(c) : c;
}

std::string config_json(ModelConfig const& c, bool lm) {
  nlohmann::json j{{"enc_layers", lm ? 0 : c.enc_layers},
                   {"dec_layers", c.dec_layers},
                   {"d_model", c.d_model},
                   {"ffn", c.ffn},
                   {"heads", c.heads},
                   {"vocab", c.vocab},
                   {"max_positions", c.max_positions},
                   {"activation", std::string(ops::name(c.activation))},
                   {"padding_idx", c.padding_idx},
                   {"share_embeddings", c.share_embeddings},
                   {"tie_output", c.tie_output},
                   {"output_bias", c.output_bias},
                   {"label_smoothing", static_cast<double>(c.label_smoothing)},
                   {"layer_norm_eps", 1e-5}};
  return j.dump();
}

/// Uniform noise in [-0.3, 0.3) on every parameter without weight decay (biases, LayerNorm gains and
/// biases, Admin w, ReZero r): at their initial constants some paths would be trivially zero.
template <class Model>
void perturb_constant_parameters(Model& m, Rng& rng) {
  for (auto& p : m.parameters()) {
    if (p.param->decay) continue;
    auto h = p.param->value.to_host();
    for (auto& v : h) v += rng.uniform(-0.3f, 0.3f);
    p.param->value = Tensor<Cpu>(p.param->value.shape(), std::span<float const>(h));
  }
}

template <class Model, class BatchT>
int run(Model& m, BatchT const& batch, std::vector<std::pair<std::string, io::SaveView>> batch_tensors,
        std::string const& policy, std::string const& kind, std::string const& out) {
  ForwardContext const ctx{.training = true, .seed = 5};  // training mode: dropout is 0, so it is the identity
  // Parameters set from data as in training (Admin's w profiled on the batch, PAPERS.md section 2),
  // then perturbed below so that they are non-constant vectors.
  (void)calibrate_norm(m, batch, ctx);
  Rng rng(20240611);
  perturb_constant_parameters(m, rng);
  m.zero_grad();
  LossStats const s = m.forward(batch, ctx);
  m.backward(1.f);

  auto const params = m.parameters();
  std::vector<io::NamedTensor> named;
  for (auto const& p : params) {
    named.emplace_back("param/" + p.name, io::SaveView(p.param->value));
    named.emplace_back("grad/" + p.name, io::SaveView(p.param->grad));
  }
  for (auto& [name, v] : batch_tensors) named.emplace_back("batch/" + name, v);
  named.emplace_back("logits", io::SaveView(m.logits()));
  Tensor<Cpu> const loss(Shape{1}, std::span<float const>(std::vector<float>{static_cast<float>(s.loss)}));
  Tensor<Cpu> const nll(Shape{1}, std::span<float const>(std::vector<float>{static_cast<float>(s.nll)}));
  named.emplace_back("loss", io::SaveView(loss));
  named.emplace_back("nll", io::SaveView(nll));

  std::map<std::string, std::string> const meta{
      {"format", "lnformer-parity-1"},
      {"policy", policy},
      {"kind", kind},
      {"config", config_json(m.config(), kind == "lm")},
      {"loss", fmt::format("{:.17g}", s.loss)},
      {"nll", fmt::format("{:.17g}", s.nll)},
      {"tokens", std::to_string(s.tokens)}};
  io::save_safetensors(out, named, meta);
  fmt::print("dump_model: {} {}: {} parameters, loss {:.9g} over {} tokens -> {}\n", policy, kind, params.size(),
             s.loss, s.tokens, out);
  return 0;
}

template <class Norm>
int dump(std::string const& kind, std::string const& out, bool paper) {
  std::string const policy(Norm::name);
  bool const lm = kind == "lm";
  ModelConfig const c = make_config(policy, lm, paper);
  if (lm) {
    // Variable lengths: rows are right-padded; token 0 (bos) and 3 (unk) are ordinary ids here.
    auto const batch = make_lm_batch<Cpu>({{4, 5, 6, 7, 8, 9}, {10, 11}, {12, 13, 4, 22}, {0, 3, 21}});
    LanguageModel<Norm, Cpu> m(c, 17);
    return run(m, batch,
               {{"input", io::SaveView(batch.input)},
                {"input_pos", io::SaveView(batch.input_pos)},
                {"target", io::SaveView(batch.target)}},
               policy, kind, out);
  }
  // The paper setup's data: random tokens without padding, the decoder fed the target itself.
  auto const batch = paper ? PaperSetup{.vocab = c.vocab, .sentences = 3, .length = 6}.batch<Cpu>(29)
                           : make_batch<Cpu>({{4, 5, 6, 7, 8}, {9, 10}, {11, 12, 4, 13, 14, 15}, {22, 3}},
                                             {{5, 6, 7}, {8, 9, 10, 11, 12}, {13}, {0, 20, 21, 4}});
  Seq2Seq<Norm, Cpu> m(c, 13);
  return run(m, batch,
             {{"src", io::SaveView(batch.src)},
              {"src_pos", io::SaveView(batch.src_pos)},
              {"prev", io::SaveView(batch.prev)},
              {"prev_pos", io::SaveView(batch.prev_pos)},
              {"target", io::SaveView(batch.target)}},
             policy, kind, out);
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 4 && !(argc == 5 && std::string_view(argv[4]) == "paper")) {
    std::fprintf(stderr, "usage: %s <policy: %s> <seq2seq|lm> <out.safetensors> [paper]\n", argv[0],
                 type_names(NormPolicies{}).c_str());
    return 2;
  }
  std::string const policy = argv[1], kind = argv[2], out = argv[3];
  bool const paper = argc == 5;
  if (kind != "seq2seq" && kind != "lm") {
    std::fprintf(stderr, "dump_model: unknown kind '%s' (seq2seq or lm)\n", kind.c_str());
    return 2;
  }
  try {
    return dispatch(
        NormPolicies{}, policy, [&]<class Norm>(TypeTag<Norm>) { return dump<Norm>(kind, out, paper); },
        "normalization policy");
  } catch (std::exception const& e) {
    std::fprintf(stderr, "dump_model: %s\n", e.what());
    return 1;
  }
}
