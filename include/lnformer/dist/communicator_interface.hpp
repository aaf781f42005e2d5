#pragma once
// The communicator interface (Communicator, SingleProcess, CommError, CommStats) for data-parallel
// training: the collectives a Trainer needs, behind one small
// interface so that the same training code runs in one process (SingleProcess) or across ranks
// (dist/mpi.hpp: Open MPI, any number of hosts).
//
// Why a virtual interface rather than another compile-time policy: which communicator a run uses
// is decided when the program starts (launched by mpirun or not), and every call moves a whole
// bucket of gradients, so one indirect call per collective costs nothing measurable.
//
// The helpers are what data parallelism is made of, usable in a hand-written loop too (broadcasts in
// dist/broadcast.hpp, the gradient sums in dist/gradient_reducer.hpp; dist/communicator.hpp
// includes both):
//   broadcast_parameters(comm, params)     every rank starts from rank 0's parameters;
//   GradientReducer(comm)                  sums gradients over the ranks in buckets, overlapped with
//                                          the backward pass (model.backward(scale, &reducer));
//   allreduce_gradients(comm, params)      the same after backward, in one call;
//   broadcast_string / broadcast_value     small control data (a path, a configuration, a flag);
//   broadcast_map / broadcast_tensor       metadata, and one tensor of any backend.
// Device (GPU) tensors go straight to a communicator with device collectives (dist/nccl.cuh) and
// through host memory otherwise, so data parallelism over MPI works on the GPU backend too.
// Every collective must be called by every rank in the same order; a failure (a rank that died,
// a network error) is a CommError, never a silent wrong result.

#include <lnformer/core/error.hpp>
#include <lnformer/nn/parameter.hpp>

#include <algorithm>
#include <chrono>
#include <map>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <span>
#include <string>
#include <string_view>
#include <type_traits>
#include <unordered_map>
#include <vector>

namespace lnformer::dist {

/// A collective failed (another rank died, the transport reported an error).
class CommError : public Error {
 public:
  using Error::Error;
};

/// Time and volume spent in collectives since construction (or reset_stats()).
struct CommStats {
  double seconds = 0;       ///< wall time inside collectives (waiting for slower ranks included)
  std::int64_t bytes = 0;   ///< payload handed to collectives by this rank
  std::int64_t calls = 0;
};

class Communicator {
 public:
  virtual ~Communicator() = default;
  [[nodiscard]] virtual int rank() const = 0;
  [[nodiscard]] virtual int size() const = 0;
  [[nodiscard]] virtual std::string_view name() const = 0;

  /// In place: every rank ends with the element-wise sum over all ranks.
  void allreduce_sum(std::span<float> x) { timed(x.size_bytes(), [&] { do_allreduce_sum(x); }); }
  void allreduce_sum(std::span<double> x) { timed(x.size_bytes(), [&] { do_allreduce_sum(x); }); }
  void allreduce_sum(std::span<std::int64_t> x) { timed(x.size_bytes(), [&] { do_allreduce_sum(x); }); }
  /// In place: every rank ends with root's bytes.
  void broadcast(std::span<std::byte> x, int root = 0) {
    LNF_EXPECTS_AS(ValueError, root >= 0 && root < size(), "broadcast root {} is not a rank of {}", root, size());
    timed(x.size_bytes(), [&] { do_broadcast(x, root); });
  }
  void barrier() { timed(0, [&] { do_barrier(); }); }

  /// Starts an in-place sum of x over the ranks and returns without waiting for it where the
  /// communicator can (MPI: MPI_Iallreduce; the default completes it here). x must stay alive and
  /// must be neither read nor written until wait(ticket), or a test(ticket) that returned true. Every
  /// rank starts the same operations in the same order. Time inside start, test and wait counts as
  /// time in collectives; what runs between them is the overlap.
  [[nodiscard]] std::int64_t start_allreduce_sum(std::span<float> x) {
    std::int64_t ticket = kCompleted;
    timed(x.size_bytes(), [&] { ticket = do_start_allreduce_sum(x); });
    return ticket;
  }
  /// True once the operation of `ticket` has completed (its ticket is then spent). Each call also
  /// lets the transport advance it: Open MPI moves non-blocking collectives forward inside its calls.
  [[nodiscard]] bool test(std::int64_t ticket) {
    if (ticket == kCompleted) return true;
    bool done = false;
    timed_wait([&] { done = do_test(ticket); });
    return done;
  }
  /// Blocks until the operation of `ticket` has completed.
  void wait(std::int64_t ticket) {
    if (ticket == kCompleted) return;
    timed_wait([&] { do_wait(ticket); });
  }
  /// The ticket of an operation that completed when it was started.
  static constexpr std::int64_t kCompleted = -1;

