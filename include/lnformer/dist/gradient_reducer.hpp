#pragma once
// GradientReducer: sums gradients over the ranks in buckets, overlapped with the backward pass; and
// allreduce_gradients, the same in one call after backward. Communicator: dist/communicator_interface.hpp.

#include <lnformer/core/error.hpp>
#include <lnformer/dist/broadcast.hpp>
#include <lnformer/dist/communicator_interface.hpp>
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
