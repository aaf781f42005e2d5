#pragma once
// What `translate train` settles before training when --out already holds something: the checkpoint
// to resume (a damaged latest one names the older ones that verify), the configuration a resume
// runs with (options that may change are applied and logged, options that cannot are refused, never
// ignored), the data it continues on, and an earlier vocabulary a new run would reuse.

#include "commands.hpp"

namespace translate {

/// The newest numbered checkpoint in `dir`, verified. When it is damaged, the error says so and
/// names the older checkpoints that verify, with the command that continues from one.
inline CheckpointInfo latest_checkpoint(fs::path const& dir) {
  auto const all = numbered_checkpoints(dir);
  LNF_EXPECTS_AS(IoError, !all.empty(), "--resume: no checkpoint_<step>.safetensors in '{}'", dir.string());
  fs::path const latest = all.rbegin()->second;
  try {
    return checkpoint_info(latest);
  } catch (std::exception const& e) {
    std::vector<std::string> older;
    for (auto it = std::next(all.rbegin()); it != all.rend(); ++it) {
      try {
        auto const info = checkpoint_info(it->second);
        older.push_back(fmt::format("{} (step {})", info.path.string(), info.step));
      } catch (std::exception const&) {
        older.push_back(fmt::format("{} (damaged too)", it->second.string()));
      }
    }
    std::string const hint =
        older.empty()
            ? std::string("there is no older checkpoint in it")
            : fmt::format("older checkpoints: {}; continue from one with `translate train --out {} --resume-from "
                          "<checkpoint>` (the newer ones are then moved to {})",
                          fmt::join(older, ", "), dir.string(), (dir / "abandoned").string());
    throw IoError(fmt::format("--resume: the latest checkpoint {} cannot be used: {}\n  {}", latest.string(), e.what(),
                              hint));
  }
}

/// The configuration a resume from `ckpt` (at `step`) runs with. Options given on the command line
/// that the checkpoint fixes (the model, the optimizer and its state, the batch plan, the seed, the
/// vocabulary) are refused when they differ from it; the learning-rate schedule (--lr, --schedule,
/// --warmup, --schedule-steps) may change, typically a lower --lr after a divergence: applied from
/// this step on, said in `log` (printed, and recorded in metrics.jsonl) and saved in the next
/// checkpoints.
inline RunConfig resume_config(RunConfig const& ckpt, RunConfig const& cli, TrainOptions const& o, std::int64_t step,
                               std::vector<std::string>& log) {
  auto given = [&](char const* name) { return o.given.contains(name); };
  std::vector<std::string> refused;
  auto fixed = [&](char const* name, auto const& want, auto const& have) {
    if (given(name) && want != have) refused.push_back(fmt::format("{} {} (the checkpoint's: {})", name, want, have));
  };
  fixed("--norm", cli.norm, ckpt.norm);
  fixed("--optimizer", cli.optimizer, ckpt.optimizer);
  fixed("--beta2", cli.beta2, ckpt.beta2);
  fixed("--weight-decay", cli.weight_decay, ckpt.weight_decay);
  if (given("--layers") && (cli.enc_layers != ckpt.enc_layers || cli.dec_layers != ckpt.dec_layers))
    refused.push_back(fmt::format("--layers {} (the checkpoint's: {} + {})", cli.enc_layers, ckpt.enc_layers,
                                  ckpt.dec_layers));
  fixed("--enc-layers", cli.enc_layers, ckpt.enc_layers);
  fixed("--dec-layers", cli.dec_layers, ckpt.dec_layers);
  fixed("--d-model", cli.d_model, ckpt.d_model);
  fixed("--ffn", cli.ffn, ckpt.ffn);
  fixed("--heads", cli.heads, ckpt.heads);
  fixed("--dropout", cli.dropout, ckpt.dropout);
  fixed("--attention-dropout", cli.attention_dropout, ckpt.attention_dropout);
  fixed("--activation-dropout", cli.activation_dropout, ckpt.activation_dropout);
  fixed("--label-smoothing", cli.label_smoothing, ckpt.label_smoothing);
  fixed("--clip-norm", cli.clip_norm, ckpt.clip_norm);
  fixed("--max-tokens", cli.max_tokens, ckpt.max_tokens);
  fixed("--update-freq", cli.update_freq, ckpt.update_freq);
  fixed("--max-len", cli.max_len, ckpt.max_len);
  fixed("--seed", cli.seed, ckpt.seed);
  fixed("--src-lang", cli.src_lang, ckpt.src_lang);
  fixed("--tgt-lang", cli.tgt_lang, ckpt.tgt_lang);
  fixed("--vocab-size", std::int64_t{o.vocab_size}, ckpt.vocab);
  LNF_EXPECTS_AS(ValueError, refused.empty(),
                 "--resume continues the checkpoint's run with its configuration, and these options differ from it: "
                 "{}. Drop them to continue, or start a new run (another --out) to change them",
                 fmt::join(refused, ", "));

  RunConfig cfg = ckpt;
  auto override_with = [&](char const* name, auto& field, auto const& want) {
    if (want == field) return;
    log.push_back(fmt::format("{} {} overrides the checkpoint's {} from step {} on", name, want, field, step));
    field = want;
  };
  if (given("--lr")) override_with("--lr", cfg.lr, cli.lr);
  if (given("--warmup")) override_with("--warmup", cfg.warmup, cli.warmup);
  if (given("--schedule-steps")) override_with("--schedule-steps", cfg.schedule_steps, cli.schedule_steps);
  if (given("--schedule")) {
    std::string const s = cli.schedule == "auto" ? (cfg.warmup > 0 ? "inverse_sqrt" : "constant") : cli.schedule;
    override_with("--schedule", cfg.schedule, s);
  }
  (void)make_schedule(cfg);  // an impossible combination is an error now, not after the first steps
  return cfg;
}

/// The corpus directory a resume reads: --data when given, else the checkpoint's. Its files must
/// be the ones the checkpoint was trained on (the data position means nothing on other sentences):
/// other data is refused, the same data at another path noted.
inline fs::path resume_data(RunConfig const& ckpt, TrainOptions const& o) {
  fs::path const dir = o.given.contains("--data") || ckpt.data.empty() ? o.data : fs::path(ckpt.data);
  if (!o.given.contains("--data") && !ckpt.data.empty())
    fmt::print("--resume: data from {} (the checkpoint's; --data reads another path)\n", dir.string());
  return dir;
}

inline void check_resume_data(RunConfig const& ckpt, fs::path const& dir, std::string const& fingerprint) {
  if (ckpt.data_sha256.empty()) {
    fmt::print("--resume: the checkpoint records no data fingerprint (written by an older version): '{}' is taken "
               "as the data it was trained on\n",
               dir.string());
    return;
  }
  LNF_EXPECTS_AS(IoError, ckpt.data_sha256 == fingerprint,
                 "--resume: the corpus in '{}' is not the one the checkpoint was trained on ('{}'; the SHA-256 of the "
                 "split files differs): its data position would continue over other sentences. Give --data with "
                 "the original corpus, or start a new run (another --out) on this one",
                 dir.string(), ckpt.data);
  if (fs::path(ckpt.data) != dir)
    fmt::print("--resume: '{}' holds the same files as '{}', where the checkpoint was trained\n", dir.string(),
               ckpt.data);
}

/// A new run in an --out that already has spm.model (an earlier start that stopped before its first
/// checkpoint, or a vocabulary put there on purpose): reused only when it is what this run would
/// train, the --vocab-size and (per its spm.json) the same training split; else refused, saying why.
inline void check_reused_vocabulary(fs::path const& spm, TrainOptions const& o, std::string const& train_fingerprint) {
  SentencePieceVocab const v(spm.string());
  LNF_EXPECTS_AS(ValueError, v.size() == o.vocab_size,
                 "'{}' (from an earlier start in '{}') has {} pieces but --vocab-size is {}: delete it (and spm.vocab) "
                 "to train a new one, or give --vocab-size {}",
                 spm.string(), o.out.string(), v.size(), o.vocab_size, v.size());
  fs::path const info = fs::path(spm).replace_extension(".json");
  std::string how = "no spm.json records its training data";
  if (fs::exists(info)) {
    std::ifstream in(info);
    auto const j = json::parse(in, nullptr, false);
    LNF_EXPECTS_AS(IoError, !j.is_discarded() && j.contains("train_sha256"), "'{}' is not valid", info.string());
    LNF_EXPECTS_AS(ValueError, j["train_sha256"] == train_fingerprint,
                   "'{}' (from an earlier start in '{}') was trained on another train split ({}): delete it (and "
                   "spm.vocab, spm.json) to train one on '{}', or choose another --out",
                   spm.string(), o.out.string(), j.value("data", std::string("?")), o.data.string());
    how = "trained on this train split";
  }
  fmt::print("SentencePiece: reusing {} ({} pieces, {}) from an earlier start; delete it to train a new one\n",
             spm.string(), v.size(), how);
}

}  // namespace translate
