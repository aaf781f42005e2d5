// translate: a small German-English NMT toolkit on lnformer (fairseq/Marian style, CPU).
//
//   translate prepare                         the default corpus (Debian gettext catalogs) into data/de-en
//   translate train                           SentencePiece + PreLN Transformer into runs/de-en, test BLEU
//   translate train --norm post --warmup 4000 --out runs/post
//   translate train --resume                  continue the run in --out exactly where it stopped
//   echo "Datei nicht gefunden" | translate translate --out runs/de-en
//   translate evaluate --out runs/de-en       BLEU (sacreBLEU default, with signature) and chrF on test
//
// Exit status: 0 done; 1 bad options, data or checkpoint (a clear message); 3 training diverged (the
// message gives the step, learning rate and last finite loss; the last good checkpoint is intact);
// 130 interrupted (SIGINT/SIGTERM: a checkpoint is written first, `--resume` continues).
//
// Files in --out: spm.model/.vocab (joint vocabulary, trained on the train split when missing),
// checkpoint_<step>.safetensors (the last --keep-last), checkpoint_best.safetensors (best validation
// BLEU), metrics.jsonl (one JSON object per line: train/valid/test/diverged/resume events),
// test.hyp (the test translations). A checkpoint holds the parameters, the optimizer state with its
// update count (the schedule step; dropout masks are a function of seed and step), the data position
// (epoch and index of the next batch in that epoch's shuffled order; the order is a function of the
// seed and the epoch), the best BLEU so far, the run configuration as JSON (translate/config: the
// norm name picks the model type when translate/evaluate rebuild it), the SHA-256 of spm.model, and a
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

#include "debian_corpus.hpp"

#include <lnformer/data/parallel_corpus.hpp>
#include <lnformer/data/sentencepiece.hpp>
#include <lnformer/data/token_batches.hpp>
#include <lnformer/io/checksum.hpp>
#include <lnformer/lnformer.hpp>
#include <lnformer/metrics/bleu.hpp>
#include <lnformer/metrics/chrf.hpp>
#include <lnformer/analysis/training_stats.hpp>
#include <lnformer/train/trainer.hpp>
#ifdef LNF_WITH_MPI
#include <lnformer/dist/mpi.hpp>
#endif

#include <CLI/CLI.hpp>
#include <fmt/format.h>
#include <nlohmann/json.hpp>
#include <omp.h>

#include <algorithm>
#include <atomic>
#include <charconv>
#include <chrono>
#include <cmath>
#include <csignal>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <memory>
#include <numeric>
#include <optional>
#include <string>
#include <variant>

#include <unistd.h>
#include <vector>

using namespace lnformer;
namespace fs = std::filesystem;
using json = nlohmann::json;
using Clock = std::chrono::steady_clock;
using Ids = std::vector<std::int32_t>;

