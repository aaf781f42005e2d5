// libFuzzer target for the corpus reader and what the trainer does with its output: SentencePiece
// encoding and decoding, token batching and batch building (what `translate prepare`/`train` run on a
// user's files).
//
// Input layout: byte 0 splits the rest into a source and a target "file" (at (size - 2) * b0 / 255),
// byte 1 picks the reader's max_bytes and the batcher's limits. Each input is read with
// read_parallel_corpus from streams; only lnformer::Error may escape it. On what it accepts:
//   * the counts add up (kept + empty + nul + too_long == lines), every kept pair is non-empty, has
//     no NUL or '\n', fits max_bytes and is valid UTF-8;
//   * every kept sentence encodes to ids inside the vocabulary (never bos/eos/pad), and decodes to
//     valid UTF-8;
//   * the batcher places every encodable pair exactly once per epoch, within max_tokens, and
//     make_batch of each batch has the shapes and token counts it promises.
// The vocabulary is trained once (LLVMFuzzerInitialize) on a fixed German/English text with a few
// non-Latin scripts, into a temporary directory.
//
// LNF_FUZZ_WRITE_SEEDS=<dir> ./fuzz_corpus  writes a few inputs into <dir> and exits (the seed corpus;
// see scripts/fuzz.sh).

#include <lnformer/data/parallel_corpus.hpp>
#include <lnformer/data/sentencepiece.hpp>
#include <lnformer/data/token_batches.hpp>
#include <lnformer/model/batch.hpp>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include <unistd.h>

using namespace lnformer;

