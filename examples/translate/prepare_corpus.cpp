// prepare_corpus: builds the default German-English corpus from Debian's gettext catalogs.
//   prepare_corpus [--out data/de-en] [--cache data/cache/debian] [--packages a,b,...] [--max-chars 200]
//                  [--offline]
// Writes {train,valid,test}.{de,en} and manifest.json (packages, versions, counts, checksums).

#include "debian_corpus.hpp"

#include <CLI/CLI.hpp>
#include <fmt/format.h>

#include <cstdio>
#include <exception>

int main(int argc, char** argv) {
  translate::PrepareOptions o;
  CLI::App app{"Build the German-English corpus from the gettext catalogs of Debian packages"};
  std::string out = o.out.string(), cache = o.cache.string();
  app.add_option("--out", out, "Output directory")->capture_default_str();
  app.add_option("--cache", cache, "Cache of downloaded and unpacked .deb files")->capture_default_str();
  app.add_option("--packages", o.packages, "Packages (default: the pinned list)")->delimiter(',');
  app.add_option("--max-chars", o.corpus.max_chars, "Drop pairs with a side longer than this")->capture_default_str();
  app.add_flag("--offline", o.offline, "Use only .deb files already in the cache");
  CLI11_PARSE(app, argc, argv);
  o.out = out;
  o.cache = cache;
  try {
    auto const m = translate::prepare_debian_corpus(o);
    auto const& c = m["counts"];
    fmt::print("{} messages, {} pairs kept (train {}, valid {}, test {}); dropped: {}\n", c["messages"].get<long>(),
               c["kept"].get<long>(), m["splits"]["train"]["pairs"].get<long>(), m["splits"]["valid"]["pairs"].get<long>(),
               m["splits"]["test"]["pairs"].get<long>(), c["dropped"].dump());
    fmt::print("fetch+unpack {:.1f} s, parse+filter {:.1f} s, total {:.1f} s; wrote {}/manifest.json\n",
               m["seconds"]["fetch_unpack"].get<double>(), m["seconds"]["parse_filter"].get<double>(),
               m["seconds"]["total"].get<double>(), o.out.string());
  } catch (std::exception const& e) {
    fmt::print(stderr, "prepare_corpus: {}\n", e.what());
    return 1;
  }
}
