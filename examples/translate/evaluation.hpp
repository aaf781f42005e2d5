#pragma once
// Decoding and scoring: beam search over a split in length-sorted chunks, BLEU and chrF, the
// validation loss, and a model rebuilt from a checkpoint (its norm picks the type).

#include "checkpoints.hpp"
#include "data.hpp"
#include "debian_corpus.hpp"

#include <lnformer/io/checksum.hpp>
#include <lnformer/metrics/bleu.hpp>
#include <lnformer/metrics/chrf.hpp>

#include <memory>
#include <stdexcept>

namespace translate {

struct DecodeOptions {
  int beam = 5;
  double lenpen = 1.0;
  double max_len_a = 1.2;
  std::int64_t max_len_b = 10;
  std::int64_t batch_tokens = 2048;  ///< source tokens x beam per decoding batch (sentences sorted by length)
  std::atomic<int> const* stop = nullptr;  ///< when set and non-zero between batches: throw Interrupted
};

/// Decoding stopped by DecodeOptions::stop (a signal during the final test).
struct Interrupted : std::runtime_error {
  Interrupted() : std::runtime_error("interrupted") {}
};

/// The longest source the model reads: its positions less BOS/EOS. Longer sources are cut to it.
template <class Norm>
std::size_t source_limit(Seq2Seq<Norm, Cpu> const& model) {
  return static_cast<std::size_t>(std::max<std::int64_t>(1, model.config().max_positions - 2));
}

/// "N source(s) longer than the model's limit of L tokens were cut to L (lines a, b, ...)", for the
/// user: decoding never cuts silently.
inline std::string cut_report(std::vector<std::size_t> const& cut, std::size_t limit, std::int64_t max_positions) {
  std::string lines;
  for (std::size_t i = 0; i < cut.size() && i < 10; ++i) lines += fmt::format("{}{}", i ? ", " : "", cut[i] + 1);
  if (cut.size() > 10) lines += ", ...";
  return fmt::format("{} source sentence(s) longer than the model's limit of {} tokens ({} positions less BOS and "
                     "EOS) were cut to their first {} tokens (line(s) {})",
                     cut.size(), limit, max_positions, limit, lines);
}

/// Translations of `src` (token ids), in input order. Empty sources give empty outputs; a source
/// longer than source_limit(model) is cut to it and its index appended to `cut` (when given).
template <class Norm>
std::vector<Ids> decode_all(Seq2Seq<Norm, Cpu>& model, std::vector<Ids> const& src, DecodeOptions const& o,
                            std::vector<std::size_t>* cut = nullptr) {
  std::vector<Ids> out(src.size());
  auto const cap = source_limit(model);
  if (cut != nullptr)
    for (std::size_t i = 0; i < src.size(); ++i)
      if (src[i].size() > cap) cut->push_back(i);
  std::vector<std::size_t> order;
  for (std::size_t i = 0; i < src.size(); ++i)
    if (!src[i].empty()) order.push_back(i);
  std::stable_sort(order.begin(), order.end(), [&](std::size_t a, std::size_t b) { return src[a].size() < src[b].size(); });
  BeamOptions const bo{.beam = o.beam, .length_penalty = o.lenpen, .max_len_a = o.max_len_a, .max_len_b = o.max_len_b};
  for (std::size_t b = 0; b < order.size();) {
    if (o.stop != nullptr && o.stop->load() != 0) throw Interrupted();
    std::size_t e = b;
    std::vector<Ids> chunk;
    while (e < order.size()) {
      auto const len = std::min(src[order[e]].size(), cap) + 1;
      if (!chunk.empty() && static_cast<std::int64_t>((chunk.size() + 1) * len) * o.beam > o.batch_tokens) break;
      Ids s = src[order[e]];
      if (s.size() > cap) s.resize(cap);
      chunk.push_back(std::move(s));
      ++e;
    }
    auto hyp = beam_decode(model, chunk, bo);
    for (std::size_t k = 0; k < hyp.size(); ++k) out[order[b + k]] = std::move(hyp[k]);
    b = e;
  }
  return out;
}

struct Scores {
  BleuScore bleu;
  ChrfScore chrf;
  std::vector<std::string> hyps;
  std::vector<std::size_t> cut;  ///< sources cut to the model's limit (decode_all)
  double seconds = 0;
};

template <class Norm>
Scores score(Seq2Seq<Norm, Cpu>& model, SentencePieceVocab const& vocab, Split const& s, std::size_t limit,
             DecodeOptions const& o) {
  auto const t0 = Clock::now();
  std::size_t const n = std::min(limit, s.src_ids.size());
  std::vector<Ids> const src(s.src_ids.begin(), s.src_ids.begin() + static_cast<std::ptrdiff_t>(n));
  Scores r;
  auto const ids = decode_all(model, src, o, &r.cut);
  for (auto const& h : ids) r.hyps.push_back(vocab.decode(h));
  std::vector<std::string> const refs(s.tgt.begin(), s.tgt.begin() + static_cast<std::ptrdiff_t>(n));
  r.bleu = corpus_bleu(r.hyps, refs);
  r.chrf = corpus_chrf(r.hyps, refs);
  r.seconds = seconds_since(t0);
  return r;
}

struct LossEval {
  double loss = 0, nll = 0;  ///< per target token
  double seconds = 0;
};

template <class Norm>
LossEval valid_loss(Seq2Seq<Norm, Cpu>& model, Split const& s, TokenBatcher const& batcher) {
  auto const t0 = Clock::now();
  LossStats sum;
  for (auto const& idx : batcher.sorted()) {
    auto const l = model.forward(batch_of(s, idx), ForwardContext{.training = false});
    sum.loss += l.loss;
    sum.nll += l.nll;
    sum.tokens += l.tokens;
  }
  return {sum.mean_loss(), sum.mean_nll(), seconds_since(t0)};
}

/// Rebuilds the model a checkpoint was trained with (its norm picks the type) and calls f(model, cfg).
template <class F>
int with_checkpoint_model(fs::path const& ckpt, F&& f) {
  auto const file = io::SafetensorsFile::open(ckpt.string());
  io::verify_checksum(file, /*required=*/true);
  RunConfig const cfg = config_of(file.metadata(), file.source());
  return dispatch(
      NormPolicies{}, cfg.norm,
      [&](auto tag) {
        using Norm = typename decltype(tag)::type;
        Seq2Seq<Norm, Cpu> model(model_config(cfg), cfg.seed);
        io::load_parameters(file, model.parameters(), io::LoadOptions{.allow_extra = true});
        return f(model, cfg);
      },
      "--norm (of the checkpoint)");
}

inline std::unique_ptr<SentencePieceVocab> load_vocab(fs::path const& spm, RunConfig const& cfg, fs::path const& ckpt) {
  LNF_EXPECTS_AS(IoError, fs::exists(spm), "no SentencePiece model '{}' (it is written next to the checkpoints; give --spm)",
                 spm.string());
  auto const sha = translate::detail::file_sha256(spm);
  LNF_EXPECTS_AS(IoError, cfg.spm_sha256.empty() || sha == cfg.spm_sha256,
                 "'{}' is not the vocabulary '{}' was trained with (SHA-256 {} but the checkpoint says {})",
                 spm.string(), ckpt.string(), sha, cfg.spm_sha256);
  auto v = std::make_unique<SentencePieceVocab>(spm.string());
  LNF_EXPECTS_AS(IoError, v->size() == cfg.vocab, "'{}' has {} pieces but the model was trained with {}", spm.string(),
                 v->size(), cfg.vocab);
  return v;
}

}  // namespace translate
