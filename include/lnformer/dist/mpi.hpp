#pragma once
// dist::Mpi: the Communicator over MPI (Open MPI on Debian: libopenmpi-dev, openmpi-bin), for
// data-parallel training on CPUs across processes and hosts. Link lnformer::mpi (CMake), which adds
// MPI::MPI_CXX; this header is not in lnformer.hpp because it needs <mpi.h>.
//
//   int main(int argc, char** argv) {
//     lnformer::dist::MpiSession mpi(argc, argv);   // MPI_Init_thread ... MPI_Finalize
//     lnformer::dist::Mpi comm;                      // MPI_COMM_WORLD
//     ... Trainer(model, opt, sched, {.comm = &comm}) ...
//   }
//
// Errors: MPI_COMM_WORLD's error handler is set to MPI_ERRORS_RETURN, so a failed call is a
// CommError naming the call and MPI's message instead of an abort deep inside the library. A rank
// that cannot go on must call abort() (or let MpiSession's guard do it): the other ranks would wait
// in their next collective otherwise. A rank that dies (killed, crashed) is noticed by mpirun, which
// ends the job with a non-zero status.

#include <lnformer/dist/communicator.hpp>

#include <mpi.h>

#include <algorithm>
#include <cstdlib>
#include <exception>
#include <vector>

namespace lnformer::dist {

namespace detail {
inline void mpi_check(int rc, char const* call) {
  if (rc == MPI_SUCCESS) return;
  char msg[MPI_MAX_ERROR_STRING];
  int len = 0;
  MPI_Error_string(rc, msg, &len);
  throw CommError(fmt::format("{} failed: {}", call, std::string_view(msg, static_cast<std::size_t>(len))));
}
}  // namespace detail

#define LNF_MPI_CHECK(call) ::lnformer::dist::detail::mpi_check((call), #call)

/// True when this process was started by an MPI launcher (mpirun/mpiexec/srun with PMI/PMIx): the
/// environment carries the job's size. A program can then start MPI only when it is needed, and run
/// as a plain program otherwise (Open MPI's singleton start is slow and noisy in containers).
[[nodiscard]] inline bool launched_by_mpi() {
  for (char const* v : {"OMPI_COMM_WORLD_SIZE", "PMIX_RANK", "PMI_SIZE", "PMI_RANK", "MPI_LOCALNRANKS"})
    if (std::getenv(v) != nullptr) return true;
  return false;
}

/// MPI_Init_thread (funneled: only the main thread calls MPI; OpenMP threads compute) on construction,
/// MPI_Finalize on destruction. If the destructor runs while an exception is propagating out of a
/// multi-rank job, it aborts the job instead of finalizing, so no rank is left waiting.
class MpiSession {
 public:
  MpiSession(int& argc, char**& argv) {
    int inited = 0;
    MPI_Initialized(&inited);
    if (inited != 0) return;
    int provided = 0;
    LNF_MPI_CHECK(MPI_Init_thread(&argc, &argv, MPI_THREAD_FUNNELED, &provided));
    owner_ = true;
    MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
    uncaught_ = std::uncaught_exceptions();
  }
  MpiSession(MpiSession const&) = delete;
  MpiSession& operator=(MpiSession const&) = delete;
  ~MpiSession() {
    if (!owner_) return;
    int size = 1;
    MPI_Comm_size(MPI_COMM_WORLD, &size);
    if (std::uncaught_exceptions() > uncaught_ && size > 1) MPI_Abort(MPI_COMM_WORLD, 1);
    MPI_Finalize();
  }

 private:
  bool owner_ = false;
  int uncaught_ = 0;
};

class Mpi final : public Communicator {
 public:
  explicit Mpi(MPI_Comm comm = MPI_COMM_WORLD) : comm_(comm) {
    int inited = 0;
    MPI_Initialized(&inited);
    LNF_EXPECTS_AS(CommError, inited != 0, "dist::Mpi: MPI is not initialised (create an MpiSession first)");
    LNF_MPI_CHECK(MPI_Comm_set_errhandler(comm_, MPI_ERRORS_RETURN));
    LNF_MPI_CHECK(MPI_Comm_rank(comm_, &rank_));
    LNF_MPI_CHECK(MPI_Comm_size(comm_, &size_));
  }
  [[nodiscard]] int rank() const override { return rank_; }
  [[nodiscard]] int size() const override { return size_; }
  [[nodiscard]] std::string_view name() const override { return "MPI"; }
  [[noreturn]] void abort(int code) override {
    MPI_Abort(comm_, code);
    std::abort();  // MPI_Abort does not return; this is for the compiler
  }

