#pragma once
// Trainer<Model, Optimizer, Schedule>: one training step bundled for users who do not write their own
// loop. It only composes public parts (Model::forward/backward, clip_grad_norm, the optimizer and the
// schedule), so a hand-written loop can do exactly the same:
//
//   model.zero_grad();
//   stats = model.train_step(batch, {.training = true, .seed = seed, .pass = step});  // forward + backward
//   norm  = clip_grad_norm(params, clip_norm);            // the norm before clipping
//   check: loss and norm finite, loss not exploding       // else DivergenceError, nothing updated
//   opt.step(state, params, schedule(step));
//
// Before the first step, trainer.calibrate(batch) runs the policy's calibrate hook where it has one
// (AdminLN's profiling; calibrate_norm(model, batch, ctx) in a hand-written loop).
//
// Gradient accumulation: step(std::span of K batches) makes one update from all of them (the
// gradient of the mean loss over their target tokens), as fairseq's --update-freq K does.
//
// The step number is the optimizer state's update count + 1, so a Trainer whose parameters and
// optimizer state were loaded from a checkpoint (load_checkpoint) continues the schedule and the
// dropout masks where the saved run stopped.
//
// Data parallelism (TrainerOptions::comm, a dist::Communicator such as dist::Mpi): every rank holds
// the whole model and gives step() its own batch; the update is the one single-process training
// would make on the concatenation of all ranks' batches. Per step: forward on the local batch; one
// all-reduce of (loss, nll, target tokens); backward scaled by 1 / (global target tokens), during
// which the gradients are summed over the ranks in buckets as each layer completes
// (dist::GradientReducer; the embeddings' after backward); then clipping, the
// divergence check and the update, identical on every rank because their inputs are. A rank with no
// batch left (the end of an epoch) calls step_idle() and contributes nothing. The constructor
// broadcasts rank 0's parameters; save_checkpoint writes on rank 0 only; load_checkpoint reads on
// rank 0 and broadcasts parameters, optimizer state and metadata (so other hosts need no copy of the
// file). Dropout masks of rank r > 0 use seed + r * 0x9E3779B97F4A7C15 (rank 0 keeps the
// single-process masks), so ranks do not drop the same positions of different sentences.
//
// Divergence: a non-finite loss or gradient norm, or (when explode_factor > 0) a mean loss above
// explode_factor times the lowest mean loss seen so far, throws DivergenceError carrying the step,
// the learning rate and the last finite loss, before the update: the parameters are those of the
// last good step.

#include <lnformer/core/error.hpp>
#include <lnformer/dist/communicator.hpp>
#include <lnformer/io/checksum.hpp>
#include <lnformer/io/parameters.hpp>
#include <lnformer/io/safetensors.hpp>
#include <lnformer/model/stack.hpp>
#include <lnformer/nn/parameter.hpp>
#include <lnformer/norm/concept.hpp>
#include <lnformer/optim/clip.hpp>
#include <lnformer/optim/concept.hpp>
#include <lnformer/optim/state_io.hpp>
#include <lnformer/schedule/concept.hpp>

#include <fmt/format.h>

#include <array>
#include <cmath>
#include <cstdint>
#include <functional>
#include <limits>
#include <map>
#include <optional>
#include <string>
#include <span>
#include <utility>
#include <vector>

namespace lnformer {

struct TrainerOptions {
  float clip_norm = 0.f;       ///< global-norm clipping threshold; 0 computes the norm without clipping
  float explode_factor = 10.f; ///< divergence when the mean loss exceeds this times the lowest so far (0: off)
  std::uint64_t seed = 1;      ///< dropout seed (masks are a function of seed, site and step)
  /// Data-parallel training over these ranks (null: this process alone). Not owned.
  dist::Communicator* comm = nullptr;
  /// Gradient all-reduce bucket, in floats (see dist::GradientReducer).
  std::size_t bucket_floats = dist::kDefaultBucketFloats;
  /// Start each layer's gradient sums during the backward pass (false: all after it). A model whose
  /// backward takes no GradientReadyHook is always summed after it.
  bool overlap_allreduce = true;
};

/// A training run diverged. what() says where; the fields say it to programs.
class DivergenceError : public Error {
 public:
  DivergenceError(std::string const& msg, std::int64_t step, float lr, double loss, float grad_norm,
                  double last_finite_loss)
      : Error(msg), step(step), lr(lr), loss(loss), grad_norm(grad_norm), last_finite_loss(last_finite_loss) {}
  std::int64_t step;        ///< the update that was refused
  float lr;                 ///< its learning rate
  double loss;              ///< its mean loss per target token (may be non-finite)
  float grad_norm;          ///< its gradient norm before clipping (may be non-finite)
  double last_finite_loss;  ///< the last finite mean loss of an accepted step (NaN if none)
};

/// What one step did.
struct StepStats {
  std::int64_t step = 0;  ///< the update's number, from 1
  LossStats loss;         ///< summed over the batch's target tokens
  float lr = 0.f;
  float grad_norm = 0.f;  ///< before clipping
};

template <class Model, class Opt, class Sched>
  requires OptimizerFor<Opt, typename Model::backend> && Schedule<Sched>
class Trainer {
 public:
  using backend = typename Model::backend;
  using State = typename Opt::template State<backend>;

