#pragma once
// Model configuration, an aggregate: ModelConfig{.enc_layers = 6, .d_model = 512, ...}.
// Defaults are fairseq's transformer_iwslt_de_en, with fairseq's special tokens (bos 0, pad 1, eos 2,
// unk 3).

#include <lnformer/core/error.hpp>
#include <lnformer/ops/activation.hpp>

#include <cstdint>

namespace lnformer {

enum class InitScheme {
  fairseq,        ///< Xavier uniform projections (q/k/v with gain 1/sqrt(2)), N(0, d^-1/2) embeddings
  xavier_normal,  ///< Xavier normal projections (Xiong et al.'s analysis)
};

struct ModelConfig {
  int enc_layers = 6;
  int dec_layers = 6;
  std::int64_t d_model = 512;
  std::int64_t ffn = 1024;
  std::int64_t heads = 4;
  std::int64_t vocab = 8000;
  std::int64_t max_positions = 1024;
  float dropout = 0.3f;             ///< residual-branch and embedding dropout
  float attention_dropout = 0.f;    ///< on the attention probabilities
  float activation_dropout = 0.f;   ///< between fc1 and fc2
  ops::Activation activation = ops::Activation::relu;
  std::int32_t padding_idx = 1;
  bool share_embeddings = true;     ///< encoder and decoder share one token embedding
  bool tie_output = true;           ///< the output projection is the decoder's token embedding
  /// The output projection adds a bias [vocab] ("decoder.output_projection.bias"): fairseq has none;
  /// PyTorch's nn.Linear head (what nn.Transformer users add) and the papers' analysis setup have one.
  bool output_bias = false;
  InitScheme init = InitScheme::fairseq;
  bool zero_init_qk = false;        ///< zero query and key projections (Xiong et al.'s analysis option)
  float label_smoothing = 0.1f;     ///< fairseq's label-smoothed cross-entropy epsilon
  /// The layers of a stack keep two sets of backward-only buffers, used alternately, instead of one
  /// each (nn/layer.hpp BackwardBuffer); the gradients are the same either way.
  bool share_backward_buffers = true;

  void validate() const {
    LNF_EXPECTS_AS(ValueError, enc_layers >= 0 && dec_layers >= 0, "ModelConfig: negative layer count ({}, {})",
                   enc_layers, dec_layers);
    LNF_EXPECTS_AS(ValueError, d_model > 0 && ffn > 0 && heads > 0 && d_model % heads == 0,
                   "ModelConfig: d_model {} must be positive and divisible by heads {}; ffn {} positive", d_model,
                   heads, ffn);
    LNF_EXPECTS_AS(ValueError, d_model >= 4, "ModelConfig: d_model {} is too small for sinusoidal positions (>= 4)",
                   d_model);
    LNF_EXPECTS_AS(ValueError, vocab > padding_idx && padding_idx >= 0,
                   "ModelConfig: padding_idx {} must lie inside the vocabulary of {}", padding_idx, vocab);
    for (float p : {dropout, attention_dropout, activation_dropout})
      LNF_EXPECTS_AS(ValueError, p >= 0.f && p < 1.f, "ModelConfig: dropout probability {} outside [0, 1)", p);
    LNF_EXPECTS_AS(ValueError, label_smoothing >= 0.f && label_smoothing < 1.f,
                   "ModelConfig: label_smoothing {} outside [0, 1)", label_smoothing);
    LNF_EXPECTS_AS(ValueError, max_positions > 0, "ModelConfig: max_positions {} must be positive", max_positions);
  }
};

}  // namespace lnformer
