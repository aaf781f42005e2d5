#pragma once
// Communicators for data-parallel training: the collectives a Trainer needs, behind one small
// interface so that the same training code runs in one process (SingleProcess) or across ranks
// (dist/mpi.hpp: Open MPI, any number of hosts).
//
// Why a virtual interface rather than another compile-time policy: which communicator a run uses
// is decided when the program starts (launched by mpirun or not), and every call moves a whole
// bucket of gradients, so one indirect call per collective costs nothing measurable.
//
// The helpers below are what data parallelism is made of, usable in a hand-written loop too:
//   broadcast_parameters(comm, params)     every rank starts from rank 0's parameters;
//   allreduce_gradients(comm, params)      sums every gradient over the ranks, in buckets;
//   broadcast_string / broadcast_value     small control data (a path, a configuration, a flag).
// Every collective must be called by every rank in the same order; a failure (a rank that died,
// a network error) is a CommError, never a silent wrong result.

#include <lnformer/core/error.hpp>
#include <lnformer/nn/parameter.hpp>

#include <algorithm>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <span>
#include <string>
#include <string_view>
#include <type_traits>
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

 private:
  template <class F>
  void timed(std::size_t bytes, F&& f) {
    auto const t0 = std::chrono::steady_clock::now();
    f();
    stats_.seconds += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    stats_.bytes += static_cast<std::int64_t>(bytes);
    ++stats_.calls;
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

/// A trivially copyable value from root to every rank.
template <class T>
  requires std::is_trivially_copyable_v<T>
void broadcast_value(Communicator& comm, T& v, int root = 0) {
  comm.broadcast(std::as_writable_bytes(std::span<T>(&v, 1)), root);
}

/// A string from root to every rank (its length first).
inline void broadcast_string(Communicator& comm, std::string& s, int root = 0) {
  std::uint64_t n = s.size();
  broadcast_value(comm, n, root);
  s.resize(n);
  if (n > 0) comm.broadcast(std::as_writable_bytes(std::span<char>(s.data(), s.size())), root);
}

/// Floats from root to every rank, in place.
inline void broadcast_floats(Communicator& comm, std::span<float> x, int root = 0) {
  if (!x.empty()) comm.broadcast(std::as_writable_bytes(x), root);
}

/// Every rank's parameter values become root's. The ranks must hold the same parameters (names and
/// shapes are checked against root's, so that a rank built with another configuration is an error
/// rather than a scrambled model).
inline void broadcast_parameters(Communicator& comm, ParameterList<Cpu> const& params, int root = 0) {
  if (comm.size() == 1) return;
  std::string layout;
  for (auto const& p : params) layout += fmt::format("{}:{};", p.name, p.param->value.shape());
  std::string roots = layout;
  broadcast_string(comm, roots, root);
  std::int64_t mismatch = roots == layout ? 0 : 1;
  comm.allreduce_sum(std::span<std::int64_t>(&mismatch, 1));
  LNF_EXPECTS_AS(CommError, mismatch == 0,
                 "broadcast_parameters: {} rank(s) hold other parameters (names or shapes) than rank {}{}", mismatch,
                 root, roots == layout ? "" : " (this one among them)");
  for (auto const& p : params)
    broadcast_floats(comm, std::span<float>(p.param->value.data(), static_cast<std::size_t>(p.param->value.numel())),
                     root);
}

/// Default bucket: 4 Mi floats (16 MiB), large enough that the per-call latency is small against
/// the transfer and small enough not to double the gradients' memory.
inline constexpr std::size_t kDefaultBucketFloats = std::size_t{4} << 20;

/// Sums every parameter's gradient over the ranks, in place. Small gradients are packed into
/// buckets of `bucket_floats` (one collective per bucket instead of one per tensor); a gradient at
/// least that large is reduced where it is. `scratch` is the packing buffer, kept by the caller so
/// that a training loop allocates it once.
inline void allreduce_gradients(Communicator& comm, ParameterList<Cpu> const& params, std::vector<float>& scratch,
                                std::size_t bucket_floats = kDefaultBucketFloats) {
  if (comm.size() == 1) return;
  LNF_EXPECTS_AS(ValueError, bucket_floats > 0, "allreduce_gradients: bucket size must be positive");
  std::vector<Parameter<Cpu>*> pending;
  std::size_t filled = 0;
  auto flush = [&] {
    if (pending.empty()) return;
    comm.allreduce_sum(std::span<float>(scratch.data(), filled));
    std::size_t off = 0;
    for (auto* p : pending) {
      auto const n = static_cast<std::size_t>(p->grad.numel());
      std::memcpy(p->grad.data(), scratch.data() + off, n * sizeof(float));
      off += n;
    }
    pending.clear();
    filled = 0;
  };
  for (auto const& ref : params) {
    auto* p = ref.param;
    auto const n = static_cast<std::size_t>(p->grad.numel());
    if (n == 0) continue;
    if (n >= bucket_floats) {
      comm.allreduce_sum(std::span<float>(p->grad.data(), n));
      continue;
    }
    if (filled + n > bucket_floats) flush();
    if (scratch.size() < bucket_floats) scratch.resize(bucket_floats);
    std::memcpy(scratch.data() + filled, p->grad.data(), n * sizeof(float));
    filled += n;
    pending.push_back(p);
  }
  flush();
}

}  // namespace lnformer::dist
