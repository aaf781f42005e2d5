#pragma once
// Tensor<B, T> owns memory of backend B; TensorView<B, T> is a non-owning window (pointer, shape,
// strides in elements). Views are cheap to copy and are what ops take. A const view is
// TensorView<B, const T>; every view converts to its const form.
//
// Memory comes from BackendTraits<B>, which each backend specialises:
//   static void* allocate(std::size_t bytes);  static void deallocate(void*) noexcept;
//   static void copy(void* dst, void const* src, std::size_t bytes);       // within the backend
//   static void to_host(void* dst, void const* src, std::size_t bytes);    // backend -> host
//   static void from_host(void* dst, void const* src, std::size_t bytes);  // host -> backend
//   static void fill_zero(void* dst, std::size_t bytes);
//   static constexpr bool host_accessible;  static constexpr std::string_view name;

#include <lnformer/core/error.hpp>
#include <lnformer/core/shape.hpp>

#include <array>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

namespace lnformer {

template <class B>
struct BackendTraits;  // specialised by each backend

using Strides = std::array<std::int64_t, kMaxRank>;

namespace detail {
inline Strides contiguous_strides(Shape const& s) {
  Strides st{};
  std::int64_t acc = 1;
  for (int i = s.rank() - 1; i >= 0; --i) {
    st[i] = acc;
    acc *= s[i];
  }
  return st;
}
}  // namespace detail

template <class B, class T = float>
class TensorView {
 public:
  using value_type = T;
  using backend = B;

  TensorView() = default;
  TensorView(T* data, Shape shape) : data_(data), shape_(shape), strides_(detail::contiguous_strides(shape)) {}
  TensorView(T* data, Shape shape, Strides strides) : data_(data), shape_(shape), strides_(strides) {}
  /// Every view converts to its const form.
  template <class U>
    requires(std::is_const_v<T> && std::is_same_v<std::remove_const_t<T>, U>)
  TensorView(TensorView<B, U> const& v) : data_(v.data()), shape_(v.shape()), strides_(v.strides()) {}

  [[nodiscard]] T* data() const { return data_; }
  [[nodiscard]] Shape const& shape() const { return shape_; }
  [[nodiscard]] Strides const& strides() const { return strides_; }
  [[nodiscard]] int rank() const { return shape_.rank(); }
  [[nodiscard]] std::int64_t size(int i) const { return shape_[i]; }
  [[nodiscard]] std::int64_t stride(int i) const {
    int const j = i < 0 ? i + rank() : i;
    LNF_EXPECTS(j >= 0 && j < rank(), "stride index {} out of range for a view of shape {}", i, shape_);
    return strides_[j];
  }
  [[nodiscard]] std::int64_t numel() const { return shape_.numel(); }
  [[nodiscard]] bool empty() const { return data_ == nullptr || numel() == 0; }

  [[nodiscard]] bool is_contiguous() const {
    if (numel() == 0) return true;
    std::int64_t acc = 1;
    for (int i = rank() - 1; i >= 0; --i) {
      if (shape_[i] != 1 && strides_[i] != acc) return false;
      acc *= shape_[i];
    }
    return true;
  }

  /// Element access for host-accessible backends (tests, reference code). Bounds-checked.
  template <class... I>
  [[nodiscard]] T& operator()(I... idx) const {
    static_assert(BackendTraits<B>::host_accessible, "element access needs a host-accessible backend");
    std::array<std::int64_t, sizeof...(I)> const ix{static_cast<std::int64_t>(idx)...};
    LNF_EXPECTS(static_cast<int>(ix.size()) == rank(), "indexing a view of shape {} with {} indices",
                shape_, ix.size());
    std::int64_t off = 0;
    for (int i = 0; i < rank(); ++i) {
      LNF_EXPECTS(ix[i] >= 0 && ix[i] < shape_[i], "index {} out of range in dimension {} of shape {}",
                  ix[i], i, shape_);
      off += ix[i] * strides_[i];
    }
    return data_[off];
  }

  /// Same memory, new shape; the view must be contiguous and the element count must match.
  [[nodiscard]] TensorView reshape(Shape s) const {
    LNF_EXPECTS(is_contiguous(), "reshape of a non-contiguous view of shape {}", shape_);
    LNF_EXPECTS(s.numel() == numel(), "cannot reshape {} ({} elements) to {} ({} elements)", shape_,
                numel(), s, s.numel());
    return TensorView(data_, s);
  }
  /// Swap the last two dimensions (no copy).
  [[nodiscard]] TensorView transposed() const {
    LNF_EXPECTS(rank() >= 2, "transposed() needs rank >= 2, got shape {}", shape_);
    return permuted_last2();
  }
  /// Rows [begin, end) of dimension 0 (no copy).
  [[nodiscard]] TensorView slice(std::int64_t begin, std::int64_t end) const {
    LNF_EXPECTS(rank() >= 1 && 0 <= begin && begin <= end && end <= shape_[0],
                "slice [{}, {}) out of range for shape {}", begin, end, shape_);
    std::vector<std::int64_t> d(shape_.begin(), shape_.end());
    d[0] = end - begin;
    return TensorView(data_ + begin * strides_[0], Shape::from(d.begin(), d.end()), strides_);
  }
  /// Generalised permutation of dimensions (no copy): result dim i is source dim perm[i].
  [[nodiscard]] TensorView permute(std::initializer_list<int> perm) const {
    LNF_EXPECTS(static_cast<int>(perm.size()) == rank(), "permute with {} axes of a view of shape {}",
                perm.size(), shape_);
    std::vector<std::int64_t> d;
    Strides st{};
    int i = 0;
    unsigned seen = 0;
    for (int p : perm) {
      LNF_EXPECTS(p >= 0 && p < rank() && !(seen >> p & 1u), "invalid permutation axis {} for shape {}",
                  p, shape_);
      seen |= 1u << p;
      d.push_back(shape_[p]);
      st[i++] = strides_[p];
    }
    return TensorView(data_, Shape::from(d.begin(), d.end()), st);
  }

