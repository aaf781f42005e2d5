// SentencePiece adapter (data/sentencepiece.hpp): trains a small vocabulary with fairseq's special ids
// and round-trips text through it.
#include <lnformer/data/sentencepiece.hpp>

#include <doctest/doctest.h>

#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

using namespace lnformer;

namespace {

std::filesystem::path temp_dir() {
  auto const d = std::filesystem::temp_directory_path() / "lnformer_test_sentencepiece";
  std::filesystem::create_directories(d);
  return d;
}

std::string training_text() {
  auto const path = (temp_dir() / "train.txt").string();
  std::ofstream out(path);
  std::vector<std::string> const words{"Datei", "öffnen", "schließen", "Fehler", "beim", "Lesen", "von",
                                      "file", "open", "close", "error", "reading", "the", "directory"};
  for (int i = 0; i < 400; ++i) {
    for (int j = 0; j < 14; ++j) out << words[static_cast<std::size_t>((i + j * (1 + i % 5)) % 14)] << (j < 13 ? " " : "");
    out << '\n';
  }
  return path;
}

}  // namespace

TEST_CASE("train_sentencepiece + SentencePieceVocab: fairseq special ids, encode/decode round trip") {
  auto const prefix = (temp_dir() / "spm").string();
  train_sentencepiece({training_text()}, prefix, {.vocab_size = 40, .threads = 1});
  SentencePieceVocab const vocab(prefix + ".model");
  CHECK(vocab.size() == 40);
  CHECK(vocab.piece(0) == "<s>");
  CHECK(vocab.piece(1) == "<pad>");
  CHECK(vocab.piece(2) == "</s>");
  CHECK(vocab.piece(3) == "<unk>");
  std::string const text = "Fehler beim Lesen von Datei";
  auto const ids = vocab.encode(text);
  REQUIRE(!ids.empty());
  for (auto id : ids) CHECK((id >= 4 && id < 40));  // plain text never encodes to special ids
  CHECK(vocab.decode(ids) == text);
  auto with_specials = ids;
  with_specials.push_back(2);  // EOS, as decoding produces it
  with_specials.insert(with_specials.begin(), 1);
  CHECK(vocab.decode(with_specials) == text);
  CHECK_THROWS_WITH_AS(vocab.decode({4, 40}), doctest::Contains("id 40 outside the vocabulary of 40"), ValueError);
}

TEST_CASE("SentencePiece errors name the file") {
  CHECK_THROWS_WITH_AS(SentencePieceVocab("/nonexistent/spm.model"),
                       doctest::Contains("cannot load SentencePiece model '/nonexistent/spm.model'"), IoError);
  CHECK_THROWS_WITH_AS(train_sentencepiece({"/nonexistent/train.txt"}, (temp_dir() / "x").string()),
                       doctest::Contains("no input file '/nonexistent/train.txt'"), IoError);
  CHECK_THROWS_AS(train_sentencepiece({training_text()}, (temp_dir() / "big").string(), {.vocab_size = 100000}),
                  IoError);
}

TEST_CASE("train_sentencepiece: paths with spaces, commas and '=' (the options are not one joined string)") {
  // Before: the options went to SentencePiece as one space-separated string with a comma-separated
  // input list, so "my run" or "a,b" broke training ("unknown field name ... in TrainerSpec").
  auto const dir = temp_dir() / "with space, comma=and equals";
  std::filesystem::create_directories(dir);
  auto const input = dir / "train, part 1.txt";
  std::filesystem::copy_file(training_text(), input, std::filesystem::copy_options::overwrite_existing);
  auto const second = dir / "train,2.txt";  // a second input: the lines of both are read
  { std::ofstream(second) << "Verzeichnis\ndirectory listing\n"; }
  auto const prefix = (dir / "spm x,y").string();
  train_sentencepiece({input.string(), second.string()}, prefix, {.vocab_size = 40, .threads = 1});
  CHECK(std::filesystem::exists(prefix + ".model"));
  CHECK(std::filesystem::exists(prefix + ".vocab"));
  SentencePieceVocab const vocab(prefix + ".model");
  CHECK(vocab.size() == 40);
  CHECK(vocab.decode(vocab.encode("Fehler beim Lesen")) == "Fehler beim Lesen");
}
