#pragma once
// The CPU backend's per-thread context, which holds the oneDNN engine, stream and a cache of
// primitives keyed by shape (primitives are created once per distinct problem, never per call).
// The tag `Cpu` and its memory traits are in cpu/tag.hpp.

#include <lnformer/core/error.hpp>
#include <lnformer/backend/cpu/tag.hpp>
#include <lnformer/core/tensor.hpp>

#include <oneapi/dnnl/dnnl.hpp>

#include <array>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <new>
#include <string>
#include <string_view>
#include <list>
#include <unordered_map>


/// Run a oneDNN call; a dnnl::error becomes an lnformer::BackendError naming the call and status.
#define LNF_DNNL_CHECK(...)                                                                     \
  do {                                                                                          \
    try {                                                                                       \
      __VA_ARGS__;                                                                              \
    } catch (dnnl::error const& e) {                                                            \
      throw ::lnformer::BackendError(fmt::format("oneDNN call `{}` failed: {} (status {}) at {}", \
                                                 #__VA_ARGS__, e.what(), static_cast<int>(e.status), \
                                                 ::lnformer::detail::where(::lnformer::SourceLocation::current()))); \
    }                                                                                           \
  } while (false)

namespace lnformer::cpu {

namespace detail {
struct CacheEntryBase {
  virtual ~CacheEntryBase() = default;
};

/// oneDNN keeps a process-wide cache of primitives (1024 by default) behind the contexts' caches, so
/// every primitive a context evicts stays alive there. Each costs megabytes (JIT code and kernel
/// tables), and token-based batches make thousands of distinct shapes: a default translation run
/// grew to 14 GB. The contexts' caches are the one cache, so oneDNN's is set to 0 at first use,
/// unless the user set ONEDNN_PRIMITIVE_CACHE_CAPACITY (or the older DNNL_ name) themselves.
inline void limit_onednn_primitive_cache() {
  static bool const done = [] {
    if (std::getenv("ONEDNN_PRIMITIVE_CACHE_CAPACITY") == nullptr &&
        std::getenv("DNNL_PRIMITIVE_CACHE_CAPACITY") == nullptr)
      dnnl::set_primitive_cache_capacity(0);
    return true;
  }();
  (void)done;
}
}  // namespace detail

/// Per-thread oneDNN state. `context()` returns this thread's instance, created on first use.
class Context {
 public:
  Context() {
    detail::limit_onednn_primitive_cache();
    LNF_DNNL_CHECK(engine_ = dnnl::engine(dnnl::engine::kind::cpu, 0); stream_ = dnnl::stream(engine_));
    if (char const* env = std::getenv("LNF_CPU_CACHE_CAPACITY"); env != nullptr && *env != '\0') {
      char* end = nullptr;
      unsigned long long const n = std::strtoull(env, &end, 10);
      LNF_EXPECTS_AS(ValueError, end != nullptr && *end == '\0' && n >= 16,
                     "LNF_CPU_CACHE_CAPACITY='{}': expected a whole number of entries, at least 16", env);
      capacity_ = static_cast<std::size_t>(n);
    }
  }
  Context(Context const&) = delete;
  Context& operator=(Context const&) = delete;

  [[nodiscard]] dnnl::engine& engine() { return engine_; }
  [[nodiscard]] dnnl::stream& stream() { return stream_; }

