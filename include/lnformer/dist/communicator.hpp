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

/// Sums gradients over the ranks while the backward pass runs (what PyTorch's DDP calls bucketing
/// with overlap). Per backward pass:
///   reducer.begin(params);                  // the parameters whose gradients are summed
///   model.backward(scale, &reducer);        // the model reports each layer once it is complete
///   reducer.finish();                       // the rest (embeddings), then wait for every sum
///
/// Buckets: the parameters are cut, in a fixed order, into buckets of about `bucket_floats`; a
/// bucket is handed to a non-blocking all-reduce (MPI_Iallreduce) as soon as all its members were
/// reported and every bucket before it has started, and each later report lets the transport advance
/// what is in flight, so the sums travel while later layers compute. A host gradient of at least
/// `bucket_floats` is a bucket of its own, summed where it is; the others are packed when their
/// bucket starts and copied back when it is seen to complete.
///
/// The order: collectives must start in the same order on every rank, and ranks may report
/// differently (a rank with no batch reports nothing). So the first pass only observes, and sums
/// everything at finish(); there the ranks adopt the report order of the lowest rank that saw
/// reports (then the parameters never reported, in list order), and every later pass starts its
/// buckets in that order whatever a rank reports. Before any rank reported, the order is the list's.
/// Device gradients go one by one to a communicator's device collectives (NCCL queues them on the
/// GPU's stream behind the kernels that produced them) or through host memory otherwise.
///
/// Memory: packing buffers only for the buckets in flight, at most the gradients' size; kept and
/// reused from one pass to the next, so a training loop allocates them once.
template <class B>
class GradientReducer final : public GradientReadyHook<B> {
 public:
  explicit GradientReducer(Communicator& comm, std::size_t bucket_floats = kDefaultBucketFloats)
      : comm_(&comm), bucket_floats_(bucket_floats) {
    LNF_EXPECTS_AS(ValueError, bucket_floats > 0, "GradientReducer: bucket size must be positive");
  }
  GradientReducer(GradientReducer const&) = delete;
  GradientReducer& operator=(GradientReducer const&) = delete;

  /// Starts a pass over `params` (kept by reference until finish()); every rank passes the same list.
  void begin(ParameterList<B> const& params) {
    wait_all();  // a pass abandoned by an exception: let its operations end before reusing buffers
    bool same = list_.size() == params.size();
    for (std::size_t i = 0; same && i < params.size(); ++i) same = list_[i] == params[i].param;
    if (!same) {
      list_.clear();
      index_.clear();
      for (std::size_t i = 0; i < params.size(); ++i) {
        list_.push_back(params[i].param);
        index_.emplace(params[i].param, i);
      }
      LNF_EXPECTS_AS(ValueError, index_.size() == list_.size(), "GradientReducer: a parameter is listed twice");
      std::vector<std::size_t> order(list_.size());
      for (std::size_t i = 0; i < order.size(); ++i) order[i] = i;
      make_plan(order);
      planned_ = false;
    }
    params_ = &params;
    reported_.assign(list_.size(), false);
    observed_.clear();
    missing_.clear();
    for (auto const& b : plan_) missing_.push_back(b.members.size());
    next_ = 0;
  }
  /// These parameters' gradients are final for this pass.
  void ready(ParameterList<B> const& group) override {
    LNF_EXPECTS_AS(ValueError, params_ != nullptr, "GradientReducer::ready outside begin() ... finish()");
    for (auto const& p : group) {
      auto it = index_.find(p.param);
      LNF_EXPECTS_AS(ValueError, it != index_.end(), "GradientReducer: {} is not among the parameters it sums",
                     p.name);
      LNF_EXPECTS_AS(ValueError, !reported_[it->second], "GradientReducer: {} was reported twice in one pass",
                     p.name);
      mark(it->second);
    }
    if (planned_) start_ready();
    progress();
  }
  /// Sums what was not reported, waits for every sum, and leaves the sums in the gradients.
  void finish() {
    LNF_EXPECTS_AS(ValueError, params_ != nullptr, "GradientReducer::finish without begin()");
    params_ = nullptr;
    if (!planned_) agree_on_order();
    for (std::size_t i = 0; i < list_.size(); ++i)
      if (!reported_[i]) mark(i);
    start_ready();
    wait_all();
  }
  /// Buckets started so far (one collective each; per device gradient with device collectives).
  [[nodiscard]] std::int64_t buckets_started() const { return started_; }
  /// Whether the ranks have agreed on a report order (so passes overlap the sums with backward).
  [[nodiscard]] bool overlapping() const { return planned_; }

