// BLEU and chrF against sacreBLEU 2.x. Three kinds of evidence, strongest first:
//   1. values sacreBLEU itself publishes (README of 2.0.0, test/test_bleu.py, test/test_chrf.py);
//   2. cases computed by hand below;
//   3. bleu_cases.json: inputs with the values of tests/metrics/bleu_reference.py, a line-by-line
//      Python transcription of sacreBLEU's code (the ctest bleu_reference_python re-runs it and checks
//      that it still reproduces the file and the published values of 1).

#include <lnformer/metrics/bleu.hpp>
#include <lnformer/metrics/chrf.hpp>

#include <doctest/doctest.h>
#include <nlohmann/json.hpp>

#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

using namespace lnformer;
using nlohmann::json;
using Strings = std::vector<std::string>;
using Streams = std::vector<Strings>;

namespace {

bool close(double a, double b, double rel = 1e-12) {
  return std::abs(a - b) <= rel * std::max({1.0, std::abs(a), std::abs(b)});
}

json const& cases() {
  static json const data = [] {
    std::filesystem::path p = std::filesystem::path(__FILE__).parent_path() / "bleu_cases.json";
    if (char const* env = std::getenv("LNF_BLEU_CASES")) p = env;
    std::ifstream in(p);
    REQUIRE_MESSAGE(in.good(), "cannot open " << p);
    return json::parse(in);
  }();
  return data;
}

// sacreBLEU README: two reference streams.
Streams const readme_refs{{"The dog bit the man.", "It was not unexpected.", "The man bit him first."},
                          {"The dog had bit the man.", "No one was surprised.", "The man had bitten the dog."}};
Strings const readme_sys{"The dog bit the man.", "It wasn't surprising.", "The man had just bitten him."};

}  // namespace

TEST_CASE("BLEU: values published by sacreBLEU") {
  // README ("BLEU = 48.53 ...") and test_bleu.py test_corpus_bleu (48.530827, EPSILON 1e-8).
  auto const b = corpus_bleu(readme_sys, readme_refs);
  CHECK(std::abs(b.score - 48.530827) < 1e-6);
  CHECK(b.format() == "BLEU = 48.53 82.4/50.0/45.5/37.5 (BP = 0.943 ratio = 0.944 hyp_len = 17 ref_len = 18)");
  CHECK(b.signature() == "nrefs:2|case:mixed|eff:no|tok:13a|smooth:exp|version:2.3.1");
  CHECK(b.format(true).starts_with("BLEU|nrefs:2|case:mixed|eff:no|tok:13a|smooth:exp|version:2.3.1 = 48.53 82.4/"));

  // README "Variable Number of References": the first segment's first reference removed with "".
  Streams var = readme_refs;
  var[0][0] = "";
  auto const v = corpus_bleu(readme_sys, var);
  CHECK(v.format() == "BLEU = 29.44 82.4/42.9/27.3/12.5 (BP = 0.889 ratio = 0.895 hyp_len = 17 ref_len = 19)");
  CHECK(v.signature().starts_with("nrefs:var|"));

  // test_bleu.py: empty hypotheses are scored (not removed): 0.
  CHECK(corpus_bleu(Strings{"", "", ""}, readme_refs).score == 0.0);

  // test_bleu.py test_statistics: counts [4,2,1,0], totals [6,5,4,3] (its tokenizer 'none' and 13a agree
  // on these plain words).
  auto const s = corpus_bleu(Strings{"am I am a character sequence"}, Strings{"I am a symbol string sequence a a"});
  CHECK(s.counts == std::array<std::int64_t, 4>{4, 2, 1, 0});
  CHECK(s.totals == std::array<std::int64_t, 4>{6, 5, 4, 3});

  // test_bleu.py test_scoring: compute_bleu([9,7,5,3], [10,8,6,4], 11, 11) = 0.8375922397 (x100).
  CHECK(std::abs(compute_bleu({9, 7, 5, 3}, {10, 8, 6, 4}, 11, 11).score - 83.75922397) < 1e-7);
}

