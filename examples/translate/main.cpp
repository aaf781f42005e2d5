// translate: a small German-English NMT toolkit on lnformer (fairseq/Marian style, CPU).
//
//   translate prepare                         the default corpus (Debian gettext catalogs) into data/de-en
//   translate train                           SentencePiece + PreLN Transformer into runs/de-en, test BLEU
//   translate train --norm post --warmup 4000 --out runs/post
//   translate train --resume                  continue the run in --out exactly where it stopped
//   echo "Datei nicht gefunden" | translate translate --out runs/de-en
//   translate evaluate --out runs/de-en       BLEU (sacreBLEU default, with signature) and chrF on test
//   translate average --out runs/de-en --last 4 --output runs/de-en/checkpoint_avg.safetensors
//   translate fold-admin --checkpoint runs/admin/checkpoint_best.safetensors --output runs/admin/folded.safetensors
//   translate score --hyp test.hyp --ref data/de-en/test.en   BLEU and chrF of any hypothesis file
//
// Exit status: 0 done; 1 bad options, data or checkpoint (a clear message); 3 training diverged (the
// message gives the step, learning rate and last finite loss; the last good checkpoint is intact);
// 130 interrupted (SIGINT/SIGTERM: a checkpoint is written first, `--resume` continues; before the
// first update of a new run nothing is saved, and the message says so; a second signal stops at once).
//
// Files in --out: spm.model/.vocab (joint vocabulary, trained on the train split when missing; a new
// run reuses one only for the same --vocab-size and train split, which spm.json records),
// checkpoint_<step>.safetensors (the last --keep-last of the current line, and the one resumed from),
// checkpoint_best.safetensors (best validation BLEU: a link to its numbered file, checked on resume),
// abandoned/ (what a resume set aside: newer checkpoints of an abandoned continuation, a stale best),
// metrics.jsonl (one JSON object per line: train/valid/test/diverged/resume events), test.hyp (the
// test translations). A checkpoint holds the parameters, the optimizer state with its
// update count (the schedule step; dropout masks are a function of seed and step), the data position
// (epoch and index of the next batch in that epoch's shuffled order; the order is a function of the
// seed and the epoch), the best BLEU so far, the run configuration as JSON (translate/config: the
// norm name picks the model type when translate/evaluate rebuild it; the data directory and the
// SHA-256 of its split files, which --resume checks), the SHA-256 of spm.model, and a
// SHA-256 of all tensors and metadata that is verified on load.
//
// Data-parallel training: `mpirun -np N translate train ...` (built with MPI: libopenmpi-dev). Every
// rank reads the corpus (--data must exist on every host) and takes its own batches: in each step rank
// r trains on batch (position + r) of the epoch's order, so one step consumes N batches and the update
// is that of one process on all N (Trainer with a dist::Communicator). Rank 0 does everything else:
// the vocabulary (its bytes are sent to the others), validation, checkpoints, metrics.jsonl, the final
// test; the other ranks print nothing to stdout. Checkpoints store the position in batches, so a run
// resumes on any number of ranks. A rank that fails aborts the job (MPI_Abort); one that dies is
// noticed by mpirun, which ends the job with a non-zero status (ctest translate_mpi_* shows both).
//
// Tests: examples/translate/test_translate.sh (ctest translate_*): exact resume (N vs N/2 + resume +
// N/2, and a SIGTERM at whatever step + resume), truncated and flipped-byte checkpoints, divergence
// with a usable last good checkpoint, the reader's errors, translate and evaluate.
// Known limits: the time-budget reserve for the final beam decoding (greedy validation rate x beam x
// 1.3) is pessimistic (64 s reserved, 16 s used in the default run). Memory: the default run's
// resident set grew to about 14 GB because the CPU backend's primitive cache (2048 entries) and
// oneDNN's own (1024) kept megabytes per distinct GEMM shape alive, and token batches make thousands;
// both are now bounded (64 entries, oneDNN's cache off): 20 steps peak at 3.2 GB instead of 7.4 GB.
// The rest is the layers' own activation and gradient buffers (about 2 GB at 4,096 tokens, heaptrack).
// A whole default run has not been re-measured since; issue 8 (CPU performance) goes on from here.