 private:
  struct Bucket {
    std::vector<std::size_t> members;  // indices into list_, in the plan's order
    std::size_t floats = 0;
    bool in_place = false;             // one host gradient of at least bucket_floats, or a device one
  };
  struct Flight {
    std::int64_t ticket = Communicator::kCompleted;
    std::size_t bucket = 0;
    std::vector<float> data;           // packed members (empty: summed in place)
  };

  static constexpr bool kHost = BackendTraits<B>::host_accessible;

  void make_plan(std::vector<std::size_t> const& order) {
    plan_.clear();
    bucket_of_.assign(list_.size(), kNone);
    bool const device_each = !kHost && comm_->device_collectives();
    Bucket open;
    auto close = [&] {
      if (open.members.empty()) return;
      for (auto i : open.members) bucket_of_[i] = plan_.size();
      plan_.push_back(std::move(open));
      open = Bucket{};
    };
    for (auto i : order) {
      auto const n = static_cast<std::size_t>(list_[i]->grad.numel());
      if (n == 0) continue;
      if (device_each || (kHost && n >= bucket_floats_)) {
        close();
        open = Bucket{.members = {i}, .floats = n, .in_place = true};
        close();
        continue;
      }
      if (open.floats + n > bucket_floats_) close();
      open.members.push_back(i);
      open.floats += n;
    }
    close();
  }
  /// The first pass: adopt the report order of the lowest rank that saw reports.
  void agree_on_order() {
    std::vector<std::int64_t> saw(static_cast<std::size_t>(comm_->size()), 0);
    saw[static_cast<std::size_t>(comm_->rank())] = observed_.empty() ? 0 : 1;
    comm_->allreduce_sum(std::span<std::int64_t>(saw));
    auto const first = std::find(saw.begin(), saw.end(), std::int64_t{1});
    if (first == saw.end()) return;  // nobody reported: the list's order, decided again next pass
    std::vector<std::uint64_t> order(observed_.begin(), observed_.end());
    broadcast_vector(*comm_, order, static_cast<int>(first - saw.begin()));
    std::vector<bool> seen(list_.size(), false);
    std::vector<std::size_t> full;
    for (auto i : order) {
      LNF_EXPECTS_AS(CommError, i < list_.size() && !seen[i],
                     "GradientReducer: rank {} reported parameters this rank does not have", first - saw.begin());
      seen[i] = true;
      full.push_back(static_cast<std::size_t>(i));
    }
    for (std::size_t i = 0; i < list_.size(); ++i)
      if (!seen[i]) full.push_back(i);
    make_plan(full);
    planned_ = true;
    missing_.clear();
    for (auto const& b : plan_) {
      std::size_t m = 0;
      for (auto i : b.members) m += reported_[i] ? 0 : 1;
      missing_.push_back(m);
    }
  }
  void mark(std::size_t i) {
    reported_[i] = true;
    if (planned_) {
      if (bucket_of_[i] != kNone) --missing_[bucket_of_[i]];
    } else {
      observed_.push_back(i);
    }
  }
  /// Starts, in plan order, every bucket whose members are all reported.
  void start_ready() {
    if (!planned_) {  // the list's order: finish() marked everything
      for (auto& m : missing_) m = 0;
    }
    for (; next_ < plan_.size() && missing_[next_] == 0; ++next_) start(next_);
  }
  void start(std::size_t b) {
    auto const& bucket = plan_[b];
    ++started_;
    if (bucket.in_place) {
      auto* p = list_[bucket.members.front()];
      auto const n = static_cast<std::size_t>(p->grad.numel());
      if constexpr (kHost) {
        inflight_.push_back(Flight{.ticket = comm_->start_allreduce_sum(std::span<float>(p->grad.data(), n)), .bucket = b});
      } else {
        comm_->allreduce_sum_device(p->grad.data(), n);
      }
      return;
    }
    Flight f{.bucket = b};
    if (!spare_.empty()) {
      f.data = std::move(spare_.back());
      spare_.pop_back();
    }
    f.data.resize(bucket.floats);
    std::size_t off = 0;
    for (auto i : bucket.members) {
      auto const n = static_cast<std::size_t>(list_[i]->grad.numel());
      if constexpr (kHost) std::memcpy(f.data.data() + off, list_[i]->grad.data(), n * sizeof(float));
      else BackendTraits<B>::to_host(f.data.data() + off, list_[i]->grad.data(), n * sizeof(float));
      off += n;
    }
    f.ticket = comm_->start_allreduce_sum(std::span<float>(f.data));
    inflight_.push_back(std::move(f));
  }
  /// Lets the transport advance what is in flight; unpacks the oldest operations that completed.
  void progress() {
    std::size_t done = 0;
    while (done < inflight_.size() && comm_->test(inflight_[done].ticket)) unpack(inflight_[done++]);
    inflight_.erase(inflight_.begin(), inflight_.begin() + static_cast<std::ptrdiff_t>(done));
  }
  void wait_all() {
    for (auto& f : inflight_) {
      comm_->wait(f.ticket);
      unpack(f);
    }
    inflight_.clear();
  }
  void unpack(Flight& f) {
    if (f.data.empty()) return;
    std::size_t off = 0;
    for (auto i : plan_[f.bucket].members) {
      auto const n = static_cast<std::size_t>(list_[i]->grad.numel());
      if constexpr (kHost) std::memcpy(list_[i]->grad.data(), f.data.data() + off, n * sizeof(float));
      else BackendTraits<B>::from_host(list_[i]->grad.data(), f.data.data() + off, n * sizeof(float));
      off += n;
    }
    spare_.push_back(std::move(f.data));
  }