 private:
  TensorView permuted_last2() const {
    std::vector<std::int64_t> d(shape_.begin(), shape_.end());
    Strides st = strides_;
    std::swap(d[rank() - 1], d[rank() - 2]);
    std::swap(st[rank() - 1], st[rank() - 2]);
    return TensorView(data_, Shape::from(d.begin(), d.end()), st);
  }

  T* data_ = nullptr;
  Shape shape_{0};  // a default view is empty (0 elements), not a scalar
  Strides strides_{};
};

template <class B>
using View = TensorView<B, float>;
template <class B>
using CView = TensorView<B, float const>;

/// Owning, contiguous, move-only tensor in the memory of backend B.
template <class B, class T = float>
class Tensor {
  static_assert(std::is_trivially_copyable_v<T> && !std::is_const_v<T>,
                "Tensor<B, T> holds trivially copyable, non-const elements");

 public:
  using value_type = T;
  using backend = B;

  Tensor() = default;
  /// Zero-initialised tensor of the given shape.
  explicit Tensor(Shape shape) : shape_(shape) {
    auto const n = static_cast<std::size_t>(shape.numel());
    if (n != 0) {
      try {
        data_ = static_cast<T*>(BackendTraits<B>::allocate(n * sizeof(T)));
      } catch (OutOfMemoryError const& e) {  // say which tensor could not be made
        throw OutOfMemoryError(fmt::format("{} (a tensor of shape {}, {} elements of {} bytes)", e.what(), shape,
                                           n, sizeof(T)));
      }
      BackendTraits<B>::fill_zero(data_, n * sizeof(T));
    }
  }
  /// Tensor holding a copy of host values (row-major).
  Tensor(Shape shape, std::span<T const> host) : Tensor(shape) {
    LNF_EXPECTS(static_cast<std::int64_t>(host.size()) == shape.numel(),
                "{} host values for a tensor of shape {} ({} elements)", host.size(), shape, shape.numel());
    if (!host.empty()) BackendTraits<B>::from_host(data_, host.data(), host.size() * sizeof(T));
  }
  Tensor(Tensor&& o) noexcept : data_(std::exchange(o.data_, nullptr)), shape_(std::exchange(o.shape_, Shape{0})) {}
  Tensor& operator=(Tensor&& o) noexcept {
    if (this != &o) {
      release();
      data_ = std::exchange(o.data_, nullptr);
      shape_ = std::exchange(o.shape_, Shape{0});
    }
    return *this;
  }
  Tensor(Tensor const&) = delete;
  Tensor& operator=(Tensor const&) = delete;
  ~Tensor() { release(); }

  [[nodiscard]] Tensor clone() const {
    Tensor t(shape_);
    if (numel() != 0) BackendTraits<B>::copy(t.data_, data_, bytes());
    return t;
  }

  [[nodiscard]] T* data() { return data_; }
  [[nodiscard]] T const* data() const { return data_; }
  [[nodiscard]] Shape const& shape() const { return shape_; }
  [[nodiscard]] int rank() const { return shape_.rank(); }
  [[nodiscard]] std::int64_t size(int i) const { return shape_[i]; }
  [[nodiscard]] std::int64_t numel() const { return shape_.numel(); }
  [[nodiscard]] std::size_t bytes() const { return static_cast<std::size_t>(numel()) * sizeof(T); }

  [[nodiscard]] TensorView<B, T> view() { return {data_, shape_}; }
  [[nodiscard]] TensorView<B, T const> view() const { return {data_, shape_}; }
  [[nodiscard]] TensorView<B, T const> cview() const { return {data_, shape_}; }
  operator TensorView<B, T>() { return view(); }                 // NOLINT: views are the currency
  operator TensorView<B, T const>() const { return cview(); }    // NOLINT

  template <class... I>
  [[nodiscard]] T& operator()(I... idx) { return view()(idx...); }
  template <class... I>
  [[nodiscard]] T const& operator()(I... idx) const { return cview()(idx...); }

  /// Copy of the contents on the host, row-major.
  [[nodiscard]] std::vector<T> to_host() const {
    std::vector<T> h(static_cast<std::size_t>(numel()));
    if (!h.empty()) BackendTraits<B>::to_host(h.data(), data_, bytes());
    return h;
  }
  void zero() {
    if (numel() != 0) BackendTraits<B>::fill_zero(data_, bytes());
  }

 private:
  void release() noexcept {
    if (data_ != nullptr) BackendTraits<B>::deallocate(data_);
    data_ = nullptr;
  }
  T* data_ = nullptr;
  Shape shape_{0};  // a default tensor is empty (0 elements), not a scalar
};

}  // namespace lnformer