namespace {

constexpr int kExitError = 1, kExitDiverged = 3, kExitInterrupted = 130;
constexpr std::string_view kFormat = "1";

// The ranks of this run: one process, or the MPI job (set in main).
dist::SingleProcess g_single;
dist::Communicator* g_comm = &g_single;

// --- the run's configuration, saved as JSON in every checkpoint ------------------------------------

struct RunConfig {
  std::string norm = "pre";
  std::string optimizer = "adam";
  std::string schedule = "auto";  ///< resolved before saving: constant without warm-up, else inverse_sqrt
  float lr = 1e-3f;
  std::int64_t warmup = 0;
  std::int64_t schedule_steps = 0;  ///< `total` of the decaying schedules (default: --max-steps)
  float beta2 = 0.98f;
  float weight_decay = -1.f;  ///< < 0: the optimizer's default
  int enc_layers = 3;
  int dec_layers = 3;
  std::int64_t d_model = 256;
  std::int64_t ffn = 1024;
  std::int64_t heads = 4;
  float dropout = 0.1f;
  float attention_dropout = 0.f;
  float activation_dropout = 0.f;
  float label_smoothing = 0.1f;
  float clip_norm = 1.f;
  std::int64_t max_tokens = 4096;
  std::int64_t update_freq = 1;  ///< batches (per rank) whose gradients make one update
  std::int64_t max_len = 128;  ///< training pairs with a longer side (SentencePiece tokens) are left out
  std::int64_t max_positions = 1024;
  std::uint64_t seed = 1;
  std::int64_t vocab = 0;  ///< the SentencePiece model's size
  std::string src_lang = "de";
  std::string tgt_lang = "en";
  std::string spm_sha256;
};
NLOHMANN_DEFINE_TYPE_NON_INTRUSIVE_WITH_DEFAULT(RunConfig, norm, optimizer, schedule, lr, warmup, schedule_steps, beta2,
                                                weight_decay, enc_layers, dec_layers, d_model, ffn, heads, dropout,
                                                attention_dropout, activation_dropout, label_smoothing, clip_norm,
                                                max_tokens, update_freq, max_len, max_positions, seed, vocab, src_lang, tgt_lang,
                                                spm_sha256)

ModelConfig model_config(RunConfig const& c) {
  return ModelConfig{.enc_layers = c.enc_layers,
                     .dec_layers = c.dec_layers,
                     .d_model = c.d_model,
                     .ffn = c.ffn,
                     .heads = c.heads,
                     .vocab = c.vocab,
                     .max_positions = c.max_positions,
                     .dropout = c.dropout,
                     .attention_dropout = c.attention_dropout,
                     .activation_dropout = c.activation_dropout,
                     .label_smoothing = c.label_smoothing};
}

// --- the schedule, chosen by name from the Schedules list (one variant type: fewer instantiations) --

template <class L>
struct VariantOf;
template <class... Ts>
struct VariantOf<TypeList<Ts...>> {
  using type = std::variant<Ts...>;
};

struct AnySchedule {
  static constexpr std::string_view name = "any";
  VariantOf<Schedules>::type s;
  float operator()(std::int64_t t) const {
    return std::visit([&](auto const& x) { return x(t); }, s);
  }
  void validate() const {
    std::visit([](auto const& x) { x.validate(); }, s);
  }
  [[nodiscard]] std::string_view which() const {
    return std::visit([](auto const& x) { return std::remove_cvref_t<decltype(x)>::name; }, s);
  }
};
static_assert(Schedule<AnySchedule>);

AnySchedule make_schedule(RunConfig const& c) {
  return dispatch(
      Schedules{}, c.schedule,
      [&](auto tag) {
        using S = typename decltype(tag)::type;
        if constexpr (requires(S s) { s.total; })
          LNF_EXPECTS_AS(ValueError, c.schedule_steps > 0,
                         "--schedule {} decays to its end: give --max-steps or --schedule-steps", S::name);
        if constexpr (std::is_same_v<S, InverseSqrt>)
          LNF_EXPECTS_AS(ValueError, c.warmup >= 1, "--schedule inverse_sqrt needs --warmup >= 1");
        AnySchedule a{configure_schedule<S>({.lr = c.lr, .warmup = c.warmup, .total = c.schedule_steps})};
        a.validate();
        return a;
      },
      "--schedule");
}

template <class Opt>
Opt make_optimizer(RunConfig const& c) {
  Opt o{};
  if constexpr (requires { o.beta2; }) o.beta2 = c.beta2;
  if (c.weight_decay >= 0) o.weight_decay = c.weight_decay;
  return o;
}

// --- small helpers -------------------------------------------------------------------------------

std::string duration(double s) {
  if (!std::isfinite(s) || s < 0) return "?";
  auto const t = static_cast<long>(s + 0.5);
  if (t >= 3600) return fmt::format("{}h{:02d}m", t / 3600, (t / 60) % 60);
  if (t >= 60) return fmt::format("{}m{:02d}s", t / 60, t % 60);
  return fmt::format("{}s", t);
}

double seconds_since(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }

std::atomic<int> g_signal{0};
extern "C" void on_signal(int sig) { g_signal.store(sig); }

void write_lines(fs::path const& path, std::vector<std::string> const& lines) {
  fs::path const tmp = path.string() + ".tmp";
  {
    std::ofstream f(tmp, std::ios::binary | std::ios::trunc);
    LNF_EXPECTS_AS(IoError, f.good(), "cannot write '{}'", tmp.string());
    for (auto const& l : lines) f << l << '\n';
    f.flush();
    LNF_EXPECTS_AS(IoError, f.good(), "error writing '{}'", tmp.string());
  }
  fs::rename(tmp, path);
}

/// checkpoint_<step>.safetensors in dir, by step.
std::map<std::int64_t, fs::path> numbered_checkpoints(fs::path const& dir) {
  std::map<std::int64_t, fs::path> out;
  if (!fs::is_directory(dir)) return out;
  for (auto const& e : fs::directory_iterator(dir)) {
    auto const name = e.path().filename().string();
    if (!name.starts_with("checkpoint_") || !name.ends_with(".safetensors")) continue;
    auto const num = name.substr(11, name.size() - 11 - 12);
    std::int64_t step = 0;
    auto const [end, ec] = std::from_chars(num.data(), num.data() + num.size(), step);
    if (ec == std::errc{} && end == num.data() + num.size()) out.emplace(step, e.path());
  }
  return out;
}

fs::path checkpoint_path(fs::path const& dir, std::int64_t step) {
  return dir / fmt::format("checkpoint_{}.safetensors", step);
}

/// The checkpoint translate/evaluate use by default: best, else the latest.
fs::path default_checkpoint(fs::path const& dir) {
  if (fs::exists(dir / "checkpoint_best.safetensors")) return dir / "checkpoint_best.safetensors";
  auto const all = numbered_checkpoints(dir);
  LNF_EXPECTS_AS(IoError, !all.empty(), "no checkpoint in '{}' (train one with `translate train --out {}`)",
                 dir.string(), dir.string());
  return all.rbegin()->second;
}

std::string const& meta_at(std::map<std::string, std::string> const& meta, std::string const& key,
                           std::string const& source) {
  auto it = meta.find(key);
  LNF_EXPECTS_AS(IoError, it != meta.end(), "'{}' is not a translate checkpoint: its metadata has no '{}'", source,
                 key);
  return it->second;
}

std::int64_t meta_int(std::map<std::string, std::string> const& meta, std::string const& key, std::string const& source) {
  auto const& s = meta_at(meta, key, source);
  std::int64_t v = 0;
  auto const [end, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  LNF_EXPECTS_AS(IoError, ec == std::errc{} && end == s.data() + s.size(), "'{}': metadata {} = '{}' is not an integer",
                 source, key, s);
  return v;
}

RunConfig config_of(std::map<std::string, std::string> const& meta, std::string const& source) {
  LNF_EXPECTS_AS(IoError, meta_at(meta, "translate/format", source) == kFormat,
                 "'{}': translate checkpoint format '{}' is not the supported '{}'", source,
                 meta_at(meta, "translate/format", source), kFormat);
  try {
    return json::parse(meta_at(meta, "translate/config", source)).get<RunConfig>();
  } catch (json::exception const& e) {
    throw IoError(fmt::format("'{}': translate/config is not a valid configuration: {}", source, e.what()));
  }
}

// --- data ----------------------------------------------------------------------------------------

struct Split {
  std::string name;
  std::vector<std::string> src, tgt;
  std::vector<Ids> src_ids, tgt_ids;
};

Split read_split(fs::path const& dir, std::string const& name, RunConfig const& c) {
  auto const sp = dir / fmt::format("{}.{}", name, c.src_lang), tp = dir / fmt::format("{}.{}", name, c.tgt_lang);
  LNF_EXPECTS_AS(IoError, fs::exists(sp) && fs::exists(tp),
                 "no {} split in '{}' ({} and {}): run `translate prepare --data {}` first, or give --data", name,
                 dir.string(), sp.filename().string(), tp.filename().string(), dir.string());
  auto corpus = read_parallel_corpus(sp.string(), tp.string());
  auto const& st = corpus.stats;
  if (st.empty + st.too_long > 0)
    fmt::print("{}: {} lines, {} pairs kept; skipped {} with an empty side and {} longer than 1024 bytes\n", name,
               st.lines, st.kept, st.empty, st.too_long);
  Split s;
  s.name = name;
  s.src = std::move(corpus.src);
  s.tgt = std::move(corpus.tgt);
  return s;
}

void encode(Split& s, SentencePieceVocab const& vocab) {
  s.src_ids.clear();
  s.tgt_ids.clear();
  for (auto const& x : s.src) s.src_ids.push_back(vocab.encode(x));
  for (auto const& x : s.tgt) s.tgt_ids.push_back(vocab.encode(x));
}

TokenBatcher make_batcher(Split const& s, RunConfig const& c, std::int64_t max_len) {
  std::vector<std::int64_t> sl, tl;
  for (auto const& x : s.src_ids) sl.push_back(static_cast<std::int64_t>(x.size()));
  for (auto const& x : s.tgt_ids) tl.push_back(static_cast<std::int64_t>(x.size()));
  return TokenBatcher(sl, tl, {.max_tokens = std::max(c.max_tokens, max_len + 1), .max_len = max_len, .seed = c.seed});
}

Batch<Cpu> batch_of(Split const& s, std::vector<std::size_t> const& idx) {
  std::vector<Ids> src, tgt;
  src.reserve(idx.size());
  tgt.reserve(idx.size());
  for (auto i : idx) {
    src.push_back(s.src_ids[i]);
    tgt.push_back(s.tgt_ids[i]);
  }
  return make_batch<Cpu>(src, tgt);
}

// --- decoding and evaluation ---------------------------------------------------------------------

struct DecodeOptions {
  int beam = 5;
  double lenpen = 1.0;
  double max_len_a = 1.2;
  std::int64_t max_len_b = 10;
  std::int64_t batch_tokens = 2048;  ///< source tokens x beam per decoding batch (sentences sorted by length)
};

/// Translations of `src` (token ids), in input order. Empty sources give empty outputs.
template <class Norm>
std::vector<Ids> decode_all(Seq2Seq<Norm, Cpu>& model, std::vector<Ids> const& src, DecodeOptions const& o) {
  std::vector<Ids> out(src.size());
  std::vector<std::size_t> order;
  for (std::size_t i = 0; i < src.size(); ++i)
    if (!src[i].empty()) order.push_back(i);
  std::stable_sort(order.begin(), order.end(), [&](std::size_t a, std::size_t b) { return src[a].size() < src[b].size(); });
  BeamOptions const bo{.beam = o.beam, .length_penalty = o.lenpen, .max_len_a = o.max_len_a, .max_len_b = o.max_len_b};
  auto const cap = static_cast<std::size_t>(std::max<std::int64_t>(1, model.config().max_positions - 2));
  for (std::size_t b = 0; b < order.size();) {
    std::size_t e = b;
    std::vector<Ids> chunk;
    while (e < order.size()) {
      auto const len = std::min(src[order[e]].size(), cap) + 1;
      if (!chunk.empty() && static_cast<std::int64_t>((chunk.size() + 1) * len) * o.beam > o.batch_tokens) break;
      Ids s = src[order[e]];
      if (s.size() > cap) s.resize(cap);
      chunk.push_back(std::move(s));
      ++e;
    }
    auto hyp = beam_decode(model, chunk, bo);
    for (std::size_t k = 0; k < hyp.size(); ++k) out[order[b + k]] = std::move(hyp[k]);
    b = e;
  }
  return out;
}

struct Scores {
  BleuScore bleu;
  ChrfScore chrf;
  std::vector<std::string> hyps;
  double seconds = 0;
};

template <class Norm>
Scores score(Seq2Seq<Norm, Cpu>& model, SentencePieceVocab const& vocab, Split const& s, std::size_t limit,
             DecodeOptions const& o) {
  auto const t0 = Clock::now();
  std::size_t const n = std::min(limit, s.src_ids.size());
  std::vector<Ids> const src(s.src_ids.begin(), s.src_ids.begin() + static_cast<std::ptrdiff_t>(n));
  auto const ids = decode_all(model, src, o);
  Scores r;
  for (auto const& h : ids) r.hyps.push_back(vocab.decode(h));
  std::vector<std::string> const refs(s.tgt.begin(), s.tgt.begin() + static_cast<std::ptrdiff_t>(n));
  r.bleu = corpus_bleu(r.hyps, refs);
  r.chrf = corpus_chrf(r.hyps, refs);
  r.seconds = seconds_since(t0);
  return r;
}

struct LossEval {
  double loss = 0, nll = 0;  ///< per target token
  double seconds = 0;
};

template <class Norm>
LossEval valid_loss(Seq2Seq<Norm, Cpu>& model, Split const& s, TokenBatcher const& batcher) {
  auto const t0 = Clock::now();
  LossStats sum;
  for (auto const& idx : batcher.sorted()) {
    auto const l = model.forward(batch_of(s, idx), ForwardContext{.training = false});
    sum.loss += l.loss;
    sum.nll += l.nll;
    sum.tokens += l.tokens;
  }
  return {sum.mean_loss(), sum.mean_nll(), seconds_since(t0)};
}

/// Rebuilds the model a checkpoint was trained with (its norm picks the type) and calls f(model, cfg).
template <class F>
int with_checkpoint_model(fs::path const& ckpt, F&& f) {
  auto const file = io::SafetensorsFile::open(ckpt.string());
  io::verify_checksum(file, /*required=*/true);
  RunConfig const cfg = config_of(file.metadata(), file.source());
  return dispatch(
      NormPolicies{}, cfg.norm,
      [&](auto tag) {
        using Norm = typename decltype(tag)::type;
        Seq2Seq<Norm, Cpu> model(model_config(cfg), cfg.seed);
        io::load_parameters(file, model.parameters(), io::LoadOptions{.allow_extra = true});
        return f(model, cfg);
      },
      "--norm (of the checkpoint)");
}

std::unique_ptr<SentencePieceVocab> load_vocab(fs::path const& spm, RunConfig const& cfg, fs::path const& ckpt) {
  LNF_EXPECTS_AS(IoError, fs::exists(spm), "no SentencePiece model '{}' (it is written next to the checkpoints; give --spm)",
                 spm.string());
  auto const sha = translate::detail::file_sha256(spm);
  LNF_EXPECTS_AS(IoError, cfg.spm_sha256.empty() || sha == cfg.spm_sha256,
                 "'{}' is not the vocabulary '{}' was trained with (SHA-256 {} but the checkpoint says {})",
                 spm.string(), ckpt.string(), sha, cfg.spm_sha256);
  auto v = std::make_unique<SentencePieceVocab>(spm.string());
  LNF_EXPECTS_AS(IoError, v->size() == cfg.vocab, "'{}' has {} pieces but the model was trained with {}", spm.string(),
                 v->size(), cfg.vocab);
  return v;
}

// --- train ---------------------------------------------------------------------------------------

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
};

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
  }

 private:
  fs::path path_;
  std::ofstream f_;
};

