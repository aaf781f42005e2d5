// translate train: settles the run (new or resumed), the vocabulary and the data on every rank, then
// runs the training loop of the configured policy and optimizer (train_loop.hpp).

#include "resume.hpp"
#include "train_loop.hpp"

#include <lnformer/io/checksum.hpp>

#include <unistd.h>

namespace translate {

int cmd_train(TrainOptions const& o, RunConfig cli_cfg) {
  auto const t_start = Clock::now();
  dist::Communicator& comm = *g_comm;
  bool const root = comm.is_root();
  // Rank 0 owns --out: it finds the checkpoint to resume, settles the configuration and trains the
  // vocabulary; the other ranks receive the results (no shared file system is needed for --out).
  std::string resume_path;
  std::vector<std::string> resume_log;  // what the resume changed (options, files in --out), said and logged
  bool best_on_disk = true;             // checkpoint_best is the resumed line's best (or none is needed yet)
  RunConfig cfg = cli_cfg;
  fs::path const spm = o.out / "spm.model";
  std::optional<CheckpointInfo> from;  // the checkpoint resumed
  RunConfig resumed_cfg;               // and its configuration as saved
  if (root) {
    fs::create_directories(o.out);
    for (auto const& e : fs::directory_iterator(o.out))  // temporary files of an interrupted save
      if (e.path().extension() == ".tmp" || e.path().stem() == "spm.partial") fs::remove(e.path());
    if (o.resume || !o.resume_from.empty()) {
      from = o.resume_from.empty() ? latest_checkpoint(o.out) : checkpoint_info(o.resume_from);
      resume_path = from->path.string();
      fmt::print("--resume: the configuration of {} is used (model, optimizer, schedule, data, seed)\n", resume_path);
      resumed_cfg = config_of(from->meta, resume_path);
      cfg = resume_config(resumed_cfg, cli_cfg, o, from->step, resume_log);
      cfg.data = resume_data(resumed_cfg, o).string();
    } else {
      LNF_EXPECTS_AS(IoError, numbered_checkpoints(o.out).empty(),
                     "'{}' already holds checkpoints: continue with --resume, or choose another --out", o.out.string());
      if (cfg.schedule == "auto") cfg.schedule = cfg.warmup > 0 ? "inverse_sqrt" : "constant";
      if (cfg.schedule_steps == 0) cfg.schedule_steps = o.max_steps;
      cfg.data = o.data.string();
    }
  }

  // Every rank reads the corpus (rank 0 first: a missing split is reported before any vocabulary
  // work), from rank 0's choice of directory.
  Split train, valid, test;
  auto read_splits = [&] {
    train = read_split(cfg.data, "train", cfg);
    valid = read_split(cfg.data, "valid", cfg);
    test = read_split(cfg.data, "test", cfg);
    fmt::print("data {}: train {}, valid {}, test {} pairs ({} -> {})\n", cfg.data, train.src.size(), valid.src.size(),
               test.src.size(), cfg.src_lang, cfg.tgt_lang);
  };
  std::string spm_bytes;  // the vocabulary file, sent from rank 0 to the others
  if (root) {
    read_splits();
    std::string const data_sha = data_fingerprint(cfg.data, cfg);
    if (from) {
      // Everything a resume needs is checked before it changes anything in --out.
      check_resume_data(resumed_cfg, cfg.data, data_sha);
      LNF_EXPECTS_AS(IoError, fs::exists(spm),
                     "--resume: '{}' is missing (the checkpoints need the vocabulary they were trained with)",
                     spm.string());
      LNF_EXPECTS_AS(IoError, cfg.spm_sha256.empty() || cfg.spm_sha256 == translate::detail::file_sha256(spm),
                     "'{}' is not the vocabulary of the checkpoint being resumed (SHA-256 differs)", spm.string());
      // The line being continued ends at `from`: newer checkpoints (an abandoned continuation's)
      // must neither be picked by a later --resume nor count for --keep-last. They are kept, aside.
      for (auto const& [step, path] : numbered_checkpoints(o.out))
        if (step > from->step)
          resume_log.push_back(fmt::format("{} is newer than the checkpoint resumed: moved to {}", path.string(),
                                           move_aside(o.out, path).string()));
      best_on_disk = settle_best(o.out, *from, resume_log);
      for (auto const& l : resume_log) fmt::print("--resume: {}\n", l);
    } else if (std::string const train_sha = data_fingerprint(cfg.data, cfg, {"train"}); fs::exists(spm)) {
      check_reused_vocabulary(spm, o, train_sha);
    } else {
      auto const t0 = Clock::now();
      fs::path const d = cfg.data;
      // Trained under another name and renamed: an interrupted training leaves no spm.model that a
      // later run would take for a finished one. spm.json says what it was trained on.
      train_sentencepiece({(d / ("train." + cfg.src_lang)).string(), (d / ("train." + cfg.tgt_lang)).string()},
                          (o.out / "spm.partial").string(),
                          {.vocab_size = o.vocab_size, .threads = std::max(1, omp_get_max_threads()),
                           .seed = static_cast<std::uint32_t>(cfg.seed)});
      write_lines(o.out / "spm.json",
                  {json{{"vocab_size", o.vocab_size}, {"data", cfg.data}, {"train_sha256", train_sha}}.dump()});
      fs::rename(o.out / "spm.partial.vocab", o.out / "spm.vocab");
      fs::rename(o.out / "spm.partial.model", spm);
      fmt::print("SentencePiece: joint unigram vocabulary of {} trained on the train split in {:.1f}s -> {}\n",
                 o.vocab_size, seconds_since(t0), spm.string());
    }
    cfg.data_sha256 = data_sha;
    cfg.spm_sha256 = translate::detail::file_sha256(spm);
    if (comm.size() > 1) {
      std::ifstream in(spm, std::ios::binary);
      spm_bytes.assign(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
      LNF_EXPECTS_AS(IoError, in.good() || in.eof(), "cannot read '{}'", spm.string());
    }
  }
  fs::path spm_here = spm;  // where this rank loads the vocabulary from
  if (comm.size() > 1) {
    std::string cfg_json = root ? json(cfg).dump() : std::string();
    dist::broadcast_string(comm, cfg_json);
    cfg = json::parse(cfg_json).get<RunConfig>();
    dist::broadcast_string(comm, resume_path);
    dist::broadcast_string(comm, spm_bytes);
    if (!root) {
      spm_here = fs::temp_directory_path() / fmt::format("lnformer-spm-{}-rank{}.model", ::getpid(), comm.rank());
      std::ofstream f(spm_here, std::ios::binary | std::ios::trunc);
      f << spm_bytes;
      f.close();
      LNF_EXPECTS_AS(IoError, f.good(), "cannot write the vocabulary received from rank 0 to '{}'", spm_here.string());
    }
  }
  if (!root) read_splits();
  SentencePieceVocab const vocab(spm_here.string());
  if (spm_here != spm) fs::remove(spm_here);
  LNF_EXPECTS_AS(IoError, cfg.vocab == 0 || cfg.vocab == vocab.size(), "'{}' has {} pieces but the checkpoint has {}",
                 spm.string(), vocab.size(), cfg.vocab);
  cfg.vocab = vocab.size();
  auto const t_enc = Clock::now();
  encode(train, vocab);
  encode(valid, vocab);
  encode(test, vocab);
  fmt::print("encoded with {} pieces in {:.1f}s\n", vocab.size(), seconds_since(t_enc));

  TrainContext tc{o, cfg, t_start, vocab, train, valid, test, resume_path, resume_log, best_on_disk};
  return dispatch(
      NormPolicies{}, cfg.norm,
      [&](auto ntag) {
        using Norm = typename decltype(ntag)::type;
        return dispatch(
            Optimizers{}, cfg.optimizer,
            [&](auto otag) {
              using Opt = typename decltype(otag)::type;
              return train_run<Norm, Opt>(tc);
            },
            "--optimizer");
      },
      "--norm");
}

}  // namespace translate
