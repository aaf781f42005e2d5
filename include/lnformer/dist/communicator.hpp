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

/// A vector of trivially copyable values from root to every rank (its length first).
template <class T>
  requires std::is_trivially_copyable_v<T>
void broadcast_vector(Communicator& comm, std::vector<T>& v, int root = 0) {
  std::uint64_t n = v.size();
  broadcast_value(comm, n, root);
  v.resize(n);
  if (n > 0) comm.broadcast(std::as_writable_bytes(std::span<T>(v)), root);
}

/// Floats from root to every rank, in place.
inline void broadcast_floats(Communicator& comm, std::span<float> x, int root = 0) {
  if (!x.empty()) comm.broadcast(std::as_writable_bytes(x), root);
}

/// A tensor of backend B from root to every rank, in place: host memory through the host
/// collective; device memory directly where the communicator can (NCCL), through the host otherwise.
template <class B>
void broadcast_tensor(Communicator& comm, Tensor<B>& t, int root = 0) {
  auto const n = static_cast<std::size_t>(t.numel());
  if (n == 0 || comm.size() == 1) return;
  if constexpr (BackendTraits<B>::host_accessible) {
    broadcast_floats(comm, std::span<float>(t.data(), n), root);
  } else if (comm.device_collectives()) {
    comm.broadcast_device(t.data(), n, root);
  } else {
    std::vector<float> h(n);
    if (comm.rank() == root) BackendTraits<B>::to_host(h.data(), t.data(), n * sizeof(float));
    broadcast_floats(comm, std::span<float>(h), root);
    BackendTraits<B>::from_host(t.data(), h.data(), n * sizeof(float));
  }
}

/// A string-to-string map (metadata) from root to every rank: the pairs as length-prefixed fields.
inline void broadcast_map(Communicator& comm, std::map<std::string, std::string>& m, int root = 0) {
  std::string flat;
  if (comm.rank() == root)
    for (auto const& [k, v] : m) flat += fmt::format("{}:{}{}:{}", k.size(), k, v.size(), v);
  broadcast_string(comm, flat, root);
  if (comm.rank() == root) return;
  m.clear();
  for (std::size_t i = 0; i < flat.size();) {
    auto take = [&] {
      auto const colon = flat.find(':', i);
      LNF_EXPECTS_AS(CommError, colon != std::string::npos, "broadcast_map: malformed data from rank {}", root);
      auto const n = static_cast<std::size_t>(std::stoull(flat.substr(i, colon - i)));
      std::string out = flat.substr(colon + 1, n);
      i = colon + 1 + n;
      return out;
    };
    std::string k = take();
    m[std::move(k)] = take();
  }
}

/// Every rank's parameter values become root's. The ranks must hold the same parameters (names and
/// shapes are checked against root's, so that a rank built with another configuration is an error
/// rather than a scrambled model).
template <class B>
void broadcast_parameters(Communicator& comm, ParameterList<B> const& params, int root = 0) {
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
  for (auto const& p : params) broadcast_tensor(comm, p.param->value, root);
}

/// Default bucket: 4 Mi floats (16 MiB), large enough that the per-call latency is small against
/// the transfer and small enough not to double the gradients' memory.
inline constexpr std::size_t kDefaultBucketFloats = std::size_t{4} << 20;

/// Sums every parameter's gradient over the ranks, in place. Small gradients are packed into
/// buckets of `bucket_floats` (one collective per bucket instead of one per tensor); a gradient at
/// least that large is reduced where it is. `scratch` is the (host) packing buffer, kept by the
/// caller so that a training loop allocates it once. Device gradients (B not host-accessible) are
/// reduced in place by a communicator with device collectives (NCCL: one call per tensor, queued on
/// the GPU's stream), or packed through host memory otherwise.
template <class B>
void allreduce_gradients(Communicator& comm, ParameterList<B> const& params, std::vector<float>& scratch,
                         std::size_t bucket_floats = kDefaultBucketFloats) {
  if (comm.size() == 1) return;
  LNF_EXPECTS_AS(ValueError, bucket_floats > 0, "allreduce_gradients: bucket size must be positive");
  if constexpr (!BackendTraits<B>::host_accessible) {
    if (comm.device_collectives()) {
      for (auto const& ref : params)
        if (ref.param->grad.numel() != 0)
          comm.allreduce_sum_device(ref.param->grad.data(), static_cast<std::size_t>(ref.param->grad.numel()));
      return;
    }
  }
  auto to_scratch = [](float* dst, Parameter<B> const* p, std::size_t n) {
    if constexpr (BackendTraits<B>::host_accessible) std::memcpy(dst, p->grad.data(), n * sizeof(float));
    else BackendTraits<B>::to_host(dst, p->grad.data(), n * sizeof(float));
  };
  auto from_scratch = [](Parameter<B>* p, float const* src, std::size_t n) {
    if constexpr (BackendTraits<B>::host_accessible) std::memcpy(p->grad.data(), src, n * sizeof(float));
    else BackendTraits<B>::from_host(p->grad.data(), src, n * sizeof(float));
  };
  std::vector<Parameter<B>*> pending;
  std::size_t filled = 0;
  auto flush = [&] {
    if (pending.empty()) return;
    comm.allreduce_sum(std::span<float>(scratch.data(), filled));
    std::size_t off = 0;
    for (auto* p : pending) {
      auto const n = static_cast<std::size_t>(p->grad.numel());
      from_scratch(p, scratch.data() + off, n);
      off += n;
    }
    pending.clear();
    filled = 0;
  };
  for (auto const& ref : params) {
    auto* p = ref.param;
    auto const n = static_cast<std::size_t>(p->grad.numel());
    if (n == 0) continue;
    if (n >= bucket_floats && BackendTraits<B>::host_accessible) {
      comm.allreduce_sum(std::span<float>(p->grad.data(), n));
      continue;
    }
    if (filled + n > bucket_floats) flush();
    if (scratch.size() < std::max(bucket_floats, n)) scratch.resize(std::max(bucket_floats, n));
    to_scratch(scratch.data() + filled, p, n);
    filled += n;
    pending.push_back(p);
  }
  flush();
}

}  // namespace lnformer::dist