TEST_CASE("chrF: values published by sacreBLEU") {
  // README: CHRF().corpus_score(sys, refs) -> chrF2 = 59.73.
  auto const readme = corpus_chrf(readme_sys, readme_refs);
  CHECK(readme.format() == "chrF2 = 59.73");
  CHECK(readme.signature() == "nrefs:2|case:mixed|eff:yes|nc:6|nw:0|space:no|version:2.3.1");
  // test_chrf.py (char_order 6, word_order 0, beta 3), EPSILON 1e-4.
  ChrfOptions const eff{.beta = 3}, eps{.beta = 3, .eps_smoothing = true};
  struct Case { Strings h, r; double want; };
  for (auto const& c : std::vector<Case>{{{"a"}, {"a"}, 100.0}, {{""}, {"reference"}, 0.0},
                                                    {{"a b c"}, {"a b c"}, 100.0}, {{"a b c"}, {"abc"}, 100.0},
                                                    {{""}, {"c"}, 0.0}, {{"a", "b"}, {"a", "c"}, 50.0},
                                                    {{"aa"}, {"ab"}, 25.0}}) {
    INFO(c.h[0], " / ", c.r[0]);  // clang 14 cannot capture structured bindings in INFO's lambda
    CHECK(std::abs(corpus_chrf(c.h, c.r, eff).score - c.want) < 1e-4);
  }
  for (auto const& c : std::vector<Case>{{{"abcdefg"}, {"hijklmnop"}, 0.0}, {{"a"}, {"b"}, 0.0},
                                                    {{""}, {"ref"}, 0.0}, {{"aa"}, {"ab"}, 8.3333},
                                                    {{"a", "b"}, {"a", "c"}, 8.3333}, {{"a"}, {"a"}, 16.6667},
                                                    {{"a b c"}, {"a b c"}, 50.0}, {{"a b c"}, {"abc"}, 50.0}}) {
    INFO(c.h[0], " / ", c.r[0]);
    CHECK(std::abs(corpus_chrf(c.h, c.r, eps).score - c.want) < 1e-4);
  }
  CHECK(std::abs(corpus_chrf(Strings{" Die    Beziehung zwischen  Obama und Netanjahu ist nicht gerade  freundlich. "},
                             Strings{"Das Verhältnis zwischen Obama und Netanyahu ist nicht gerade freundschaftlich."}, eps)
                     .score -
                 64.1302698) < 1e-4);
}

TEST_CASE("BLEU: cases computed by hand") {
  SUBCASE("perfect match is 100") {
    auto const b = corpus_bleu(Strings{"The cat sat on the mat."}, Strings{"The cat sat on the mat."});
    CHECK(close(b.score, 100.0, 1e-14));
    CHECK(b.bp == 1.0);
  }
  SUBCASE("clipping: 7 x 'the' against a reference with 2") {
    // 1-grams 2/7 (clipped); no 2/3/4-gram matches (6, 5, 4 of them): exp smoothing gives 100/(2*6),
    // 100/(4*5), 100/(8*4). BP 1 (7 >= 6). (28.571 * 8.333 * 5 * 3.125)^(1/4) = 7.80985.
    auto const b = corpus_bleu(Strings{"the the the the the the the"}, Strings{"the cat is on the mat"});
    CHECK(b.counts == std::array<std::int64_t, 4>{2, 0, 0, 0});
    CHECK(b.totals == std::array<std::int64_t, 4>{7, 6, 5, 4});
    CHECK(close(b.precisions[1], 100.0 / 12));
    CHECK(close(b.precisions[3], 100.0 / 32));
    CHECK(close(b.score, std::pow(200.0 / 7 * 100.0 / 12 * 5.0 * 3.125, 0.25)));
    CHECK(std::abs(b.score - 7.8098) < 1e-4);
  }
  SUBCASE("brevity penalty: 4 of 6 reference words, all matching") {
    // every precision 100, BP = exp(1 - 6/4) = exp(-0.5) = 0.60653
    auto const b = corpus_bleu(Strings{"the cat sat on"}, Strings{"the cat sat on the mat"});
    CHECK(close(b.bp, std::exp(-0.5)));
    CHECK(close(b.score, 100.0 * std::exp(-0.5)));
    CHECK(std::abs(b.score - 60.6531) < 1e-4);
  }
  SUBCASE("exp smoothing when no 2-, 3-, 4-gram matches") {
    // 1-grams the, sat: 2/5 = 40; then 100/(2*4) = 12.5, 100/(4*3) = 8.333, 100/(8*2) = 6.25;
    // BP = exp(1 - 6/5). Score = exp(-0.2) * (40 * 12.5 * 8.333 * 6.25)^(1/4) = 10.40060.
    auto const b = corpus_bleu(Strings{"the cat sat down quietly"}, Strings{"the dog sat on the mat"});
    CHECK(close(b.score, std::exp(-0.2) * std::pow(40.0 * 12.5 * (100.0 / 12) * 6.25, 0.25)));
    CHECK(std::abs(b.score - 10.4006) < 1e-4);
  }
  SUBCASE("no 4-grams at all: score 0 (sacreBLEU stops at the first empty order, no effective order)") {
    auto const b = corpus_bleu(Strings{"a b c"}, Strings{"a b c"});
    CHECK(b.score == 0.0);
    CHECK(b.format() == "BLEU = 0.00 100.0/100.0/100.0/0.0 (BP = 1.000 ratio = 1.000 hyp_len = 3 ref_len = 3)");
  }
  SUBCASE("empty hypothesis: BP 0, score 0") {
    auto const b = corpus_bleu(Strings{""}, Strings{"Permission denied"});
    CHECK(b.score == 0.0);
    CHECK(b.bp == 0.0);
    CHECK(b.ref_len == 2);
  }
}

