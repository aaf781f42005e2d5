#pragma once
// The training loop of `translate train` for one policy and optimizer: Admin profiling, resume,
// token-batched steps (update_freq batches each, spread over the ranks), validation + checkpoints,
// training statistics, the stop conditions, and the final test with the best checkpoint.

#include "commands.hpp"

#include <lnformer/analysis/training_stats.hpp>
#include <lnformer/train/trainer.hpp>

#include <omp.h>

#include <array>
#include <limits>
#include <optional>

namespace translate {

struct Position {
  std::int64_t epoch = 1;      // from 1
  std::int64_t batch = 0;      // index of the next batch within the epoch's order
};

class MetricsLog {
 public:
  MetricsLog(fs::path path, std::optional<std::int64_t> resume_step) : path_(std::move(path)) {
    if (resume_step && fs::exists(path_)) {  // drop what came after the checkpoint being resumed
      std::ifstream in(path_);
      std::vector<std::string> keep;
      for (std::string line; std::getline(in, line);) {
        if (line.empty()) continue;
        auto const j = json::parse(line, nullptr, false);
        if (j.is_discarded() || !j.contains("step") || j["step"].get<std::int64_t>() <= *resume_step) keep.push_back(line);
      }
      write_lines(path_, keep);
    } else if (!resume_step) {
      std::ofstream(path_, std::ios::trunc);
    }
    f_.open(path_, std::ios::app);
    LNF_EXPECTS_AS(IoError, f_.good(), "cannot write '{}'", path_.string());
  }
  void write(json const& j) {
    f_ << j.dump() << '\n';
    f_.flush();
    LNF_EXPECTS_AS(IoError, f_.good(), "error writing '{}': {}", path_.string(), std::strerror(errno));
  }

