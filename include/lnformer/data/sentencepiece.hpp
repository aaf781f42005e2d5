#pragma once
// SentencePiece tokenisation (optional dependency: link lnformer::sentencepiece; not in the umbrella
// header). The vocabulary is trained with fairseq's special ids (bos 0, pad 1, eos 2, unk 3), so the
// ids SentencePiece returns are the model's token ids with no remapping.
//
//   train_sentencepiece({"train.de", "train.en"}, "out/spm", {.vocab_size = 8000});   // out/spm.model
//   SentencePieceVocab vocab("out/spm.model");
//   std::vector<std::int32_t> ids = vocab.encode("Hallo Welt");  // no BOS/EOS: make_batch adds EOS
//   std::string text = vocab.decode(ids);

#include <lnformer/core/error.hpp>
#include <lnformer/model/batch.hpp>

#include <fmt/format.h>
#include <sentencepiece_processor.h>
#include <sentencepiece_trainer.h>

#include <cstdint>
#include <filesystem>
#include <fstream>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace lnformer {

struct SentencePieceTrainOptions {
  int vocab_size = 8000;
  std::string model_type = "unigram";  ///< unigram, bpe, char or word
  float character_coverage = 1.0f;
  int threads = 2;
  std::size_t max_sentences = 2'000'000;  ///< input_sentence_size: a random sample beyond this
  std::uint32_t seed = 1;                 ///< SentencePiece's random seed (sampling, EM)
};

namespace detail {

/// The lines of several files, one after the other, for SentencePieceTrainer: the trainer reads
/// them from here instead of from its `input` field, because that field is a comma-separated list
/// (a path with a comma cannot be named in it). A read error ends the iteration with status().
class LineFilesIterator final : public sentencepiece::SentenceIterator {
 public:
  explicit LineFilesIterator(std::vector<std::string> const& paths) : paths_(paths) { Next(); }
  [[nodiscard]] bool done() const override { return done_; }
  void Next() override {
    while (!done_) {
      if (in_.is_open() && std::getline(in_, line_)) {
        if (!line_.empty() && line_.back() == '\r') line_.pop_back();
        return;
      }
      if (in_.is_open()) {
        if (in_.bad() || !in_.eof()) return fail(fmt::format("error reading '{}'", paths_[next_ - 1]));
        in_.close();
      }
      if (next_ == paths_.size()) {
        done_ = true;
        return;
      }
      in_.clear();
      in_.open(paths_[next_++], std::ios::binary);
      if (!in_.is_open()) return fail(fmt::format("cannot open '{}'", paths_[next_ - 1]));
    }
  }
  [[nodiscard]] std::string const& value() const override { return line_; }
  [[nodiscard]] sentencepiece::util::Status status() const override { return status_; }

 private:
  void fail(std::string const& what) {
    status_ = sentencepiece::util::Status(sentencepiece::util::StatusCode::kInternal, what);
    done_ = true;
  }
  std::vector<std::string> const& paths_;
  std::size_t next_ = 0;
  std::ifstream in_;
  std::string line_;
  bool done_ = false;
  sentencepiece::util::Status status_;
};

}  // namespace detail

