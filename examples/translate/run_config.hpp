#pragma once
// The run's configuration (saved as JSON in every checkpoint, so --resume, translate and evaluate
// rebuild the same model), the model configuration it implies, and the schedule and optimizer it names.

#include "common.hpp"

#include <lnformer/optim/optimizers.hpp>
#include <lnformer/schedule/schedules.hpp>

#include <variant>

namespace translate {

// --- the run's configuration, saved as JSON in every checkpoint ------------------------------------

struct RunConfig {
  std::string norm = "pre";
  std::string optimizer = "adam";
  std::string schedule = "auto";  ///< resolved before saving: constant without warm-up, else inverse_sqrt
  float lr = 1e-3f;
  std::int64_t warmup = 0;
  std::int64_t schedule_steps = 0;  ///< `total` of the decaying schedules (default: --max-steps)
  float beta2 = 0.98f;
  float weight_decay = -1.f;  ///< < 0: the optimizer's default
  int enc_layers = 3;
  int dec_layers = 3;
  std::int64_t d_model = 256;
  std::int64_t ffn = 1024;
  std::int64_t heads = 4;
  float dropout = 0.1f;
  float attention_dropout = 0.f;
  float activation_dropout = 0.f;
  float label_smoothing = 0.1f;
  float clip_norm = 1.f;
  std::int64_t max_tokens = 4096;
  std::int64_t update_freq = 1;  ///< batches (per rank) whose gradients make one update
  std::int64_t max_len = 128;  ///< training pairs with a longer side (SentencePiece tokens) are left out
  std::int64_t max_positions = 1024;
  std::uint64_t seed = 1;
  std::int64_t vocab = 0;  ///< the SentencePiece model's size
  std::string src_lang = "de";
  std::string tgt_lang = "en";
  std::string spm_sha256;
  std::string data;         ///< the corpus directory trained on (--resume's default --data)
  std::string data_sha256;  ///< of its six split files (data_fingerprint): --resume checks it
};
NLOHMANN_DEFINE_TYPE_NON_INTRUSIVE_WITH_DEFAULT(RunConfig, norm, optimizer, schedule, lr, warmup, schedule_steps, beta2,
                                                weight_decay, enc_layers, dec_layers, d_model, ffn, heads, dropout,
                                                attention_dropout, activation_dropout, label_smoothing, clip_norm,
                                                max_tokens, update_freq, max_len, max_positions, seed, vocab, src_lang, tgt_lang,
                                                spm_sha256, data, data_sha256)

inline ModelConfig model_config(RunConfig const& c) {
  return ModelConfig{.enc_layers = c.enc_layers,
                     .dec_layers = c.dec_layers,
                     .d_model = c.d_model,
                     .ffn = c.ffn,
                     .heads = c.heads,
                     .vocab = c.vocab,
                     .max_positions = c.max_positions,
                     .dropout = c.dropout,
                     .attention_dropout = c.attention_dropout,
                     .activation_dropout = c.activation_dropout,
                     .label_smoothing = c.label_smoothing};
}

// --- the schedule, chosen by name from the Schedules list (one variant type: fewer instantiations) --

template <class L>
struct VariantOf;
template <class... Ts>
struct VariantOf<TypeList<Ts...>> {
  using type = std::variant<Ts...>;
};

struct AnySchedule {
  static constexpr std::string_view name = "any";
  VariantOf<Schedules>::type s;
  float operator()(std::int64_t t) const {
    return std::visit([&](auto const& x) { return x(t); }, s);
  }
  void validate() const {
    std::visit([](auto const& x) { x.validate(); }, s);
  }
  [[nodiscard]] std::string_view which() const {
    return std::visit([](auto const& x) { return std::remove_cvref_t<decltype(x)>::name; }, s);
  }
};
static_assert(Schedule<AnySchedule>);

inline AnySchedule make_schedule(RunConfig const& c) {
  return dispatch(
      Schedules{}, c.schedule,
      [&](auto tag) {
        using S = typename decltype(tag)::type;
        if constexpr (requires(S s) { s.total; })
          LNF_EXPECTS_AS(ValueError, c.schedule_steps > 0,
                         "--schedule {} decays to its end: give --max-steps or --schedule-steps", S::name);
        if constexpr (std::is_same_v<S, InverseSqrt>)
          LNF_EXPECTS_AS(ValueError, c.warmup >= 1, "--schedule inverse_sqrt needs --warmup >= 1");
        AnySchedule a{configure_schedule<S>({.lr = c.lr, .warmup = c.warmup, .total = c.schedule_steps})};
        a.validate();
        return a;
      },
      "--schedule");
}

template <class Opt>
Opt make_optimizer(RunConfig const& c) {
  Opt o{};
  if constexpr (requires { o.beta2; }) o.beta2 = c.beta2;
  if (c.weight_decay >= 0) o.weight_decay = c.weight_decay;
  return o;
}

}  // namespace translate
