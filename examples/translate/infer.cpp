// translate translate / translate evaluate: a checkpoint's model on stdin or a split.

#include "commands.hpp"

#include <iostream>

namespace translate {

fs::path infer_checkpoint(InferOptions const& o) {
  return o.checkpoint.empty() ? default_checkpoint(o.out) : fs::path(o.checkpoint);
}
fs::path infer_spm(InferOptions const& o, fs::path const& ckpt) {
  return o.spm.empty() ? ckpt.parent_path() / "spm.model" : fs::path(o.spm);
}

int cmd_translate(InferOptions const& o) {
  auto const ckpt = infer_checkpoint(o);
  return with_checkpoint_model(ckpt, [&](auto& model, RunConfig const& cfg) {
    auto const vocab_ptr = load_vocab(infer_spm(o, ckpt), cfg, ckpt);
    auto const& vocab = *vocab_ptr;
    std::ifstream fin;
    if (!o.input.empty()) {
      fin.open(o.input, std::ios::binary);
      LNF_EXPECTS_AS(IoError, fin.good(), "cannot open --input '{}'", o.input);
    }
    std::istream& in = o.input.empty() ? std::cin : fin;
    std::vector<std::string> lines;
    for (std::string l; std::getline(in, l);) {
      if (!l.empty() && l.back() == '\r') l.pop_back();
      auto const bad = lnformer::detail::first_invalid_utf8(l);
      LNF_EXPECTS_AS(IoError, bad == std::string_view::npos, "{} line {}: invalid UTF-8 at byte {}",
                     o.input.empty() ? std::string("stdin") : o.input, lines.size() + 1, bad);
      lines.push_back(std::move(l));
    }
    std::vector<Ids> src;
    for (auto const& l : lines) src.push_back(vocab.encode(l));
    auto const hyp = decode_all(model, src, o.decode);
    std::ofstream fout;
    if (!o.output.empty()) {
      fout.open(o.output, std::ios::binary | std::ios::trunc);
      LNF_EXPECTS_AS(IoError, fout.good(), "cannot write --output '{}'", o.output);
    }
    std::ostream& out = o.output.empty() ? std::cout : fout;
    for (auto const& h : hyp) out << vocab.decode(h) << '\n';
    out.flush();
    LNF_EXPECTS_AS(IoError, out.good(), "error writing the translations");
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
    if (!o.output.empty()) write_lines(o.output, sc.hyps);
    fmt::print("{} {} ({} sentences; {} with {}, beam {}, length penalty {}; {})\n{}\n{}\n", o.data.string(), o.split,
               sc.hyps.size(), ckpt.string(), cfg.norm, o.decode.beam, o.decode.lenpen, duration(sc.seconds),
               sc.bleu.format(true), sc.chrf.format(true));
    return 0;
  });
}

}  // namespace translate