  Trainer(Model& model, Opt opt, Sched schedule, TrainerOptions options = {})
      : model_(model),
        params_(model.parameters()),
        opt_(std::move(opt)),
        schedule_(std::move(schedule)),
        options_(options),
        state_(opt_.make_state(params_)) {
    schedule_.validate();
    LNF_EXPECTS_AS(ValueError, options_.clip_norm >= 0.f && std::isfinite(options_.clip_norm),
                   "Trainer: clip_norm {} must be finite and >= 0", options_.clip_norm);
    LNF_EXPECTS_AS(ValueError, options_.explode_factor == 0.f || options_.explode_factor > 1.f,
                   "Trainer: explode_factor {} must be 0 (off) or > 1", options_.explode_factor);
    if (distributed()) {
      dist::broadcast_parameters(*options_.comm, params_);
      reducer_.emplace(*options_.comm, options_.bucket_floats);
    }
  }

  /// The normalization policy's calibrate hook on `batch` (norm/concept.hpp; AdminLN profiles w), for
  /// a policy that has one; returns whether it ran. Call it once before the first step, on an ordinary
  /// training batch (not after loading a checkpoint: that restores calibrated parameters). Dropout
  /// masks: options.seed, pass 0 (no training step uses pass 0). Data-parallel: every rank calls it;
  /// rank 0's parameters are then broadcast, so the ranks stay identical whatever batch each used.
  template <class BatchT>
  bool calibrate(BatchT const& batch) {
    bool const ran = calibrate_norm(model_, batch, ForwardContext{.training = true, .seed = options_.seed});
    if (ran && distributed()) dist::broadcast_parameters(*options_.comm, params_);
    return ran;
  }

  /// One update from `batch` (a Batch or LmBatch the model's forward takes); with a communicator,
  /// this rank's share of the global batch.
  template <class BatchT>
  StepStats step(BatchT const& batch) {
    return run_step([&](ForwardContext const& ctx) { return model_.forward(batch, ctx); }, true);
  }
  /// One update from several batches together (gradient accumulation; fairseq's --update-freq): the
  /// gradient of the mean loss over all their target tokens, so K batches make the update that one
  /// batch holding all their sentences would, up to the order of float summation. The loss, gradient
  /// norm and token count in the result are those of the K batches together. Dropout masks of batch
  /// i > 0 are drawn with seed + i * kMicroBatchSeedStride (batch 0 keeps the one-batch masks).
  /// With a communicator: this rank's K batches (none: it idles through the step).
  template <class BatchT>
  StepStats step(std::span<BatchT const> batches) {
    if (batches.size() == 1) return step(batches.front());
    if (batches.empty()) {
      LNF_EXPECTS_AS(ValueError, distributed(), "Trainer::step: no batch to train on");
      return step_idle();
    }
    return accumulated_step(batches);
  }
  static constexpr std::uint64_t kMicroBatchSeedStride = 0xD1B54A32D192ED03ull;

  /// A data-parallel step in which this rank has no batch (fewer batches than ranks were left): it
  /// takes part in the collectives with zero loss, tokens and gradients and applies the same update.
  StepStats step_idle() {
    LNF_EXPECTS_AS(ValueError, distributed(), "Trainer::step_idle: only a data-parallel Trainer has idle steps");
    return run_step([](ForwardContext const&) { return LossStats{}; }, false);
  }

  /// Where set, called in every step with the parameters once their gradients are complete (summed
  /// over the ranks, before clipping and the update): training statistics such as
  /// layer_gradient_norms (analysis/training_stats.hpp). Unset by default.
  std::function<void(ParameterList<backend> const&)> gradient_observer;

  /// Updates done so far.
  [[nodiscard]] std::int64_t steps() const { return state_.step; }
  [[nodiscard]] Model& model() { return model_; }
  [[nodiscard]] ParameterList<backend> const& parameters() const { return params_; }
  [[nodiscard]] Opt const& optimizer() const { return opt_; }
  [[nodiscard]] State& optimizer_state() { return state_; }
  [[nodiscard]] Sched const& schedule() const { return schedule_; }
  [[nodiscard]] TrainerOptions const& options() const { return options_; }
  [[nodiscard]] bool distributed() const { return options_.comm != nullptr && options_.comm->size() > 1; }
  /// This process's rank (0 without a communicator) and the number of ranks.
  [[nodiscard]] int rank() const { return options_.comm ? options_.comm->rank() : 0; }
  [[nodiscard]] int world_size() const { return options_.comm ? options_.comm->size() : 1; }