  static constexpr std::size_t kNone = static_cast<std::size_t>(-1);
  Communicator* comm_;
  std::size_t bucket_floats_;
  ParameterList<B> const* params_ = nullptr;       // between begin() and finish()
  std::vector<Parameter<B>*> list_;                // the parameters, in list order
  std::unordered_map<Parameter<B> const*, std::size_t> index_;
  std::vector<Bucket> plan_;                       // in start order
  std::vector<std::size_t> bucket_of_;             // per parameter (kNone: empty gradient)
  bool planned_ = false;                           // the ranks agreed on plan_'s order
  std::vector<bool> reported_;                     // this pass
  std::vector<std::size_t> observed_;              // this pass's report order, until planned
  std::vector<std::size_t> missing_;               // per bucket: members not reported yet
  std::size_t next_ = 0;                           // the next bucket to start
  std::vector<Flight> inflight_;                   // started, not yet unpacked, oldest first
  std::vector<std::vector<float>> spare_;          // packing buffers to reuse
  std::int64_t started_ = 0;
};

/// Sums every parameter's gradient over the ranks, in place, in buckets of `bucket_floats` (one
/// collective per bucket instead of one per tensor): a GradientReducer with nothing reported. For a
/// loop that runs it every step, keep a GradientReducer instead (its buffers are then allocated once)
/// and pass it to the model's backward, which overlaps the sums with the backward pass.
template <class B>
void allreduce_gradients(Communicator& comm, ParameterList<B> const& params,
                         std::size_t bucket_floats = kDefaultBucketFloats) {
  if (comm.size() == 1) return;
  GradientReducer<B> reducer(comm, bucket_floats);
  reducer.begin(params);
  reducer.finish();
}

}  // namespace lnformer::dist