 private:
  fs::path path_;
  std::ofstream f_;
};

/// metrics.jsonl's "stats" event: per layer (encoder then decoder, by index) the gradient norm before
/// clipping and the variance of its output, both of the step's last batch.
inline json stats_event(std::int64_t step, std::vector<LayerValue> const& grad_norms, std::vector<LayerValue> const& variances) {
  json j{{"event", "stats"}, {"step", step}};
  auto put = [&](char const* key, std::vector<LayerValue> const& values) {
    json per{{"encoder", json::array()}, {"decoder", json::array()}};
    for (auto const& v : values) per[std::string(stack_name(v.site.stack))].push_back(v.value);
    j[key] = per;
  };
  put("grad_norm", grad_norms);
  put("hidden_var", variances);
  return j;
}

struct TrainContext {
  TrainOptions const& o;
  RunConfig cfg;
  Clock::time_point t_start;
  SentencePieceVocab const& vocab;
  Split& train, &valid, &test;
  std::string resume_path;  // the checkpoint to continue from (empty: a new run)
  std::vector<std::string> resume_log;  // what resuming changed in --out
  bool best_on_disk = true;  // checkpoint_best is this line's best (settle_best)
};

template <class Norm, class Opt>
int train_run(TrainContext& tc) {
  TrainOptions const& o = tc.o;
  RunConfig const& cfg = tc.cfg;
  dist::Communicator& comm = *g_comm;
  bool const root = comm.is_root();
  auto const ranks = static_cast<std::int64_t>(comm.size());
  Seq2Seq<Norm, Cpu> model(model_config(cfg), cfg.seed);
  std::int64_t n_params = 0;
  for (auto const& p : model.parameters()) n_params += p.param->value.numel();

  TokenBatcher const batcher = make_batcher(tc.train, cfg, cfg.max_len);
  TokenBatcher const valid_batcher = make_batcher(tc.valid, cfg, cfg.max_positions - 2);
  auto const& bs = batcher.stats();
  fmt::print("train: {} pairs in {} batches of <= {} tokens ({} left out: longer than {} tokens; {} with an empty "
             "side)\n",
             bs.sentences, bs.batches, cfg.max_tokens, bs.too_long, cfg.max_len, bs.empty);
  LNF_EXPECTS_AS(ValueError, bs.batches > 0, "no training batch: every pair was left out");

  // With several ranks, the Trainer starts every rank from rank 0's parameters and all-reduces.
  Trainer trainer(model, make_optimizer<Opt>(cfg), make_schedule(cfg),
                  TrainerOptions{.clip_norm = cfg.clip_norm, .seed = cfg.seed, .comm = &comm});
  // A policy that sets parameters from data (Admin's w) calibrates on one ordinary training batch, the
  // first of epoch 1, in training mode; the ranks then hold rank 0's result.
  {
    auto const first = batcher.epoch(1).front();
    if (trainer.calibrate(batch_of(tc.train, first)))
      fmt::print("{}: calibrated on the first batch ({} sentences)\n", Norm::name, first.size());
  }
  Position pos;
  double best_bleu = -1, train_seconds_before = 0;
  std::int64_t best_step = 0, validations_since_best = 0;
  fs::path last_good;
  if (!tc.resume_path.empty()) {
    auto const& src = tc.resume_path;
    auto const meta = trainer.load_checkpoint(src, /*require_checksum=*/true);  // rank 0 reads, all get it
    pos.epoch = meta_int(meta, "translate/epoch", src);
    pos.batch = meta_int(meta, "translate/batch_index", src);
    best_step = meta_int(meta, "translate/best_step", src);
    best_bleu = std::stod(meta_at(meta, "translate/best_bleu", src));
    if (meta.contains("translate/validations_since_best"))
      validations_since_best = meta_int(meta, "translate/validations_since_best", src);
    train_seconds_before = std::stod(meta_at(meta, "translate/train_seconds", src));
    last_good = src;
    fmt::print("resumed from {}: step {}, epoch {}, batch {} of the epoch; best valid BLEU {:.2f} (step {})\n", src,
               trainer.steps(), pos.epoch, pos.batch, best_bleu, best_step);
    if (auto it = meta.find("translate/ranks"); it != meta.end() && it->second != std::to_string(ranks))
      fmt::print("the checkpoint was written by a run on {} rank(s); this one has {}: each step now takes {} "
                 "batch(es)\n",
                 it->second, ranks, ranks);
  }
  fmt::print("model: Seq2Seq<{}>, {} + {} layers, d {}, ffn {}, heads {}, vocab {}, {} parameters; dropout {}, "
             "label smoothing {}\n",
             Norm::name, cfg.enc_layers, cfg.dec_layers, cfg.d_model, cfg.ffn, cfg.heads, cfg.vocab, n_params,
             cfg.dropout, cfg.label_smoothing);
  fmt::print("optimizer {} ({}), schedule {} (lr {}, warm-up {}), clip norm {}, seed {}, {} thread(s), CPU GEMMs {}{}\n",
             Opt::name, trainer.optimizer().describe(), trainer.schedule().which(), cfg.lr, cfg.warmup, cfg.clip_norm,
             cfg.seed, omp_get_max_threads(), cpu::to_string(cpu::gemm_math()),
             cpu::gemm_math() == cpu::GemmMath::bf16 && !cpu::native_bf16_gemm() ? " (emulated)" : "");
  if (ranks > 1)
    fmt::print("data-parallel over {} ranks ({}): each step trains on {} batches of <= {} tokens, {} per rank\n",
               ranks, comm.name(), ranks * cfg.update_freq, cfg.max_tokens, cfg.update_freq);
  else if (cfg.update_freq > 1)
    fmt::print("gradient accumulation: each update from {} batches of <= {} tokens\n", cfg.update_freq, cfg.max_tokens);
  fmt::print("stop at: {}{}{}{}; checkpoint every {} steps into {}\n",
             o.max_steps > 0 ? fmt::format("step {}", o.max_steps) : std::string("no step limit"),
             o.max_epochs > 0 ? fmt::format(", epoch {}", o.max_epochs) : std::string(),
             o.time_budget > 0 ? fmt::format(", {} (time budget)", duration(o.time_budget)) : std::string(),
             o.patience > 0 ? fmt::format(", {} validations without a better BLEU", o.patience) : std::string(),
             o.checkpoint_every, o.out.string());
  std::fflush(stdout);

  // metrics.jsonl is rank 0's; the other ranks write nothing.
  std::optional<MetricsLog> metrics_file;
  if (root)
    metrics_file.emplace(o.out / "metrics.jsonl",
                         tc.resume_path.empty() ? std::nullopt : std::optional<std::int64_t>(trainer.steps()));
  auto metrics_write = [&](json const& j) {
    if (metrics_file) metrics_file->write(j);
  };
  if (!tc.resume_path.empty())
    metrics_write({{"event", "resume"},
                   {"step", trainer.steps()},
                   {"from", tc.resume_path},
                   {"ranks", ranks},
                   {"changes", tc.resume_log}});

  DecodeOptions const valid_decode{.beam = o.valid_beam, .lenpen = 1.0};
  auto const t_loop = Clock::now();
  double last_valid_seconds = 0, valid_decode_rate = 0;  // seconds per sentence and beam, measured
  std::int64_t last_ckpt_step = trainer.steps();

  auto train_seconds = [&] { return train_seconds_before + seconds_since(t_loop); };

  // Validation + checkpoint at the current step; returns the valid BLEU.
  auto checkpoint = [&](Position const& p) {
    auto const t0 = Clock::now();
    auto const vl = valid_loss(model, tc.valid, valid_batcher);
    auto const sc = score(model, tc.vocab, tc.valid, o.valid_bleu_sentences, valid_decode);
    valid_decode_rate = sc.seconds / static_cast<double>(std::max<std::size_t>(1, sc.hyps.size())) / valid_decode.beam;
    std::int64_t const step = trainer.steps();
    bool const is_best = sc.bleu.score > best_bleu;
    if (is_best) {
      best_bleu = sc.bleu.score;
      best_step = step;
      validations_since_best = 0;
    } else {
      ++validations_since_best;
    }
    std::map<std::string, std::string> meta{{"translate/format", std::string(kFormat)},
                                            {"translate/config", json(cfg).dump()},
                                            {"translate/epoch", std::to_string(p.epoch)},
                                            {"translate/batch_index", std::to_string(p.batch)},
                                            {"translate/best_bleu", fmt::format("{}", best_bleu)},
                                            {"translate/best_step", std::to_string(best_step)},
                                            {"translate/validations_since_best", std::to_string(validations_since_best)},
                                            {"translate/valid_bleu", fmt::format("{}", sc.bleu.score)},
                                            {"translate/valid_loss", fmt::format("{}", vl.loss)},
                                            {"translate/train_seconds", fmt::format("{}", train_seconds())},
                                            {"translate/ranks", std::to_string(ranks)}};
    // The numbered file first, then best as a link to it: a crash between the two leaves a stale
    // best that the numbered file's best_step exposes (checkpoints.hpp: settle_best repairs it).
    fs::path const path = checkpoint_path(o.out, step);
    trainer.save_checkpoint(path.string(), meta);
    if (is_best) {
      publish_best(path, best_checkpoint_path(o.out));
      tc.best_on_disk = true;
    }
    last_good = path;
    last_ckpt_step = step;
    // --keep-last: the newest of this line (nothing newer than this step is touched: resuming moved
    // an abandoned continuation aside), and never the checkpoint this run resumed from, the way
    // back if the new ones turn out bad.
    std::vector<fs::path> line;
    for (auto const& [k, f] : numbered_checkpoints(o.out))
      if (k <= step && !(fs::exists(tc.resume_path) && fs::equivalent(f, tc.resume_path))) line.push_back(f);
    for (std::size_t i = 0; i + static_cast<std::size_t>(std::max(1, o.keep_last)) < line.size(); ++i)
      fs::remove(line[i]);
    last_valid_seconds = seconds_since(t0);
    if (!sc.cut.empty())
      fmt::print("valid: {}\n", cut_report(sc.cut, source_limit(model), cfg.max_positions));
    fmt::print("valid step {}: loss {:.4f} nll {:.4f} ppl {:.2f} | BLEU {:.2f} on {} sentences ({}) | best {:.2f} "
               "(step {}) | {:.1f}s | saved {}{}\n",
               step, vl.loss, vl.nll, std::exp(vl.nll), sc.bleu.score, sc.hyps.size(),
               o.valid_beam == 1 ? std::string("greedy") : fmt::format("beam {}", o.valid_beam), best_bleu, best_step,
               last_valid_seconds, path.filename().string(), is_best ? " (best)" : "");
    std::fflush(stdout);
    metrics_write({{"event", "valid"},
                   {"step", step},
                   {"epoch", p.epoch},
                   {"valid_loss", vl.loss},
                   {"valid_nll", vl.nll},
                   {"valid_bleu", sc.bleu.score},
                   {"valid_bleu_sentences", sc.hyps.size()},
                   {"best_bleu", best_bleu},
                   {"best_step", best_step},
                   {"seconds", last_valid_seconds},
                   {"train_seconds", train_seconds()}});
  };

  // How long the end of the run takes (last validation + checkpoint, test decoding), to stop in time.
  auto reserve_seconds = [&] {
    double const test_n = o.final_test ? static_cast<double>(tc.test.src.size()) : 0.0;
    if (valid_decode_rate <= 0) return 0.2 * o.time_budget;  // nothing measured yet
    return last_valid_seconds + valid_decode_rate * o.decode.beam * test_n * 1.3 + 10.0;
  };

  std::int64_t window_tokens = 0, window_tgt = 0;
  double window_loss = 0, window_nll = 0;
  auto t_window = Clock::now();
  std::int64_t const steps_at_start = trainer.steps();
  std::int64_t const per_step = ranks * cfg.update_freq;  // batches one update consumes
  std::string stop_reason;
  bool interrupted = false;
  for (;; ++pos.epoch, pos.batch = 0) {
    if (o.max_epochs > 0 && pos.epoch > o.max_epochs) {
      stop_reason = fmt::format("{} epoch(s) done", o.max_epochs);
      break;
    }
    auto const order = batcher.epoch(static_cast<std::uint64_t>(pos.epoch));
    auto const n_batches = static_cast<std::int64_t>(order.size());
    // One step takes batches pos.batch .. pos.batch + per_step - 1 of the order: rank r the r-th run
    // of update_freq of them (fewer, or none, when the epoch has fewer left: a rank with none idles
    // through the step).
    for (; pos.batch < n_batches; pos.batch += per_step) {
      std::int64_t const done = trainer.steps();
      std::int64_t const mine = pos.batch + comm.rank() * cfg.update_freq;
      std::vector<Batch<Cpu>> batches;
      std::int64_t tokens = 0;
      for (std::int64_t i = mine; i < std::min(n_batches, mine + cfg.update_freq); ++i) {
        batches.push_back(batch_of(tc.train, order[static_cast<std::size_t>(i)]));
        tokens += batches.back().src_tokens + batches.back().target_tokens;
      }
      // Why to stop, agreed by all ranks (one small all-reduce): 1 step limit, 2 time budget (rank 0
      // measures the reserve for validation and the test), 4 a signal, 5 patience (rank 0's
      // validations); with the step's tokens.
      std::array<std::int64_t, 5> ctl{0, 0, 0, tokens, 0};
      if (o.max_steps > 0 && done >= o.max_steps) ctl[0] = 1;
      if (root && o.patience > 0 && validations_since_best >= o.patience) ctl[4] = 1;
      if (root && o.time_budget > 0 && seconds_since(tc.t_start) + reserve_seconds() >= o.time_budget) ctl[1] = 1;
      if (g_signal.load() != 0) ctl[2] = g_signal.load();
      if (ranks > 1) comm.allreduce_sum(std::span<std::int64_t>(ctl));
      if (ctl[0] != 0) stop_reason = fmt::format("step {} reached", o.max_steps);
      if (ctl[1] != 0)
        stop_reason = fmt::format("time budget {} (reserving {} for the end)", duration(o.time_budget),
                                  duration(reserve_seconds()));
      if (ctl[4] != 0)
        stop_reason = fmt::format("patience: no better validation BLEU than {:.2f} (step {}) in {} validations",
                                  best_bleu, best_step, o.patience);
      if (ctl[2] != 0) {
        stop_reason = g_signal.load() != 0 ? fmt::format("interrupted (signal {})", g_signal.load())
                                           : std::string("interrupted (a signal to another rank)");
        interrupted = true;
      }
      if (!stop_reason.empty()) break;

      // Training statistics of this step: each layer's gradient norm and output variance.
      bool const stats = o.stats_every > 0 && (done + 1) % o.stats_every == 0;
      std::optional<HiddenStateRecorder<Seq2Seq<Norm, Cpu>>> recorder;
      std::vector<LayerValue> grad_norms;
      if (stats) {
        recorder.emplace(model);
        trainer.gradient_observer = [&](ParameterList<Cpu> const& ps) { grad_norms = layer_gradient_norms(ps); };
      }
      StepStats s;
      try {
        s = trainer.step(std::span<Batch<Cpu> const>(batches));
      } catch (DivergenceError const& e) {
        if (!root) return kExitDiverged;  // every rank saw the same sums; rank 0 reports
        fmt::print(stderr,
                   "translate: training diverged at step {} (learning rate {:.4g}); last finite loss {:.4f}\n  {}\n"
                   "  the last good checkpoint is {}\n",
                   e.step, e.lr, e.last_finite_loss, e.what(),
                   last_good.empty() ? std::string("none (no checkpoint was written)") : last_good.string());
        metrics_write({{"event", "diverged"},
                       {"step", e.step},
                       {"lr", e.lr},
                       {"loss", std::isfinite(e.loss) ? json(e.loss) : json(nullptr)},
                       {"grad_norm", std::isfinite(e.grad_norm) ? json(e.grad_norm) : json(nullptr)},
                       {"last_finite_loss", std::isfinite(e.last_finite_loss) ? json(e.last_finite_loss) : json(nullptr)},
                       {"last_good_checkpoint", last_good.string()}});
        return kExitDiverged;
      }
      if (stats) {
        trainer.gradient_observer = nullptr;
        metrics_write(stats_event(s.step, grad_norms, recorder->variances()));
        recorder.reset();
      }
      window_loss += s.loss.loss;
      window_nll += s.loss.nll;
      window_tgt += s.loss.tokens;
      window_tokens += ctl[3];  // every rank's
      std::int64_t const step = s.step;
      if (step % o.log_every == 0) {
        double const secs = seconds_since(t_window);
        double const seconds_per_step = seconds_since(t_loop) / static_cast<double>(step - steps_at_start);
        double eta = std::numeric_limits<double>::infinity();
        if (o.max_steps > 0) eta = seconds_per_step * static_cast<double>(o.max_steps - step);
        if (o.max_epochs > 0)
          eta = std::min(eta, seconds_per_step * static_cast<double>((o.max_epochs - pos.epoch) * n_batches +
                                                                    n_batches - pos.batch - per_step) /
                                  static_cast<double>(per_step));
        if (o.time_budget > 0) eta = std::min(eta, o.time_budget - reserve_seconds() - seconds_since(tc.t_start));
        double const tps = static_cast<double>(window_tokens) / secs;
        fmt::print("step {:6d} | epoch {:3d} {:3.0f}% | loss {:.4f} | nll {:.4f} | lr {:.3e} | gnorm {:7.3f} | "
                   "{:6.0f} tok/s | {} | ETA {}\n",
                   step, pos.epoch,
                   100.0 * static_cast<double>(std::min(pos.batch + per_step, n_batches)) / static_cast<double>(n_batches),
                   window_loss / static_cast<double>(window_tgt), window_nll / static_cast<double>(window_tgt), s.lr,
                   s.grad_norm, tps, duration(seconds_since(tc.t_start)), duration(std::max(0.0, eta)));
        std::fflush(stdout);
        metrics_write({{"event", "train"},
                       {"step", step},
                       {"epoch", pos.epoch},
                       {"loss", window_loss / static_cast<double>(window_tgt)},
                       {"nll", window_nll / static_cast<double>(window_tgt)},
                       {"lr", s.lr},
                       {"grad_norm", s.grad_norm},
                       {"tokens_per_s", tps},
                       {"train_seconds", train_seconds()}});
        window_loss = window_nll = 0;
        window_tokens = window_tgt = 0;
        t_window = Clock::now();
      }
      if (root && step % o.checkpoint_every == 0) checkpoint(Position{pos.epoch, pos.batch + per_step});
    }
    if (!stop_reason.empty()) break;
  }
  if (root && trainer.steps() != last_ckpt_step) checkpoint(pos);
  fmt::print("stopped: {}; {} steps, {} of training\n", stop_reason, trainer.steps(), duration(train_seconds()));
  if (ranks > 1) {
    auto const& cs = comm.stats();
    fmt::print("communication: {:.1f} s in {} collectives, {:.1f} MB sent by this rank\n", cs.seconds, cs.calls,
               static_cast<double>(cs.bytes) / 1e6);
  }
  if (!root) return interrupted ? kExitInterrupted : 0;  // the test is rank 0's
  if (interrupted) {
    if (last_good.empty())  // a new run stopped before its first update: there is nothing to resume
      fmt::print("interrupted before the first update: nothing was saved (no checkpoint in {}); start again with the "
                 "same command, without --resume\n",
                 o.out.string());
    else
      fmt::print("interrupted: continue with `translate train --out {} --resume`\n", o.out.string());
    return kExitInterrupted;
  }
  if (!o.final_test) return 0;

  // The test split with the best checkpoint (the model in memory when it is the best, or when the
  // best is no longer on disk: then the label says which step is tested).
  std::int64_t tested_step = trainer.steps();
  if (best_step != trainer.steps() && tc.best_on_disk) {
    auto const file = io::SafetensorsFile::open(best_checkpoint_path(o.out).string());
    io::verify_checksum(file, true);
    io::load_parameters(file, model.parameters(), io::LoadOptions{.allow_extra = true});
    tested_step = best_step;
  } else if (best_step != trainer.steps()) {
    fmt::print("the best checkpoint (step {}) is not on disk: the test uses the last model (step {})\n", best_step,
               tested_step);
  }
  DecodeOptions test_decode = o.decode;
  test_decode.stop = &g_signal;  // Ctrl-C ends the test decoding (the checkpoints are written)
  Scores sc;
  try {
    sc = score(model, tc.vocab, tc.test, tc.test.src.size(), test_decode);
  } catch (Interrupted const&) {
    fmt::print("interrupted during the final test decoding; the checkpoints are complete: `translate evaluate --out "
               "{}` tests the best one\n",
               o.out.string());
    return kExitInterrupted;
  }
  write_lines(o.out / "test.hyp", sc.hyps);
  if (!sc.cut.empty()) fmt::print("test: {}\n", cut_report(sc.cut, source_limit(model), cfg.max_positions));
  fmt::print("\ntest ({} sentences, checkpoint of step {}, beam {}, length penalty {}; {}):\n  {}\n  {}\n",
             sc.hyps.size(), tested_step, o.decode.beam, o.decode.lenpen, duration(sc.seconds), sc.bleu.format(true),
             sc.chrf.format(true));
  metrics_write({{"event", "test"},
                 {"step", trainer.steps()},
                 {"checkpoint_step", tested_step},
                 {"bleu", sc.bleu.score},
                 {"bleu_text", sc.bleu.format(true)},
                 {"chrf", sc.chrf.score},
                 {"beam", o.decode.beam},
                 {"seconds", sc.seconds}});
  fmt::print("examples:\n");
  for (std::size_t i = 0; i < static_cast<std::size_t>(o.examples) && i < sc.hyps.size(); ++i) {
    std::size_t const k = i * sc.hyps.size() / static_cast<std::size_t>(o.examples);  // spread over the split
    fmt::print("  {}: {}\n  ref: {}\n  hyp: {}\n", cfg.src_lang, tc.test.src[k], tc.test.tgt[k], sc.hyps[k]);
  }
  fmt::print("total {}\n", duration(seconds_since(tc.t_start)));
  return 0;
}

}  // namespace translate