/// Trains a vocabulary on the lines of `inputs`; writes <model_prefix>.model and .vocab. A
/// SentencePiece failure (unreadable input, a vocabulary larger than the text allows) is an IoError
/// with its message. Paths may hold any character (spaces, commas, '='): the options go to the
/// trainer one field each, and the inputs are read through an iterator, never through its
/// space-separated command-line string or its comma-separated `input` list.
inline void train_sentencepiece(std::vector<std::string> const& inputs, std::string const& model_prefix,
                                SentencePieceTrainOptions const& o = {}) {
  LNF_EXPECTS_AS(ValueError, !inputs.empty(), "train_sentencepiece: no input files");
  LNF_EXPECTS_AS(ValueError, o.vocab_size > 4, "train_sentencepiece: vocab_size {} must exceed the 4 special ids",
                 o.vocab_size);
  for (auto const& f : inputs)
    LNF_EXPECTS_AS(IoError, std::filesystem::is_regular_file(f), "train_sentencepiece: no input file '{}'", f);
  SpecialTokens const sp;
  std::unordered_map<std::string, std::string> const fields{
      {"model_prefix", model_prefix},
      {"vocab_size", std::to_string(o.vocab_size)},
      {"model_type", o.model_type},
      {"character_coverage", fmt::format("{}", o.character_coverage)},
      {"num_threads", std::to_string(o.threads)},
      {"input_sentence_size", std::to_string(o.max_sentences)},
      {"shuffle_input_sentence", "true"},
      {"bos_id", std::to_string(sp.bos)},
      {"pad_id", std::to_string(sp.pad)},
      {"eos_id", std::to_string(sp.eos)},
      {"unk_id", std::to_string(sp.unk)},
      {"minloglevel", "2"}};
  sentencepiece::SetRandomGeneratorSeed(o.seed);  // 0.1.x: a process-wide setting, not a trainer flag
  detail::LineFilesIterator lines(inputs);
  auto const status = sentencepiece::SentencePieceTrainer::Train(fields, &lines);
  LNF_EXPECTS_AS(IoError, status.ok(), "SentencePiece training of '{}' failed: {}", model_prefix,
                 status.ToString());
}

/// A trained SentencePiece model with fairseq's special ids.
class SentencePieceVocab {
 public:
  explicit SentencePieceVocab(std::string const& model_path) : path_(model_path) {
    auto const status = sp_.Load(model_path);
    LNF_EXPECTS_AS(IoError, status.ok(), "cannot load SentencePiece model '{}': {}", model_path, status.ToString());
    SpecialTokens const sp;
    LNF_EXPECTS_AS(IoError,
                   sp_.bos_id() == sp.bos && sp_.pad_id() == sp.pad && sp_.eos_id() == sp.eos && sp_.unk_id() == sp.unk,
                   "SentencePiece model '{}' has special ids bos {} pad {} eos {} unk {}; lnformer needs 0 1 2 3 "
                   "(train it with train_sentencepiece)",
                   model_path, sp_.bos_id(), sp_.pad_id(), sp_.eos_id(), sp_.unk_id());
  }

  [[nodiscard]] std::vector<std::int32_t> encode(std::string_view text) const {
    std::vector<int> ids;
    auto const status = sp_.Encode(text, &ids);
    LNF_EXPECTS_AS(ValueError, status.ok(), "SentencePiece encode failed: {}", status.ToString());
    return {ids.begin(), ids.end()};
  }
  /// Text of `ids`; special ids (bos, pad, eos) are dropped, unk becomes SentencePiece's " ⁇ ".
  [[nodiscard]] std::string decode(std::vector<std::int32_t> const& ids) const {
    SpecialTokens const sp;
    std::vector<int> keep;
    keep.reserve(ids.size());
    for (auto id : ids) {
      LNF_EXPECTS_AS(ValueError, id >= 0 && id < size(), "SentencePieceVocab::decode: id {} outside the vocabulary of {}",
                     id, size());
      if (id != sp.bos && id != sp.pad && id != sp.eos) keep.push_back(id);
    }
    std::string out;
    auto const status = sp_.Decode(keep, &out);
    LNF_EXPECTS_AS(ValueError, status.ok(), "SentencePiece decode failed: {}", status.ToString());
    return out;
  }
  [[nodiscard]] std::int64_t size() const { return sp_.GetPieceSize(); }
  [[nodiscard]] std::string piece(std::int32_t id) const { return sp_.IdToPiece(id); }
  [[nodiscard]] std::string const& path() const { return path_; }

 private:
  std::string path_;
  sentencepiece::SentencePieceProcessor sp_;
};

}  // namespace lnformer