  /// The cached entry of type E for `key`, built by `make()` the first time the key is seen.
  /// E must derive from detail::CacheEntryBase; one key must always be used with one type.
  /// The cache keeps the `capacity()` most recently used entries: varying shapes (token-based
  /// batches, decoding) would otherwise grow it without bound. The reference returned stays valid
  /// until the next `capacity()` distinct keys have been used.
  template <class E, class Make>
  E& cached(std::string const& key, Make&& make) {
    auto it = cache_.find(key);
    ++lookups_;
    if (it != cache_.end()) {
      lru_.splice(lru_.begin(), lru_, it->second.pos);  // most recently used first
      return static_cast<E&>(*it->second.entry);
    }
    ++misses_;
    std::unique_ptr<detail::CacheEntryBase> entry;
    LNF_DNNL_CHECK(entry = std::make_unique<E>(make()));
    lru_.push_front(key);
    it = cache_.emplace(key, Slot{std::move(entry), lru_.begin()}).first;
    evict();
    return static_cast<E&>(*it->second.entry);
  }
  [[nodiscard]] std::size_t cached_primitives() const { return cache_.size(); }
  /// Lookups and misses (entries built) since this context was made, to read the cache's hit rate.
  [[nodiscard]] std::uint64_t cache_lookups() const { return lookups_; }
  [[nodiscard]] std::uint64_t cache_misses() const { return misses_; }
  [[nodiscard]] std::size_t capacity() const { return capacity_; }
  /// At least 16: one op may hold a few entries at once.
  void set_capacity(std::size_t n) {
    LNF_EXPECTS_AS(ValueError, n >= 16, "cpu::Context::set_capacity: {} entries is too few (at least 16)", n);
    capacity_ = n;
    evict();
  }
  void clear_cache() {
    cache_.clear();
    lru_.clear();
  }

  /// Buffer `slot` (0 .. kWorkspaceSlots-1) of this thread, at least `bytes` long, 64-byte aligned.
  /// Per-call working memory (oneDNN scratchpads, packed operands) lives here rather than in cache
  /// entries: a buffer per entry cost gigabytes with thousands of cached shapes, one per slot costs
  /// the largest single need. Valid until the next call for the same slot with more bytes.
  static constexpr int kWorkspaceSlots = 4;
  [[nodiscard]] void* workspace(int slot, std::size_t bytes) {
    LNF_EXPECTS(slot >= 0 && slot < kWorkspaceSlots, "cpu::Context::workspace: slot {} of {}", slot, kWorkspaceSlots);
    auto& w = workspace_[static_cast<std::size_t>(slot)];
    if (w.bytes < bytes) {
      std::size_t const size = (bytes + 63) / 64 * 64;
      w.data.reset(static_cast<std::byte*>(::operator new(size, std::align_val_t{64})));
      w.bytes = size;
    }
    return w.data.get();
  }
  /// Bytes held by buffer `slot` / by all of them.
  [[nodiscard]] std::size_t workspace_bytes(int slot) const {
    LNF_EXPECTS(slot >= 0 && slot < kWorkspaceSlots, "cpu::Context::workspace_bytes: slot {} of {}", slot, kWorkspaceSlots);
    return workspace_[static_cast<std::size_t>(slot)].bytes;
  }
  [[nodiscard]] std::size_t workspace_bytes() const {
    std::size_t n = 0;
    for (auto const& w : workspace_) n += w.bytes;
    return n;
  }

 private:
  struct Slot {
    std::unique_ptr<detail::CacheEntryBase> entry;
    std::list<std::string>::iterator pos;
  };
  void evict() {
    while (cache_.size() > capacity_) {
      cache_.erase(lru_.back());
      lru_.pop_back();
    }
  }

  struct AlignedDelete {
    void operator()(std::byte* p) const { ::operator delete(p, std::align_val_t{64}); }
  };
  struct Workspace {
    std::unique_ptr<std::byte, AlignedDelete> data;
    std::size_t bytes = 0;
  };

  dnnl::engine engine_;
  dnnl::stream stream_;
  std::array<Workspace, kWorkspaceSlots> workspace_;
  // Measured on 20 steps of the default translation model (2 cores, 2026-11-29): peak RSS 3.2 GB
  // with 64 entries, 4.0 GB with 128 (oneDNN's cache at 0 in both), 7.4 GB with the former 2048 and
  // oneDNN's cache at its default; 64 was no slower (179 s against 213 s, on a busy machine).
  std::size_t capacity_ = 64;
  std::uint64_t lookups_ = 0, misses_ = 0;
  std::list<std::string> lru_;  // keys, most recently used first
  std::unordered_map<std::string, Slot> cache_;
};

inline Context& context() {
  thread_local Context ctx;
  return ctx;
}

}  // namespace lnformer::cpu
