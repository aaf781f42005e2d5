#pragma once
// The subcommands of the translate program and their options (main.cpp turns the command line into
// these): prepare (prepare.cpp), train (train.cpp), translate and evaluate (infer.cpp).

#include "debian_corpus.hpp"
#include "evaluation.hpp"

#include <set>

namespace translate {

struct TrainOptions {
  fs::path data = "data/de-en";
  fs::path out = "runs/de-en";
  int vocab_size = 8000;
  std::int64_t max_epochs = 0;  // 0: no limit
  std::int64_t max_steps = 0;
  double time_budget = 840;     // seconds, whole command; 0: no limit
  std::int64_t checkpoint_every = 100;
  int patience = 0;             // stop after this many validations without a better BLEU (0: never)
  std::int64_t stats_every = 0; // steps between training statistics in metrics.jsonl (0: none)
  int keep_last = 2;
  int log_every = 50;
  std::size_t valid_bleu_sentences = 200;
  int valid_beam = 1;
  bool resume = false;
  std::string resume_from;
  int examples = 5;
  bool final_test = true;
  DecodeOptions decode;  // the final test decoding
  std::set<std::string> given;  // the options on the command line ("--lr"): what --resume must honour
};


struct InferOptions {
  fs::path out = "runs/de-en";
  std::string checkpoint, spm, input, output;
  fs::path data = "data/de-en";
  std::string split = "test";
  DecodeOptions decode;
};


struct PrepareCli {
  translate::PrepareOptions corpus;
  std::string data = "data/de-en", cache = "data/cache/debian";
  std::string train_src, train_tgt, valid_src, valid_tgt, test_src, test_tgt;
  std::string src_lang = "de", tgt_lang = "en";
};

struct ScoreOptions {
  fs::path hyp, ref;
};

struct AverageOptions {
  std::vector<std::string> inputs;  ///< checkpoint files, or
  fs::path out = "runs/de-en";      ///< with `last`: the run directory whose last checkpoints are averaged
  int last = 0;
  fs::path output;
};

struct FoldAdminOptions {
  fs::path checkpoint, output;
};

int cmd_prepare(PrepareCli p);
int cmd_train(TrainOptions const& o, RunConfig cli_cfg);
int cmd_translate(InferOptions const& o);
int cmd_evaluate(InferOptions const& o);
int cmd_score(ScoreOptions const& o);
int cmd_average(AverageOptions const& o);
int cmd_fold_admin(FoldAdminOptions const& o);

}  // namespace translate