namespace {

[[noreturn]] void broken(char const* what, std::string const& detail) {
  std::fprintf(stderr, "fuzz_corpus: invariant broken: %s (%s)\n", what, detail.c_str());
  std::abort();
}

void check(bool ok, char const* what, std::string const& detail = {}) {
  if (!ok) broken(what, detail);
}

std::unique_ptr<SentencePieceVocab> g_vocab;

void train_vocabulary() {
  auto const dir = std::filesystem::temp_directory_path() / ("lnformer_fuzz_corpus_" + std::to_string(::getpid()));
  std::filesystem::create_directories(dir);
  auto const text = dir / "train.txt";
  {
    std::ofstream out(text);
    std::vector<std::string> const words{"Datei", "öffnen", "schließen", "Fehler", "beim", "Lesen", "von", "Straße",
                                         "file",  "open",   "close",     "error",  "reading", "the", "directory",
                                         "ǅ",     "ﬁ",      "日本語",    "Ελληνικά", "🙂", "\t", "1,5"};
    for (int i = 0; i < 300; ++i) {
      for (int j = 0; j < 10; ++j) out << words[static_cast<std::size_t>((i * 7 + j * (1 + i % 5)) % words.size())] << ' ';
      out << '\n';
    }
  }
  train_sentencepiece({text.string()}, (dir / "spm").string(), {.vocab_size = 60, .threads = 1});
  g_vocab = std::make_unique<SentencePieceVocab>((dir / "spm.model").string());
  std::filesystem::remove_all(dir);
}

void check_pairs(ParallelCorpus const& c, std::size_t max_bytes) {
  auto const& st = c.stats;
  check(st.kept + st.empty + st.nul + st.too_long == st.lines, "counts add up");
  check(c.src.size() == st.kept && c.tgt.size() == st.kept, "kept pairs counted");
  check(st.bom <= 2, "at most one byte-order mark per file");
  for (auto const* side : {&c.src, &c.tgt})
    for (auto const& s : *side) {
      check(!s.empty(), "kept side not empty");
      check(s.find('\0') == std::string::npos, "no NUL kept", s);
      check(s.find('\n') == std::string::npos, "no newline inside a line", s);
      check(max_bytes == 0 || s.size() <= max_bytes, "max_bytes", s);
      check(detail::first_invalid_utf8(s) == std::string_view::npos, "valid UTF-8", s);
    }
}

// Encoding, decoding and batching of the accepted pairs.
void check_training_path(ParallelCorpus const& c, std::uint8_t knob) {
  SpecialTokens const sp;
  std::vector<std::vector<std::int32_t>> src, tgt;
  std::vector<std::int64_t> sl, tl;
  for (std::size_t i = 0; i < c.src.size(); ++i) {
    for (auto const* text : {&c.src[i], &c.tgt[i]}) {
      auto ids = g_vocab->encode(*text);
      for (auto id : ids)
        check(id >= 0 && id < g_vocab->size() && id != sp.bos && id != sp.eos && id != sp.pad, "encoded id", *text);
      auto const back = g_vocab->decode(ids);
      check(detail::first_invalid_utf8(back) == std::string_view::npos, "decoded text is UTF-8", back);
      (text == &c.src[i] ? src : tgt).push_back(std::move(ids));
    }
    sl.push_back(static_cast<std::int64_t>(src.back().size()));
    tl.push_back(static_cast<std::int64_t>(tgt.back().size()));
  }
  std::int64_t const max_len = 1 + knob % 64;
  std::int64_t const max_tokens = max_len + 1 + (knob / 4) * 3;
  TokenBatcher const batcher(sl, tl, {.max_tokens = max_tokens, .max_len = max_len, .seed = knob});
  auto const& bs = batcher.stats();
  check(bs.sentences + bs.too_long + bs.empty == sl.size(), "batcher counts add up");
  for (std::uint64_t epoch : {1u, 2u}) {
    std::vector<int> seen(sl.size(), 0);
    for (auto const& idx : batcher.epoch(epoch)) {
      check(!idx.empty(), "no empty batch");
      std::int64_t longest = 0;
      std::vector<std::vector<std::int32_t>> bsrc, btgt;
      std::int64_t tokens = 0;
      for (auto i : idx) {
        check(i < sl.size(), "index in range");
        ++seen[i];
        check(sl[i] > 0 && tl[i] > 0 && sl[i] <= max_len && tl[i] <= max_len, "batched sentence fits");
        longest = std::max({longest, sl[i] + 1, tl[i] + 1});
        bsrc.push_back(src[i]);
        btgt.push_back(tgt[i]);
        tokens += sl[i] + 1;
      }
      check(longest * static_cast<std::int64_t>(idx.size()) <= max_tokens, "batch within max_tokens");
      auto const b = make_batch<Cpu>(bsrc, btgt);
      check(b.size() == static_cast<std::int64_t>(idx.size()), "batch rows");
      check(b.src_tokens == tokens, "source tokens counted");
    }
    std::size_t placed = 0;
    for (std::size_t i = 0; i < sl.size(); ++i) {
      bool const fits = sl[i] > 0 && tl[i] > 0 && sl[i] <= max_len && tl[i] <= max_len;
      check(seen[i] == (fits ? 1 : 0), "every fitting pair exactly once per epoch", std::to_string(i));
      placed += static_cast<std::size_t>(seen[i]);
    }
    check(placed == bs.sentences, "placed == stats().sentences");
  }
}

// Seeds: ordinary pairs, CRLF, byte-order marks, a NUL, invalid UTF-8, an empty side, a long line.
void write_seeds(std::string const& dir) {
  auto seed = [&](std::string const& name, std::uint8_t knob, std::string const& a, std::string const& b) {
    std::string bytes;
    bytes.push_back(static_cast<char>(a.size() * 255 / std::max<std::size_t>(1, a.size() + b.size())));
    bytes.push_back(static_cast<char>(knob));
    bytes += a + b;
    std::ofstream(dir + "/" + name, std::ios::binary) << bytes;
  };
  using namespace std::string_literals;
  seed("plain", 7, "Datei öffnen\nFehler beim Lesen\n", "open file\nerror reading\n");
  seed("crlf_bom", 9, "\xEF\xBB\xBFHallo\r\nWelt\r\n", "\xEF\xBB\xBFHello\r\nworld");
  seed("nul_empty", 13, "eins\n\nzw\0ei\ndrei\n"s, "one\ntwo\nthree\n\n"s);
  seed("invalid", 21, "gut\nschlecht \xC3\x28\n", "good\nbad\n");
  seed("long", 5, std::string(600, 'a') + "\nkurz\n", "short\n" + std::string(300, 'b') + "\n");
  seed("scripts", 64, "日本語 ǅ ﬁ\n🙂\tx\n", "Ελληνικά\n1,5\n");
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int* /*argc*/, char*** /*argv*/) {
  if (char const* dir = std::getenv("LNF_FUZZ_WRITE_SEEDS")) {
    write_seeds(dir);
    std::exit(0);
  }
  train_vocabulary();
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(uint8_t const* data, size_t size) {
  if (size < 2) return 0;
  std::size_t const rest = size - 2;
  std::size_t const cut = rest * data[0] / 255;
  std::size_t const max_bytes = data[1] % 4 == 0 ? 0 : 8u * data[1];
  std::istringstream src(std::string(reinterpret_cast<char const*>(data + 2), cut));
  std::istringstream tgt(std::string(reinterpret_cast<char const*>(data + 2 + cut), rest - cut));
  ParallelCorpus c;
  try {
    c = read_parallel_corpus(src, "src", tgt, "tgt", {.max_bytes = max_bytes});
  } catch (lnformer::Error const&) {
    return 0;  // a rejection with a message (different line counts, invalid UTF-8)
  }
  check_pairs(c, max_bytes);
  check_training_path(c, data[1]);
  return 0;
}