 protected:
  void do_allreduce_sum(std::span<float> x) override { reduce(x.data(), x.size(), MPI_FLOAT); }
  void do_allreduce_sum(std::span<double> x) override { reduce(x.data(), x.size(), MPI_DOUBLE); }
  void do_allreduce_sum(std::span<std::int64_t> x) override { reduce(x.data(), x.size(), MPI_INT64_T); }
  void do_broadcast(std::span<std::byte> x, int root) override {
    // MPI counts are int: large payloads go in pieces.
    constexpr std::size_t kMax = std::size_t{1} << 30;
    for (std::size_t off = 0; off < x.size(); off += kMax) {
      auto const n = std::min(kMax, x.size() - off);
      LNF_MPI_CHECK(MPI_Bcast(x.data() + off, static_cast<int>(n), MPI_BYTE, root, comm_));
    }
  }
  void do_barrier() override { LNF_MPI_CHECK(MPI_Barrier(comm_)); }
  std::int64_t do_start_allreduce_sum(std::span<float> x) override {
    std::vector<MPI_Request> requests;
    for_each_piece(x.data(), x.size(), MPI_FLOAT, [&](void* p, int count) {
      requests.push_back(MPI_REQUEST_NULL);
      LNF_MPI_CHECK(MPI_Iallreduce(MPI_IN_PLACE, p, count, MPI_FLOAT, MPI_SUM, comm_, &requests.back()));
    });
    // A free slot, else a new one: the ticket is the slot's index.
    auto slot = std::find_if(inflight_.begin(), inflight_.end(), [](auto const& r) { return r.empty(); });
    if (slot == inflight_.end()) slot = inflight_.insert(inflight_.end(), std::vector<MPI_Request>{});
    *slot = std::move(requests);
    if (slot->empty()) slot->push_back(MPI_REQUEST_NULL);  // an empty sum: complete, but the ticket is live
    return slot - inflight_.begin();
  }
  bool do_test(std::int64_t ticket) override {
    auto& r = requests_of(ticket);
    int done = 0;
    LNF_MPI_CHECK(MPI_Testall(static_cast<int>(r.size()), r.data(), &done, MPI_STATUSES_IGNORE));
    if (done != 0) r.clear();
    return done != 0;
  }
  void do_wait(std::int64_t ticket) override {
    auto& r = requests_of(ticket);
    LNF_MPI_CHECK(MPI_Waitall(static_cast<int>(r.size()), r.data(), MPI_STATUSES_IGNORE));
    r.clear();
  }

 private:
  std::vector<MPI_Request>& requests_of(std::int64_t ticket) {
    LNF_EXPECTS_AS(ValueError,
                   ticket >= 0 && ticket < static_cast<std::int64_t>(inflight_.size()) &&
                       !inflight_[static_cast<std::size_t>(ticket)].empty(),
                   "MPI: no operation in flight has ticket {}", ticket);
    return inflight_[static_cast<std::size_t>(ticket)];
  }
  /// MPI counts are int: a large buffer goes in pieces of at most 1 GiB.
  template <class F>
  static void for_each_piece(void* data, std::size_t n, MPI_Datatype type, F&& f) {
    int elem = 0;
    MPI_Type_size(type, &elem);
    std::size_t const max_count = (std::size_t{1} << 30) / static_cast<std::size_t>(elem);
    auto* bytes = static_cast<char*>(data);
    for (std::size_t off = 0; off < n; off += max_count)
      f(bytes + off * static_cast<std::size_t>(elem), static_cast<int>(std::min(max_count, n - off)));
  }
  void reduce(void* data, std::size_t n, MPI_Datatype type) {
    for_each_piece(data, n, type, [&](void* p, int count) {
      LNF_MPI_CHECK(MPI_Allreduce(MPI_IN_PLACE, p, count, type, MPI_SUM, comm_));
    });
  }
  MPI_Comm comm_;
  std::vector<std::vector<MPI_Request>> inflight_;  // by ticket; empty: a free slot
  int rank_ = 0;
  int size_ = 1;
};

}  // namespace lnformer::dist