#include "commands.hpp"

#ifdef LNF_WITH_MPI
#include <lnformer/dist/mpi.hpp>
#endif

#include <CLI/CLI.hpp>
#include <omp.h>

#include <unistd.h>

#include <csignal>
#include <cstdio>
#include <optional>

using namespace translate;

namespace {

// The first SIGINT/SIGTERM asks the training loop to checkpoint and stop (or ends the final test
// decoding); a second one stops the process at once, whatever it is doing (every file it writes is
// renamed into place whole, so nothing is left half-written). Only async-signal-safe calls here.
extern "C" void on_signal(int sig) {
  if (g_signal.exchange(sig) == 0) return;
  static constexpr char msg[] = "\ntranslate: second interrupt: stopping now\n";
  [[maybe_unused]] auto const n = ::write(STDERR_FILENO, msg, sizeof msg - 1);
  std::signal(sig, SIG_DFL);
  std::raise(sig);
}

void add_decode_options(CLI::App* app, DecodeOptions& d) {
  app->add_option("--beam", d.beam, "beam size (1: greedy)")->check(CLI::Range(1, 64))->capture_default_str();
  app->add_option("--lenpen", d.lenpen, "length penalty alpha: score = log p / len^alpha")->capture_default_str();
  app->add_option("--max-len-a", d.max_len_a, "max output tokens = a * source tokens + b")->capture_default_str();
  app->add_option("--max-len-b", d.max_len_b, "max output tokens = a * source tokens + b")->capture_default_str();
}

}  // namespace