  /// Parameters and optimizer state in one safetensors file (written atomically), with `extra`
  /// metadata entries (a caller's epoch, data position, configuration...) and a SHA-256 of the
  /// tensors and metadata under io::kChecksumKey (io/checksum.hpp), verified by load_checkpoint.
  /// Data-parallel: rank 0 writes, the other ranks do nothing (every rank holds the same state).
  void save_checkpoint(std::string const& path, std::map<std::string, std::string> const& extra = {}) const {
    if (rank() != 0) return;
    auto tensors = io::optimizer_state_tensors(state_);
    std::vector<Tensor<Cpu>> host;  // only for non-CPU backends
    host.reserve(params_.size());
    for (auto const& p : params_) {
      if constexpr (std::is_same_v<backend, Cpu>) {
        tensors.emplace_back(p.name, io::SaveView(p.param->value.cview()));
      } else {
        auto const h = p.param->value.to_host();
        host.emplace_back(p.param->value.shape(), std::span<float const>(h));
        tensors.emplace_back(p.name, io::SaveView(host.back().cview()));
      }
    }
    auto meta = extra;
    for (auto& [k, v] : io::optimizer_state_metadata(opt_, state_)) meta[k] = v;
    meta["trainer/best_loss"] = fmt::format("{}", best_loss_);
    meta["trainer/last_finite_loss"] = fmt::format("{}", last_finite_);
    meta[std::string(io::kChecksumKey)] = io::content_sha256(tensors, meta);
    io::save_safetensors(path, tensors, meta);
  }
  /// Restores what save_checkpoint wrote and returns the file's metadata. A truncated or damaged
  /// file, or a checksum that does not match (a file without one is accepted unless
  /// require_checksum), is an IoError before anything is changed; a mismatch (names, shapes,
  /// optimizer) is an IoError as well.
  std::map<std::string, std::string> load_checkpoint(std::string const& path, bool require_checksum = false) {
    if (!distributed()) return load_checkpoint_here(path, require_checksum);
    // Rank 0 reads; its outcome (an error message, or the state) goes to every rank, so that a bad
    // file is the same IoError everywhere instead of a hang.
    auto& comm = *options_.comm;
    std::map<std::string, std::string> meta;
    std::string error;
    if (comm.is_root()) {
      try {
        meta = load_checkpoint_here(path, require_checksum);
      } catch (std::exception const& e) {
        error = e.what();
        if (error.empty()) error = "unknown error";
      }
    }
    dist::broadcast_string(comm, error);
    if (!error.empty()) throw IoError(comm.is_root() ? error : fmt::format("rank 0: {}", error));
    for (auto const& p : params_) dist::broadcast_tensor(comm, p.param->value);
    for (auto& kind : state_.buffers)
      for (auto& t : kind) dist::broadcast_tensor(comm, t);
    dist::broadcast_value(comm, state_.step);
    dist::broadcast_value(comm, best_loss_);
    dist::broadcast_value(comm, last_finite_);
    dist::broadcast_map(comm, meta);
    return meta;
  }

 private:
  std::map<std::string, std::string> load_checkpoint_here(std::string const& path, bool require_checksum) {
    auto const file = io::SafetensorsFile::open(path);
    io::verify_checksum(file, require_checksum);
    io::load_optimizer_state(file, opt_, state_);
    io::load_parameters(file, params_, io::LoadOptions{.allow_extra = true});
    auto const& meta = file.metadata();
    auto read = [&](char const* key) {
      auto it = meta.find(key);
      return it == meta.end() ? std::numeric_limits<double>::quiet_NaN() : std::stod(it->second);
    };
    best_loss_ = read("trainer/best_loss");
    last_finite_ = read("trainer/last_finite_loss");
    return meta;
  }

  /// The dropout seed of this rank (rank 0 keeps the single-process masks).
  [[nodiscard]] std::uint64_t rank_seed() const {
    std::uint64_t seed = options_.seed;
    if (rank() > 0) seed += static_cast<std::uint64_t>(rank()) * 0x9E3779B97F4A7C15ull;
    return seed;
  }

  /// The backward pass of the last forward, scaled; `last` of this rank's step: with a communicator
  /// the gradient sums start here (overlapped with it where the model reports layers).
  void backward_of_step(float scale, bool last) {
    if (!distributed() || !last) {
      model_.backward(scale);
      return;
    }
    if constexpr (requires(GradientReadyHook<backend>* h) { model_.backward(scale, h); }) {
      model_.backward(scale, options_.overlap_allreduce ? &*reducer_ : nullptr);
    } else {
      model_.backward(scale);
    }
  }

