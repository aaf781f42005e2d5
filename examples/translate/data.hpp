#pragma once
// The corpus splits of a run: read, encoded with the vocabulary, batched by tokens.

#include "debian_corpus.hpp"
#include "run_config.hpp"

#include <lnformer/data/parallel_corpus.hpp>
#include <lnformer/data/sentencepiece.hpp>
#include <lnformer/data/token_batches.hpp>

namespace translate {

struct Split {
  std::string name;
  std::vector<std::string> src, tgt;
  std::vector<Ids> src_ids, tgt_ids;
};

/// What reading a split kept and skipped, for the user: "<name>: L lines, K pairs kept; skipped ...".
inline std::string corpus_summary(std::string const& name, CorpusStats const& st) {
  std::string s = fmt::format("{}: {} lines, {} pairs kept; skipped {} with an empty side, {} longer than 1024 "
                              "bytes",
                              name, st.lines, st.kept, st.empty, st.too_long);
  if (st.nul > 0) s += fmt::format(", {} with a NUL byte (binary data or UTF-16 text?)", st.nul);
  if (st.bom > 0) s += fmt::format("; removed a UTF-8 byte-order mark at the start of {} file(s)", st.bom);
  return s;
}

inline Split read_split(fs::path const& dir, std::string const& name, RunConfig const& c) {
  auto const sp = dir / fmt::format("{}.{}", name, c.src_lang), tp = dir / fmt::format("{}.{}", name, c.tgt_lang);
  LNF_EXPECTS_AS(IoError, fs::exists(sp) && fs::exists(tp),
                 "no {} split in '{}' ({} and {}): run `translate prepare --data {}` first, or give --data", name,
                 dir.string(), sp.filename().string(), tp.filename().string(), dir.string());
  auto corpus = read_parallel_corpus(sp.string(), tp.string());
  auto const& st = corpus.stats;
  if (st.empty + st.too_long + st.nul + st.bom > 0) fmt::print("{}\n", corpus_summary(name, st));
  Split s;
  s.name = name;
  s.src = std::move(corpus.src);
  s.tgt = std::move(corpus.tgt);
  return s;
}

/// SHA-256 over the names and contents of the given splits' files in `dir`: a checkpoint records
/// that of all three, so that --resume notices other data behind the same (or another) path.
inline std::string data_fingerprint(fs::path const& dir, RunConfig const& c,
                                    std::vector<std::string> const& splits = {"train", "valid", "test"}) {
  Sha256 h;
  for (auto const& split : splits)
    for (auto const& lang : {c.src_lang, c.tgt_lang}) {
      auto const name = fmt::format("{}.{}", split, lang);
      h.update(name).update(translate::detail::file_sha256(dir / name));
    }
  return h.hex();
}

inline void encode(Split& s, SentencePieceVocab const& vocab) {
  s.src_ids.clear();
  s.tgt_ids.clear();
  for (auto const& x : s.src) s.src_ids.push_back(vocab.encode(x));
  for (auto const& x : s.tgt) s.tgt_ids.push_back(vocab.encode(x));
}

inline TokenBatcher make_batcher(Split const& s, RunConfig const& c, std::int64_t max_len) {
  std::vector<std::int64_t> sl, tl;
  for (auto const& x : s.src_ids) sl.push_back(static_cast<std::int64_t>(x.size()));
  for (auto const& x : s.tgt_ids) tl.push_back(static_cast<std::int64_t>(x.size()));
  return TokenBatcher(sl, tl, {.max_tokens = std::max(c.max_tokens, max_len + 1), .max_len = max_len, .seed = c.seed});
}

inline Batch<Cpu> batch_of(Split const& s, std::vector<std::size_t> const& idx) {
  std::vector<Ids> src, tgt;
  src.reserve(idx.size());
  tgt.reserve(idx.size());
  for (auto i : idx) {
    src.push_back(s.src_ids[i]);
    tgt.push_back(s.tgt_ids[i]);
  }
  return make_batch<Cpu>(src, tgt);
}

}  // namespace translate