/// metrics.jsonl's "stats" event: per layer (encoder then decoder, by index) the gradient norm before
/// clipping and the variance of its output, both of the step's last batch.
json stats_event(std::int64_t step, std::vector<LayerValue> const& grad_norms, std::vector<LayerValue> const& variances) {
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

  if constexpr (std::is_same_v<Norm, AdminLN>) {
    // Admin: w from one ordinary training batch (the first of epoch 1), profiled in training mode.
    // Rank 0 profiles; the others apply its profile.
    auto const first = batcher.epoch(1).front();
    AdminProfile prof;
    if (root) prof = admin_profile(model, batch_of(tc.train, first), ForwardContext{.seed = cfg.seed});
    for (auto* v : {&prof.encoder, &prof.decoder}) dist::broadcast_vector(comm, *v);
    apply_admin_profile(model, prof);
    fmt::print("admin: w profiled on the first batch ({} sentences)\n", first.size());
  }

  // With several ranks, the Trainer starts every rank from rank 0's parameters and all-reduces.
  Trainer trainer(model, make_optimizer<Opt>(cfg), make_schedule(cfg),
                  TrainerOptions{.clip_norm = cfg.clip_norm, .seed = cfg.seed, .comm = &comm});
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
    metrics_write({{"event", "resume"}, {"step", trainer.steps()}, {"from", tc.resume_path}, {"ranks", ranks}});

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
    fs::path const path = checkpoint_path(o.out, step);
    trainer.save_checkpoint(path.string(), meta);
    if (is_best) trainer.save_checkpoint((o.out / "checkpoint_best.safetensors").string(), meta);
    last_good = path;
    last_ckpt_step = step;
    auto all = numbered_checkpoints(o.out);
    while (static_cast<int>(all.size()) > std::max(1, o.keep_last)) {
      fs::remove(all.begin()->second);
      all.erase(all.begin());
    }
    last_valid_seconds = seconds_since(t0);
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
    fmt::print("interrupted: continue with `translate train --out {} --resume`\n", o.out.string());
    return kExitInterrupted;
  }
  if (!o.final_test) return 0;

  // The test split with the best checkpoint.
  if (best_step != trainer.steps() && fs::exists(o.out / "checkpoint_best.safetensors")) {
    auto const file = io::SafetensorsFile::open((o.out / "checkpoint_best.safetensors").string());
    io::verify_checksum(file, true);
    io::load_parameters(file, model.parameters(), io::LoadOptions{.allow_extra = true});
  }
  auto const sc = score(model, tc.vocab, tc.test, tc.test.src.size(), o.decode);
  write_lines(o.out / "test.hyp", sc.hyps);
  fmt::print("\ntest ({} sentences, checkpoint of step {}, beam {}, length penalty {}; {}):\n  {}\n  {}\n",
             sc.hyps.size(), best_step, o.decode.beam, o.decode.lenpen, duration(sc.seconds), sc.bleu.format(true),
             sc.chrf.format(true));
  metrics_write({{"event", "test"},
                 {"step", trainer.steps()},
                 {"checkpoint_step", best_step},
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

int cmd_train(TrainOptions const& o, RunConfig cli_cfg) {
  auto const t_start = Clock::now();
  dist::Communicator& comm = *g_comm;
  bool const root = comm.is_root();
  // Rank 0 owns --out: it finds the checkpoint to resume, settles the configuration and trains the
  // vocabulary; the other ranks receive the results (no shared file system is needed for --out).
  std::string resume_path;
  RunConfig cfg = cli_cfg;
  fs::path const spm = o.out / "spm.model";
  if (root) {
    fs::create_directories(o.out);
    for (auto const& e : fs::directory_iterator(o.out))  // temporary files of an interrupted save
      if (e.path().extension() == ".tmp") fs::remove(e.path());
    if (o.resume || !o.resume_from.empty()) {
      fs::path path = o.resume_from;
      if (path.empty()) {
        auto const all = numbered_checkpoints(o.out);
        LNF_EXPECTS_AS(IoError, !all.empty(), "--resume: no checkpoint_<step>.safetensors in '{}'", o.out.string());
        path = all.rbegin()->second;
      }
      auto const file = io::SafetensorsFile::open(path.string());
      io::verify_checksum(file, /*required=*/true);
      cfg = config_of(file.metadata(), file.source());
      resume_path = file.source();
      fmt::print("--resume: the configuration of {} is used (model, optimizer, schedule, data, seed)\n", path.string());
    } else {
      LNF_EXPECTS_AS(IoError, numbered_checkpoints(o.out).empty(),
                     "'{}' already holds checkpoints: continue with --resume, or choose another --out", o.out.string());
      if (cfg.schedule == "auto") cfg.schedule = cfg.warmup > 0 ? "inverse_sqrt" : "constant";
      if (cfg.schedule_steps == 0) cfg.schedule_steps = o.max_steps;
    }
  }

  // Every rank reads the corpus (rank 0 first: a missing split is reported before any vocabulary work).
  Split train, valid, test;
  auto read_splits = [&] {
    train = read_split(o.data, "train", cfg);
    valid = read_split(o.data, "valid", cfg);
    test = read_split(o.data, "test", cfg);
    fmt::print("data {}: train {}, valid {}, test {} pairs ({} -> {})\n", o.data.string(), train.src.size(),
               valid.src.size(), test.src.size(), cfg.src_lang, cfg.tgt_lang);
  };
  if (root) read_splits();

  std::string spm_bytes;  // the vocabulary file, sent from rank 0 to the others
  if (root) {
    if (!fs::exists(spm)) {
      LNF_EXPECTS_AS(IoError, resume_path.empty(),
                     "--resume: '{}' is missing (the checkpoints need the vocabulary they were trained with)",
                     spm.string());
      auto const t0 = Clock::now();
      auto const d = o.data;
      train_sentencepiece({(d / ("train." + cfg.src_lang)).string(), (d / ("train." + cfg.tgt_lang)).string()},
                          (o.out / "spm").string(),
                          {.vocab_size = o.vocab_size, .threads = std::max(1, omp_get_max_threads()),
                           .seed = static_cast<std::uint32_t>(cfg.seed)});
      fmt::print("SentencePiece: joint unigram vocabulary of {} trained on the train split in {:.1f}s -> {}\n",
                 o.vocab_size, seconds_since(t0), spm.string());
    }
    std::string const spm_sha = translate::detail::file_sha256(spm);
    LNF_EXPECTS_AS(IoError, cfg.spm_sha256.empty() || cfg.spm_sha256 == spm_sha,
                   "'{}' is not the vocabulary of the checkpoint being resumed (SHA-256 differs)", spm.string());
    cfg.spm_sha256 = spm_sha;
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

  TrainContext tc{o, cfg, t_start, vocab, train, valid, test, resume_path};
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

// --- translate / evaluate ------------------------------------------------------------------------

struct InferOptions {
  fs::path out = "runs/de-en";
  std::string checkpoint, spm, input, output;
  fs::path data = "data/de-en";
  std::string split = "test";
  DecodeOptions decode;
};

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
      auto const bad = detail::first_invalid_utf8(l);
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

// --- prepare -------------------------------------------------------------------------------------

struct PrepareCli {
  translate::PrepareOptions corpus;
  std::string data = "data/de-en", cache = "data/cache/debian";
  std::string train_src, train_tgt, valid_src, valid_tgt, test_src, test_tgt;
  std::string src_lang = "de", tgt_lang = "en";
};

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
      fmt::print("{}: {} lines, {} pairs kept, {} skipped with an empty side, {} longer than 1024 bytes\n", name,
                 c.stats.lines, c.stats.kept, c.stats.empty, c.stats.too_long);
      m["splits"][name] = {{"source", user[2 * k]}, {"target", user[2 * k + 1]}, {"lines", c.stats.lines},
                           {"pairs", c.stats.kept}, {"empty", c.stats.empty}, {"too_long", c.stats.too_long}};
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
  t->add_option("--data", data, "corpus directory (translate prepare)")->capture_default_str();
  t->add_option("--out", out, "run directory: spm.model, checkpoints, metrics.jsonl")->capture_default_str();
  t->add_option("--src-lang", rc.src_lang, "source file suffix")->capture_default_str();
  t->add_option("--tgt-lang", rc.tgt_lang, "target file suffix")->capture_default_str();
  t->add_option("--vocab-size", to.vocab_size, "joint SentencePiece vocabulary size")->check(CLI::Range(16, 1000000))->capture_default_str();
  t->add_option("--norm", rc.norm, "normalization policy: " + type_names(NormPolicies{}))->capture_default_str();
  t->add_option("--optimizer", rc.optimizer, "optimizer: " + type_names(Optimizers{}))->capture_default_str();
  t->add_option("--schedule", rc.schedule,
                "learning-rate schedule: auto (constant without warm-up, else inverse_sqrt), " + type_names(Schedules{}))
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
  t->add_flag("--resume", to.resume, "continue from the latest checkpoint in --out (its configuration is used)");
  t->add_option("--resume-from", to.resume_from, "continue from this checkpoint");
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

  CLI11_PARSE(app, argc, argv);
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
      std::signal(SIGINT, on_signal);
      std::signal(SIGTERM, on_signal);
      return cmd_train(to, rc);
    }
    if (*tr) {
      io_t.out = out_t;
      return cmd_translate(io_t);
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