int main(int argc, char** argv) {
  // Under mpirun (or another MPI launcher) the ranks form one data-parallel job.
#ifdef LNF_WITH_MPI
  std::optional<dist::MpiSession> mpi_session;
  std::optional<dist::Mpi> mpi_world;
  if (dist::launched_by_mpi()) {
    try {
      mpi_session.emplace(argc, argv);
      mpi_world.emplace();
    } catch (std::exception const& e) {
      fmt::print(stderr, "translate: cannot start MPI: {}\n", e.what());
      return kExitError;
    }
    g_comm = &*mpi_world;
    if (!g_comm->is_root()) std::freopen("/dev/null", "w", stdout);  // rank 0 reports progress
  }
#else
  if (char const* n = std::getenv("OMPI_COMM_WORLD_SIZE"); n != nullptr && std::string_view(n) != "1") {
    fmt::print(stderr, "translate: started by mpirun with {} ranks, but this build has no MPI (install "
                       "libopenmpi-dev and rebuild); each rank would train alone\n", n);
    return kExitError;
  }
#endif
  CLI::App app{"Train and run a small German-English Transformer (lnformer): prepare, train, translate, evaluate"};
  app.require_subcommand(1);
  int threads = 0;
  app.add_option("--threads", threads, "OpenMP threads (0: the OpenMP default)")
      ->check(CLI::NonNegativeNumber)
      ->capture_default_str();
  std::string gemm_math = "f32";
  app.add_option("--gemm-math", gemm_math,
                 "CPU GEMMs: f32, or bf16 (operands rounded to bf16, f32 accumulation and weights; oneDNN's bf16 "
                 "kernels on AVX-512 CPUs, emulated and not faster elsewhere)")
      ->check(CLI::IsMember({"f32", "bf16"}))
      ->capture_default_str();

  // prepare
  PrepareCli prep;
  auto* p = app.add_subcommand("prepare", "build the default corpus (Debian gettext catalogs), or check user files");
  p->add_option("--data", prep.data, "output directory: {train,valid,test}.{src,tgt} and manifest.json")->capture_default_str();
  p->add_option("--cache", prep.cache, "cache of downloaded and unpacked .deb files")->capture_default_str();
  p->add_option("--packages", prep.corpus.packages, "Debian packages (default: the pinned list)")->delimiter(',');
  p->add_option("--max-chars", prep.corpus.corpus.max_chars, "drop pairs with a side longer than this")->capture_default_str();
  p->add_flag("--offline", prep.corpus.offline, "use only .deb files already in the cache");
  p->add_option("--train-src", prep.train_src, "user data: training source file (one sentence per line)");
  p->add_option("--train-tgt", prep.train_tgt, "user data: training target file");
  p->add_option("--valid-src", prep.valid_src, "user data: validation source file");
  p->add_option("--valid-tgt", prep.valid_tgt, "user data: validation target file");
  p->add_option("--test-src", prep.test_src, "user data: test source file");
  p->add_option("--test-tgt", prep.test_tgt, "user data: test target file");
  p->add_option("--src-lang", prep.src_lang, "source language suffix of the written files")->capture_default_str();
  p->add_option("--tgt-lang", prep.tgt_lang, "target language suffix of the written files")->capture_default_str();

  // train
  TrainOptions to;
  RunConfig rc;
  std::string data = to.data.string(), out = to.out.string();
  int layers = 0;
  auto* t = app.add_subcommand("train", "train a model (SentencePiece vocabulary first when --out has none)");
  t->add_option("--data", data, "corpus directory (translate prepare; on --resume the checkpoint's by default)")
      ->capture_default_str();
  t->add_option("--out", out, "run directory: spm.model, checkpoints, metrics.jsonl")->capture_default_str();
  t->add_option("--src-lang", rc.src_lang, "source file suffix")->capture_default_str();
  t->add_option("--tgt-lang", rc.tgt_lang, "target file suffix")->capture_default_str();
  t->add_option("--vocab-size", to.vocab_size, "joint SentencePiece vocabulary size")->check(CLI::Range(16, 1000000))->capture_default_str();
  // The policy choices are checked here, against the lists: a wrong name is a usage error that lists
  // the valid ones.
  auto schedules = type_name_list(Schedules{});
  schedules.insert(schedules.begin(), "auto");
  t->add_option("--norm", rc.norm, "normalization policy: " + type_names(NormPolicies{}))
      ->check(CLI::IsMember(type_name_list(NormPolicies{})))
      ->capture_default_str();
  t->add_option("--optimizer", rc.optimizer, "optimizer: " + type_names(Optimizers{}))
      ->check(CLI::IsMember(type_name_list(Optimizers{})))
      ->capture_default_str();
  t->add_option("--schedule", rc.schedule,
                "learning-rate schedule: auto (constant without warm-up, else inverse_sqrt), " + type_names(Schedules{}))
      ->check(CLI::IsMember(schedules))
      ->capture_default_str();
  t->add_option("--lr", rc.lr, "(peak) learning rate")->check(CLI::PositiveNumber)->capture_default_str();
  t->add_option("--warmup", rc.warmup, "warm-up steps")->check(CLI::NonNegativeNumber)->capture_default_str();
  t->add_option("--schedule-steps", rc.schedule_steps, "end of the decaying schedules (default: --max-steps)")
      ->check(CLI::NonNegativeNumber);
  t->add_option("--beta2", rc.beta2, "Adam-family beta2")->check(CLI::Range(0.f, 0.9999999f))->capture_default_str();
  t->add_option("--weight-decay", rc.weight_decay, "weight decay (default: the optimizer's own)");
  t->add_option("--layers", layers, "encoder and decoder layers (sets both)")->check(CLI::PositiveNumber);
  t->add_option("--enc-layers", rc.enc_layers, "encoder layers")->check(CLI::NonNegativeNumber)->capture_default_str();
  t->add_option("--dec-layers", rc.dec_layers, "decoder layers")->check(CLI::NonNegativeNumber)->capture_default_str();
  t->add_option("--d-model", rc.d_model, "model width")->check(CLI::PositiveNumber)->capture_default_str();
  t->add_option("--ffn", rc.ffn, "feed-forward width")->check(CLI::PositiveNumber)->capture_default_str();
  t->add_option("--heads", rc.heads, "attention heads")->check(CLI::PositiveNumber)->capture_default_str();
  t->add_option("--dropout", rc.dropout, "dropout")->check(CLI::Range(0.f, 0.9f))->capture_default_str();
  t->add_option("--attention-dropout", rc.attention_dropout, "attention dropout")->check(CLI::Range(0.f, 0.9f))->capture_default_str();
  t->add_option("--activation-dropout", rc.activation_dropout, "activation dropout")->check(CLI::Range(0.f, 0.9f))->capture_default_str();
  t->add_option("--label-smoothing", rc.label_smoothing, "label smoothing")->check(CLI::Range(0.f, 0.9f))->capture_default_str();
  t->add_option("--max-tokens", rc.max_tokens, "padded tokens per batch")->check(CLI::PositiveNumber)->capture_default_str();
  t->add_option("--update-freq", rc.update_freq,
                "batches whose gradients make one update (gradient accumulation; per rank)")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  t->add_option("--max-len", rc.max_len, "leave out training pairs with a longer side (tokens)")->check(CLI::PositiveNumber)->capture_default_str();
  t->add_option("--clip-norm", rc.clip_norm, "gradient clipping norm (0: off)")->check(CLI::NonNegativeNumber)->capture_default_str();
  t->add_option("--seed", rc.seed, "seed of the initialisation, batch order and dropout")->capture_default_str();
  t->add_option("--max-epochs", to.max_epochs, "stop after this many epochs (0: no limit)")->check(CLI::NonNegativeNumber)->capture_default_str();
  t->add_option("--max-steps", to.max_steps, "stop after this many updates (0: no limit)")->check(CLI::NonNegativeNumber)->capture_default_str();
  t->add_option("--time-budget", to.time_budget,
                "seconds for the whole command, final test decoding included (0: no limit)")
      ->check(CLI::NonNegativeNumber)
      ->capture_default_str();
  t->add_option("--checkpoint-every", to.checkpoint_every, "steps between validations + checkpoints")->check(CLI::PositiveNumber)->capture_default_str();
  t->add_option("--keep-last", to.keep_last, "numbered checkpoints kept")->check(CLI::PositiveNumber)->capture_default_str();
  t->add_option("--patience", to.patience,
                "stop after this many validations without a better validation BLEU (0: never)")
      ->check(CLI::NonNegativeNumber)
      ->capture_default_str();
  t->add_option("--stats-every", to.stats_every,
                "steps between training statistics in metrics.jsonl: per layer, gradient norm and output "
                "variance (0: none)")
      ->check(CLI::NonNegativeNumber)
      ->capture_default_str();
  t->add_option("--log-every", to.log_every, "steps between progress lines")->check(CLI::PositiveNumber)->capture_default_str();
  t->add_option("--valid-bleu-sentences", to.valid_bleu_sentences, "validation sentences decoded for BLEU")->capture_default_str();
  t->add_option("--valid-beam", to.valid_beam, "beam for the validation BLEU (1: greedy)")->check(CLI::Range(1, 64))->capture_default_str();
  t->add_flag("--resume", to.resume,
              "continue from the latest checkpoint in --out with its configuration and data; --lr, --schedule, "
              "--warmup and --schedule-steps override it from there on (logged), other options must match it");
  t->add_option("--resume-from", to.resume_from,
                "continue from this checkpoint (as --resume; newer checkpoints in --out move to --out/abandoned)");
  t->add_option("--examples", to.examples, "example translations printed at the end")->capture_default_str();
  t->add_flag("!--no-test", to.final_test, "skip the final test decoding");
  add_decode_options(t, to.decode);

  // translate, evaluate
  InferOptions io_t, io_e;
  std::string out_t = io_t.out.string(), out_e = io_e.out.string(), data_e = io_e.data.string();
  auto* tr = app.add_subcommand("translate", "translate stdin (or --input), one sentence per line, to stdout (or --output)");
  tr->add_option("--out", out_t, "run directory (best checkpoint, else the latest)")->capture_default_str();
  tr->add_option("--checkpoint", io_t.checkpoint, "checkpoint file (default: from --out)");
  tr->add_option("--spm", io_t.spm, "SentencePiece model (default: next to the checkpoint)");
  tr->add_option("--input", io_t.input, "input file (default: stdin)");
  tr->add_option("--output", io_t.output, "output file (default: stdout)");
  add_decode_options(tr, io_t.decode);
  auto* ev = app.add_subcommand("evaluate", "BLEU and chrF of a checkpoint on a split");
  ev->add_option("--out", out_e, "run directory (best checkpoint, else the latest)")->capture_default_str();
  ev->add_option("--checkpoint", io_e.checkpoint, "checkpoint file (default: from --out)");
  ev->add_option("--spm", io_e.spm, "SentencePiece model (default: next to the checkpoint)");
  ev->add_option("--data", data_e, "corpus directory")->capture_default_str();
  ev->add_option("--split", io_e.split, "split")->capture_default_str();
  ev->add_option("--output", io_e.output, "write the translations here");
  add_decode_options(ev, io_e.decode);

  // score, average
  ScoreOptions so;
  std::string hyp, ref;
  auto* sc = app.add_subcommand("score", "BLEU and chrF of a hypothesis file against a reference file (sacreBLEU's "
                                         "defaults, with signatures)");
  sc->add_option("--hyp", hyp, "hypotheses, one sentence per line")->required();
  sc->add_option("--ref", ref, "references, one sentence per line (as many lines)")->required();
  AverageOptions ao;
  std::string out_a = ao.out.string(), output_a;
  auto* av = app.add_subcommand("average", "average the parameters of checkpoints of one run into a new checkpoint "
                                           "(for translate and evaluate)");
  av->add_option("--inputs", ao.inputs, "checkpoint files");
  av->add_option("--last", ao.last, "instead: the last N numbered checkpoints in --out")->check(CLI::PositiveNumber);
  av->add_option("--out", out_a, "run directory for --last")->capture_default_str();
  av->add_option("--output", output_a, "the averaged checkpoint to write")->required();

  FoldAdminOptions fo;
  std::string fold_in, fold_out;
  auto* fa = app.add_subcommand("fold-admin", "write an AdminLN checkpoint as the PostLN model that computes the same "
                                              "function (w folded into LayerNorms and first linear maps)");
  fa->add_option("--checkpoint", fold_in, "the AdminLN checkpoint")->required();
  fa->add_option("--output", fold_out, "the PostLN checkpoint to write")->required();

  // CLI11_PARSE would exit with CLI11's own codes (105 validation, 106 required, 109 extras, 114
  // arguments...); the documented status of every option error is 1. Help is not an error (0).
  try {
    app.parse(argc, argv);
  } catch (CLI::ParseError const& e) {
    return app.exit(e) == 0 ? 0 : kExitError;
  }
  int const ranks = g_comm->size();
  try {
    if (threads > 0) omp_set_num_threads(threads);
    cpu::set_gemm_math(cpu::parse_gemm_math(gemm_math));
    LNF_EXPECTS_AS(ValueError, ranks == 1 || *t, "only `translate train` runs on several ranks ({} here); run the "
                   "other commands as one process", ranks);
    if (*p) return cmd_prepare(prep);
    if (*t) {
      to.data = data;
      to.out = out;
      if (layers > 0) rc.enc_layers = rc.dec_layers = layers;
      for (auto const* opt : t->get_options())
        if (opt->count() > 0) to.given.insert(opt->get_name());
      std::signal(SIGINT, on_signal);
      std::signal(SIGTERM, on_signal);
      return cmd_train(to, rc);
    }
    if (*tr) {
      io_t.out = out_t;
      return cmd_translate(io_t);
    }
    if (*sc) {
      so.hyp = hyp;
      so.ref = ref;
      return cmd_score(so);
    }
    if (*av) {
      ao.out = out_a;
      ao.output = output_a;
      return cmd_average(ao);
    }
    if (*fa) {
      fo.checkpoint = fold_in;
      fo.output = fold_out;
      return cmd_fold_admin(fo);
    }
    io_e.out = out_e;
    io_e.data = data_e;
    return cmd_evaluate(io_e);
  } catch (std::exception const& e) {
    if (ranks == 1) {
      fmt::print(stderr, "translate: {}\n", e.what());
      return kExitError;
    }
    // The other ranks may be waiting in a collective: end the whole job.
    fmt::print(stderr, "translate: rank {} of {}: {}\n", g_comm->rank(), ranks, e.what());
    std::fflush(stderr);
    g_comm->abort(kExitError);
  }
}