TEST_CASE("13a tokenizer: examples") {
  CHECK(tokenize_13a("Hello, world!") == "Hello , world !");
  CHECK(tokenize_13a("It costs $1,000.50 (approx.).") == "It costs $ 1,000.50 ( approx . ) .");
  CHECK(tokenize_13a("pages 10-20, well-known") == "pages 10 - 20 , well-known");
  CHECK(tokenize_13a("&quot;a&quot; &amp; &lt;b&gt; &amp;lt;") == "\" a \" & < b > <");
  CHECK(tokenize_13a("hyphen-\nated <skipped> line\nbreak") == "hyphenated line break");
  CHECK(tokenize_13a("don't") == "don't");
  CHECK(tokenize_13a("Grüße\xc2\xa0" "aus München.") == "Grüße aus München .");  // U+00A0 splits like Python
  CHECK(tokenize_13a("  ") == "");
}

TEST_CASE("13a tokenizer and BLEU/chrF: every case of the Python transcription") {
  for (auto const& c : cases()) {
    INFO("case ", c["name"].get<std::string>());
    auto const& e = c["expected"];
    if (c.contains("tokenize")) {
      auto const in = c["tokenize"].get<Strings>();
      auto const want = e["tokenized"].get<Strings>();
      for (std::size_t i = 0; i < in.size(); ++i) {
        INFO("input ", json(in[i]).dump());
        CHECK(tokenize_13a(in[i]) == want[i]);
      }
    }
    if (!c.contains("hyps")) continue;
    auto const hyps = c["hyps"].get<Strings>();
    auto const refs = c["refs"].get<Streams>();
    auto const b = corpus_bleu(hyps, refs);
    auto const& eb = e["bleu"];
    CHECK(close(b.score, eb["score"].get<double>()));
    for (std::size_t n = 0; n < 4; ++n) {
      CHECK(close(b.precisions[n], eb["precisions"][n].get<double>()));
      CHECK(b.counts[n] == eb["counts"][n].get<std::int64_t>());
      CHECK(b.totals[n] == eb["totals"][n].get<std::int64_t>());
    }
    CHECK(close(b.bp, eb["bp"].get<double>()));
    CHECK(close(b.ratio, eb["ratio"].get<double>()));
    CHECK(b.sys_len == eb["sys_len"].get<std::int64_t>());
    CHECK(b.ref_len == eb["ref_len"].get<std::int64_t>());
    CHECK(b.signature() == eb["signature"].get<std::string>());
    CHECK(b.format() == eb["format"].get<std::string>());
    auto const ch = corpus_chrf(hyps, refs);
    auto const& ec = e["chrf"];
    CHECK(close(ch.score, ec["score"].get<double>()));
    CHECK(ch.stats == ec["stats"].get<std::vector<std::int64_t>>());
    CHECK(ch.signature() == ec["signature"].get<std::string>());
    CHECK(ch.format() == ec["format"].get<std::string>());
  }
}

TEST_CASE("BLEU/chrF: transcription values, checked in") {
  // From bleu_reference.py (also in bleu_cases.json), kept here so a reader sees the numbers.
  Strings const hyps{"Error: file \"foo.txt\" not found (code 2).", "Copied 1,234 files in 3.5 seconds.",
                     "Use --force to overwrite & continue."};
  Strings const refs{"error: file &quot;foo.txt&quot; was not found (code 2)", "Copied 1,234 files in 3.50 seconds!",
                     "Use --force to overwrite &amp; continue"};
  CHECK(std::abs(corpus_bleu(hyps, refs).score - 68.24642436723968) < 1e-10);
  CHECK(std::abs(corpus_chrf(hyps, refs).score - 70.86221192957693) < 1e-10);
  Strings const de_h{"Die Datei konnte nicht geöffnet werden.", "Ungültige Option -- „%s“", "Speicher erschöpft",
                     "Zu viele Argumente angegeben."};
  Strings const de_r{"Datei konnte nicht geöffnet werden", "ungültige Option -- „%s“", "Speicher ausgeschöpft",
                     "Zu viele Argumente."};
  CHECK(std::abs(corpus_bleu(de_h, de_r).score - 59.04306431658149) < 1e-10);
  CHECK(std::abs(corpus_chrf(de_h, de_r).score - 85.70607426606304) < 1e-10);
}

TEST_CASE("BLEU/chrF: errors") {
  CHECK_THROWS_AS(corpus_bleu(Strings{"a", "b"}, Strings{"a"}), ValueError);
  CHECK_THROWS_AS(corpus_chrf(Strings{"a"}, Strings{"a", "b"}), ValueError);
  CHECK_THROWS_WITH_AS(corpus_bleu(Strings{"a", "b"}, Strings{"a"}), doctest::Contains("2 hypotheses but reference stream 0 has 1"),
                       ValueError);
  CHECK_THROWS_WITH_AS(corpus_bleu(Strings{"a"}, Strings{""}), doctest::Contains("segment 0 has no reference"), ValueError);
  CHECK_THROWS_AS(corpus_bleu(Strings{}, Strings{}), ValueError);
  CHECK_THROWS_WITH_AS(corpus_bleu(Strings{"bad \xff byte"}, Strings{"x"}), doctest::Contains("invalid UTF-8"), ValueError);
  CHECK_THROWS_AS(corpus_chrf(Strings{"trunc \xc3"}, Strings{"x"}), ValueError);
}