  // Gradient accumulation over K >= 2 batches. The gradient scale, 1 / (every rank's target tokens),
  // is known before any forward pass (batches count their target tokens), so each batch runs forward
  // then backward and its activations are gone before the next.
  template <class BatchT>
  StepStats accumulated_step(std::span<BatchT const> batches) {
    std::int64_t const t = state_.step + 1;
    model_.zero_grad();
    StepStats s;
    s.step = t;
    double tokens = 0;
    for (auto const& b : batches) tokens += static_cast<double>(b.target_tokens);
    if (distributed()) options_.comm->allreduce_sum(std::span<double>(&tokens, 1));
    float const scale = tokens > 0 ? static_cast<float>(1.0 / tokens) : 0.f;
    for (std::size_t i = 0; i < batches.size(); ++i) {
      std::uint64_t const seed = rank_seed() + static_cast<std::uint64_t>(i) * kMicroBatchSeedStride;
      auto const l = model_.forward(batches[i], ForwardContext{.training = true, .seed = seed,
                                                                .pass = static_cast<std::uint64_t>(t)});
      s.loss.loss += l.loss;
      s.loss.nll += l.nll;
      s.loss.tokens += l.tokens;
      bool const last = i + 1 == batches.size();
      if (last && distributed()) reducer_->begin(params_);
      backward_of_step(scale, last);
    }
    if (distributed()) {
      reducer_->finish();
      std::array<double, 3> sums{s.loss.loss, s.loss.nll, static_cast<double>(s.loss.tokens)};
      options_.comm->allreduce_sum(std::span<double>(sums));
      s.loss = LossStats{.loss = sums[0], .nll = sums[1], .tokens = static_cast<std::int64_t>(sums[2])};
    }
    return update(s);
  }

  // One update: `local(ctx)` runs this rank's forward pass (has_batch: backward follows).
  template <class Forward>
  StepStats run_step(Forward&& local, bool has_batch) {
    std::int64_t const t = state_.step + 1;
    model_.zero_grad();
    StepStats s;
    s.step = t;
    s.loss = local(ForwardContext{.training = true, .seed = rank_seed(), .pass = static_cast<std::uint64_t>(t)});
    if (distributed()) {
      std::array<double, 3> sums{s.loss.loss, s.loss.nll, static_cast<double>(s.loss.tokens)};
      options_.comm->allreduce_sum(std::span<double>(sums));
      s.loss = LossStats{.loss = sums[0], .nll = sums[1], .tokens = static_cast<std::int64_t>(sums[2])};
    }
    // The gradient of the mean loss over every rank's target tokens (the model's train_step with
    // one rank).
    float const scale = s.loss.tokens > 0 ? 1.f / static_cast<float>(s.loss.tokens) : 0.f;
    if (distributed()) reducer_->begin(params_);
    if (has_batch) backward_of_step(scale, true);
    if (distributed()) reducer_->finish();
    return update(s);
  }

  // Clipping, the divergence check and the update, from the gradients of step s.
  StepStats update(StepStats s) {
    std::int64_t const t = s.step;
    if (gradient_observer) gradient_observer(params_);
    s.lr = schedule_(t);
    s.grad_norm = clip_grad_norm(params_, options_.clip_norm);
    double const mean = s.loss.mean_loss();
    bool const finite = std::isfinite(mean) && std::isfinite(s.grad_norm);
    bool const exploded = finite && options_.explode_factor > 0.f && std::isfinite(best_loss_) &&
                          mean > static_cast<double>(options_.explode_factor) * best_loss_;
    if (!finite || exploded) {
      throw DivergenceError(
          fmt::format("training diverged at step {} (learning rate {:.4g}): {}; last finite loss {}", t, s.lr,
                      finite ? fmt::format("loss {:.4f} is more than {} times the lowest so far ({:.4f})", mean,
                                           options_.explode_factor, best_loss_)
                             : fmt::format("loss {}, gradient norm {}", mean, s.grad_norm),
                      std::isfinite(last_finite_) ? fmt::format("{:.4f}", last_finite_) : std::string("none")),
          t, s.lr, mean, s.grad_norm, last_finite_);
    }
    opt_.step(state_, params_, s.lr);
    last_finite_ = mean;
    if (s.loss.tokens > 0) best_loss_ = std::isfinite(best_loss_) ? std::min(best_loss_, mean) : mean;
    return s;
  }

  Model& model_;
  ParameterList<backend> params_;
  Opt opt_;
  Sched schedule_;
  TrainerOptions options_;
  State state_;
  double best_loss_ = std::numeric_limits<double>::quiet_NaN();
  double last_finite_ = std::numeric_limits<double>::quiet_NaN();
  std::optional<dist::GradientReducer<backend>> reducer_;  // data-parallel only
};

}  // namespace lnformer
