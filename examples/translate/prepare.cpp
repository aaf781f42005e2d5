// translate prepare: the default corpus from Debian's gettext catalogs, or the user's files checked.

#include "commands.hpp"

#include <algorithm>

namespace translate {

int cmd_prepare(PrepareCli p) {
  std::vector<std::string> const user{p.train_src, p.train_tgt, p.valid_src, p.valid_tgt, p.test_src, p.test_tgt};
  bool const any = std::any_of(user.begin(), user.end(), [](auto const& s) { return !s.empty(); });
  if (any) {  // the user's parallel text: checked, cleaned (empty and over-long pairs counted), copied
    LNF_EXPECTS_AS(ValueError, std::all_of(user.begin(), user.end(), [](auto const& s) { return !s.empty(); }),
                   "user data needs all six of --train-src --train-tgt --valid-src --valid-tgt --test-src --test-tgt");
    fs::create_directories(p.data);
    json m{{"corpus", "user files"}, {"source_lang", p.src_lang}, {"target_lang", p.tgt_lang}};
    for (int k = 0; k < 3; ++k) {
      std::string const name = k == 0 ? "train" : k == 1 ? "valid" : "test";
      auto const c = read_parallel_corpus(user[2 * k], user[2 * k + 1]);
      LNF_EXPECTS_AS(ValueError, !c.src.empty(), "{} split ({}, {}): no usable pair", name, user[2 * k], user[2 * k + 1]);
      write_lines(fs::path(p.data) / (name + "." + p.src_lang), c.src);
      write_lines(fs::path(p.data) / (name + "." + p.tgt_lang), c.tgt);
      fmt::print("{}\n", corpus_summary(name, c.stats));
      m["splits"][name] = {{"source", user[2 * k]}, {"target", user[2 * k + 1]}, {"lines", c.stats.lines},
                           {"pairs", c.stats.kept}, {"empty", c.stats.empty}, {"too_long", c.stats.too_long},
                           {"nul", c.stats.nul}, {"bom", c.stats.bom}};
    }
    write_lines(fs::path(p.data) / "manifest.json", {m.dump(1)});
    fmt::print("wrote {}\n", p.data);
    return 0;
  }
  LNF_EXPECTS_AS(ValueError, p.src_lang == "de" && p.tgt_lang == "en",
                 "the default corpus is German-English; --src-lang/--tgt-lang apply to user files");
  p.corpus.out = p.data;
  p.corpus.cache = p.cache;
  auto const m = translate::prepare_debian_corpus(p.corpus);
  auto const& c = m["counts"];
  fmt::print("{} messages, {} pairs kept (train {}, valid {}, test {}); dropped: {}\n", c["messages"].get<long>(),
             c["kept"].get<long>(), m["splits"]["train"]["pairs"].get<long>(), m["splits"]["valid"]["pairs"].get<long>(),
             m["splits"]["test"]["pairs"].get<long>(), c["dropped"].dump());
  fmt::print("fetch+unpack {:.1f} s, parse+filter {:.1f} s, total {:.1f} s; wrote {}/manifest.json\n",
             m["seconds"]["fetch_unpack"].get<double>(), m["seconds"]["parse_filter"].get<double>(),
             m["seconds"]["total"].get<double>(), p.data);
  return 0;
}

}  // namespace translate