  /// True when the collectives below read and write device (GPU) memory directly (NCCL). Otherwise
  /// the helpers below stage a device tensor through host memory and use the host collectives.
  [[nodiscard]] virtual bool device_collectives() const { return false; }
  /// In place on device memory: only for a communicator with device_collectives().
  void allreduce_sum_device(float* x, std::size_t n) {
    timed(n * sizeof(float), [&] { do_allreduce_sum_device(x, n); });
  }
  void broadcast_device(float* x, std::size_t n, int root = 0) {
    LNF_EXPECTS_AS(ValueError, root >= 0 && root < size(), "broadcast root {} is not a rank of {}", root, size());
    timed(n * sizeof(float), [&] { do_broadcast_device(x, n, root); });
  }
  /// Ends every rank of the job with `code` (for an error one rank cannot recover from: the others
  /// would otherwise wait in their next collective forever).
  [[noreturn]] virtual void abort(int code) = 0;

  [[nodiscard]] bool is_root() const { return rank() == 0; }
  [[nodiscard]] CommStats const& stats() const { return stats_; }
  void reset_stats() { stats_ = {}; }

 protected:
  virtual void do_allreduce_sum(std::span<float>) = 0;
  virtual void do_allreduce_sum(std::span<double>) = 0;
  virtual void do_allreduce_sum(std::span<std::int64_t>) = 0;
  virtual void do_broadcast(std::span<std::byte>, int root) = 0;
  virtual void do_barrier() = 0;
  /// Non-blocking collectives: the default runs the blocking one and reports it completed.
  virtual std::int64_t do_start_allreduce_sum(std::span<float> x) {
    do_allreduce_sum(x);
    return kCompleted;
  }
  virtual bool do_test(std::int64_t ticket) {
    throw ValueError(fmt::format("{}: no operation in flight has ticket {}", name(), ticket));
  }
  virtual void do_wait(std::int64_t ticket) {
    throw ValueError(fmt::format("{}: no operation in flight has ticket {}", name(), ticket));
  }
  virtual void do_allreduce_sum_device(float*, std::size_t) {
    throw CommError(fmt::format("{}: no collectives on device memory", name()));
  }
  virtual void do_broadcast_device(float*, std::size_t, int) {
    throw CommError(fmt::format("{}: no collectives on device memory", name()));
  }

 private:
  template <class F>
  void timed(std::size_t bytes, F&& f) {
    auto const t0 = std::chrono::steady_clock::now();
    f();
    stats_.seconds += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    stats_.bytes += static_cast<std::int64_t>(bytes);
    ++stats_.calls;
  }
  template <class F>
  void timed_wait(F&& f) {  // completing an operation counted when it started
    auto const t0 = std::chrono::steady_clock::now();
    f();
    stats_.seconds += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  }
  CommStats stats_;
};

/// One process: every collective is the identity.
class SingleProcess final : public Communicator {
 public:
  [[nodiscard]] int rank() const override { return 0; }
  [[nodiscard]] int size() const override { return 1; }
  [[nodiscard]] std::string_view name() const override { return "single process"; }
  [[noreturn]] void abort(int code) override { std::exit(code); }

 protected:
  void do_allreduce_sum(std::span<float>) override {}
  void do_allreduce_sum(std::span<double>) override {}
  void do_allreduce_sum(std::span<std::int64_t>) override {}
  void do_broadcast(std::span<std::byte>, int) override {}
  void do_barrier() override {}
};

}  // namespace lnformer::dist
