#pragma once
// Shape: up to kMaxRank dimensions, stored inline (no allocation), printable with fmt.

#include <lnformer/core/error.hpp>

#include <fmt/format.h>

#include <algorithm>
#include <array>
#include <cstdint>
#include <initializer_list>
#include <string>

namespace lnformer {

inline constexpr int kMaxRank = 6;

class Shape {
 public:
  constexpr Shape() = default;
  Shape(std::initializer_list<std::int64_t> dims) {
    LNF_EXPECTS(dims.size() <= kMaxRank, "shape of rank {} exceeds the maximum rank {}", dims.size(),
                kMaxRank);
    for (auto d : dims) {
      LNF_EXPECTS_AS(ValueError, d >= 0, "negative dimension {} in a shape", d);
      dims_[rank_++] = d;
    }
  }
  template <class It>
  static Shape from(It first, It last) {
    Shape s;
    for (; first != last; ++first) {
      LNF_EXPECTS(s.rank_ < kMaxRank, "shape exceeds the maximum rank {}", kMaxRank);
      LNF_EXPECTS_AS(ValueError, *first >= 0, "negative dimension {} in a shape", *first);
      s.dims_[s.rank_++] = static_cast<std::int64_t>(*first);
    }
    return s;
  }

  [[nodiscard]] constexpr int rank() const { return rank_; }
  /// This shape with its last dimension replaced by n (rank >= 1).
  [[nodiscard]] Shape with_last(std::int64_t n) const {
    LNF_EXPECTS(rank_ >= 1, "with_last({}) of a rank-0 shape", n);
    LNF_EXPECTS_AS(ValueError, n >= 0, "negative dimension {} in a shape", n);
    Shape s = *this;
    s.dims_[rank_ - 1] = n;
    return s;
  }
  /// Dimension i; negative i counts from the end (-1 is the last dimension).
  [[nodiscard]] std::int64_t operator[](int i) const {
    int const j = i < 0 ? i + rank_ : i;
    LNF_EXPECTS(j >= 0 && j < rank_, "dimension index {} out of range for a shape of rank {}", i,
                rank_);
    return dims_[j];
  }
  [[nodiscard]] constexpr std::int64_t numel() const {
    std::int64_t n = 1;
    for (int i = 0; i < rank_; ++i) n *= dims_[i];
    return n;
  }
  [[nodiscard]] constexpr std::int64_t const* begin() const { return dims_.data(); }
  [[nodiscard]] constexpr std::int64_t const* end() const { return dims_.data() + rank_; }
  friend constexpr bool operator==(Shape const& a, Shape const& b) {
    return a.rank_ == b.rank_ && std::equal(a.begin(), a.end(), b.begin());
  }
  [[nodiscard]] std::string str() const { return fmt::format("[{}]", fmt::join(begin(), end(), ", ")); }

 private:
  std::array<std::int64_t, kMaxRank> dims_{};
  int rank_ = 0;
};

}  // namespace lnformer

template <>
struct fmt::formatter<lnformer::Shape> : fmt::formatter<std::string> {
  auto format(lnformer::Shape const& s, format_context& ctx) const {
    return fmt::formatter<std::string>::format(s.str(), ctx);
  }
};
