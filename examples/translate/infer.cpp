// translate translate / translate evaluate: a checkpoint's model on stdin or a split.

#include "commands.hpp"

#include <cerrno>
#include <cstring>
#include <iostream>
#include <optional>

namespace translate {

fs::path infer_checkpoint(InferOptions const& o) {
  return o.checkpoint.empty() ? default_checkpoint(o.out) : fs::path(o.checkpoint);
}
fs::path infer_spm(InferOptions const& o, fs::path const& ckpt) {
  return o.spm.empty() ? ckpt.parent_path() / "spm.model" : fs::path(o.spm);
}

// The lines to translate: UTF-8 text, one sentence per line. A directory, a NUL byte (binary data,
// UTF-16) and invalid UTF-8 are errors naming the line; a byte-order mark at the start is removed
// and reported (it would be part of the first sentence).
std::vector<std::string> read_input(InferOptions const& o) {
  std::string const name = o.input.empty() ? std::string("stdin") : o.input;
  std::ifstream fin;
  if (!o.input.empty()) {
    LNF_EXPECTS_AS(IoError, !fs::is_directory(o.input), "--input '{}' is a directory; give a text file (one sentence "
                   "per line), or none to read stdin", o.input);
    fin.open(o.input, std::ios::binary);
    LNF_EXPECTS_AS(IoError, fin.is_open(), "cannot open --input '{}': {}", o.input, std::strerror(errno));
  }
  bool bom = false;
  auto lines = lnformer::detail::read_utf8_lines(o.input.empty() ? std::cin : fin, name, &bom);
  if (bom) fmt::print(stderr, "translate: removed a UTF-8 byte-order mark at the start of {}\n", name);
  for (std::size_t i = 0; i < lines.size(); ++i) {
    auto const nul = lines[i].find('\0');
    LNF_EXPECTS_AS(IoError, nul == std::string::npos, "'{}' line {}: a NUL byte at byte {} of the line (binary data or "
                   "UTF-16 text? the input must be UTF-8)", name, i + 1, nul);
  }
  return lines;
}

int cmd_translate(InferOptions const& o) {
  auto const ckpt = infer_checkpoint(o);
  return with_checkpoint_model(ckpt, [&](auto& model, RunConfig const& cfg) {
    auto const vocab_ptr = load_vocab(infer_spm(o, ckpt), cfg, ckpt);
    auto const& vocab = *vocab_ptr;
    auto const lines = read_input(o);
    // --output is created before the decoding (a bad path fails at once) and appears whole, by a
    // rename, only when everything was written.
    std::optional<AtomicFile> fout;
    if (!o.output.empty()) fout.emplace(o.output);
    std::vector<Ids> src;
    for (auto const& l : lines) src.push_back(vocab.encode(l));
    std::vector<std::size_t> cut;
    auto const hyp = decode_all(model, src, o.decode, &cut);
    if (!cut.empty())
      fmt::print(stderr, "translate: {}\n", cut_report(cut, source_limit(model), cfg.max_positions));
    if (fout) {
      for (auto const& h : hyp) {
        fout->write(vocab.decode(h));
        fout->write("\n");
      }
      fout->commit();
    } else {
      for (auto const& h : hyp) std::cout << vocab.decode(h) << '\n';
      std::cout.flush();
      LNF_EXPECTS_AS(IoError, std::cout.good(), "error writing the translations to stdout");
    }
    return 0;
  });
}

int cmd_evaluate(InferOptions const& o) {
  auto const ckpt = infer_checkpoint(o);
  return with_checkpoint_model(ckpt, [&](auto& model, RunConfig const& cfg) {
    auto const vocab_ptr = load_vocab(infer_spm(o, ckpt), cfg, ckpt);
    auto const& vocab = *vocab_ptr;
    Split s = read_split(o.data, o.split, cfg);
    encode(s, vocab);
    auto const sc = score(model, vocab, s, s.src.size(), o.decode);
    if (!sc.cut.empty()) fmt::print(stderr, "translate: {}\n", cut_report(sc.cut, source_limit(model), cfg.max_positions));
    if (!o.output.empty()) write_lines(o.output, sc.hyps);
    fmt::print("{} {} ({} sentences; {} with {}, beam {}, length penalty {}; {})\n{}\n{}\n", o.data.string(), o.split,
               sc.hyps.size(), ckpt.string(), cfg.norm, o.decode.beam, o.decode.lenpen, duration(sc.seconds),
               sc.bleu.format(true), sc.chrf.format(true));
    return 0;
  });
}

}  // namespace translate
