#pragma once
// Token embedding scaled by sqrt(d) plus fixed sinusoidal positions, fairseq's convention:
//   y = sqrt(d) * E[token] + P[position],  E ~ N(0, d^-1/2) with the padding row zero,
// positions count from padding_idx + 1 over non-padding tokens; padding tokens get the zero row.
// (fairseq's sinusoid layout: the first half of the channels are sines, the second half cosines.)

#include <lnformer/nn/init.hpp>
#include <lnformer/nn/parameter.hpp>
#include <lnformer/ops/elementwise.hpp>
#include <lnformer/ops/embedding.hpp>

#include <cmath>
#include <vector>

namespace lnformer {

/// Sinusoidal position table [max_positions + padding_idx + 1, d] with the padding row zero.
template <class B>
Tensor<B> sinusoidal_positions(std::int64_t max_positions, std::int64_t d, std::int32_t padding_idx) {
  std::int64_t const rows = max_positions + padding_idx + 1, half = d / 2;
  LNF_EXPECTS_AS(ValueError, half >= 2, "sinusoidal positions need d >= 4, got {}", d);
  std::vector<float> h(static_cast<std::size_t>(rows * d), 0.f);
  double const step = std::log(10000.0) / static_cast<double>(half - 1);
  for (std::int64_t p = 0; p < rows; ++p) {
    if (p == padding_idx) continue;
    for (std::int64_t i = 0; i < half; ++i) {
      double const a = static_cast<double>(p) * std::exp(-step * static_cast<double>(i));
      h[static_cast<std::size_t>(p * d + i)] = static_cast<float>(std::sin(a));
      h[static_cast<std::size_t>(p * d + half + i)] = static_cast<float>(std::cos(a));
    }
  }
  return Tensor<B>(Shape{rows, d}, std::span<float const>(h));
}

/// Position ids for right- or left-padded token ids [N, T] (host-side): non-padding tokens count
/// padding_idx + 1, padding_idx + 2, ...; padding tokens get padding_idx.
inline std::vector<std::int32_t> make_positions(std::span<std::int32_t const> ids, std::int64_t n, std::int64_t t,
                                                std::int32_t padding_idx) {
  std::vector<std::int32_t> pos(ids.size());
  for (std::int64_t b = 0; b < n; ++b) {
    std::int32_t next = padding_idx + 1;
    for (std::int64_t j = 0; j < t; ++j) {
      auto const k = static_cast<std::size_t>(b * t + j);
      pos[k] = ids[k] == padding_idx ? padding_idx : next++;
    }
  }
  return pos;
}

template <class B>
class TokenEmbedding {
 public:
  TokenEmbedding() = default;
  TokenEmbedding(std::int64_t vocab, std::int64_t d, std::int64_t max_positions, std::int32_t padding_idx)
      : weight(Shape{vocab, d}), d_(d), padding_idx_(padding_idx),
        positions_(sinusoidal_positions<B>(max_positions, d, padding_idx)), max_positions_(max_positions) {}

  Parameter<B> weight;  // [vocab, d]

  /// fairseq's default: N(0, d^-1/2), padding row 0.
  void reset_parameters(Rng& rng) {
    init::normal(weight.value, rng, 1.0 / std::sqrt(static_cast<double>(d_)));
    zero_padding_row();
  }
  void zero_padding_row() {
    if (padding_idx_ < 0 || padding_idx_ >= weight.value.size(0)) return;
    std::vector<float> h = weight.value.to_host();
    std::fill_n(h.begin() + padding_idx_ * d_, d_, 0.f);
    weight.value = Tensor<B>(weight.value.shape(), std::span<float const>(h));
  }

  /// y [N, T, d] = sqrt(d) E[ids] + P[positions], ids and positions [N, T]. The output buffer is the
  /// caller's: one embedding may serve the encoder, the decoder and the output projection at once.
  void forward(View<B> y, TensorView<B, std::int32_t const> ids, TensorView<B, std::int32_t const> positions) {
    LNF_EXPECTS(positions.shape() == ids.shape(), "TokenEmbedding: ids {} and positions {} differ", ids.shape(),
                positions.shape());
    check_output("forward", "y", y.shape(), ids.shape());
    ops::embedding_forward(B{}, y, weight.value, ids, embed_scale());
    auto p = detail::ensure(pos_buf_, y.shape());
    ops::embedding_forward(B{}, p, positions_, positions, 1.f);
    ops::add(B{}, y, y, p);
  }
  /// Accumulates into the embedding gradient for the tokens `ids` of the matching forward.
  void backward(CView<B> dy, TensorView<B, std::int32_t const> ids) {
    check_output("backward", "dy", dy.shape(), ids.shape());
    ops::embedding_backward(B{}, weight.grad, dy, ids, embed_scale(), padding_idx_);
  }
  [[nodiscard]] std::int64_t dim() const { return d_; }
  [[nodiscard]] std::int32_t padding_idx() const { return padding_idx_; }

  [[nodiscard]] float embed_scale() const { return static_cast<float>(std::sqrt(static_cast<double>(d_))); }
  [[nodiscard]] std::int64_t max_positions() const { return max_positions_; }
  void collect(std::string const& prefix, ParameterList<B>& out) {
    out.push_back({detail::join_name(prefix, "weight"), &weight});
  }

 private:
  /// y (or dy) must be [*ids.shape, d]: the op alone accepts any layout with as many elements.
  void check_output(char const* op, char const* name, Shape const& y, Shape const& ids) const {
    bool ok = y.rank() == ids.rank() + 1 && y[-1] == d_;
    for (int i = 0; ok && i < ids.rank(); ++i) ok = y[i] == ids[i];
    LNF_EXPECTS(ok, "TokenEmbedding::{}: {} has shape {} but ids has shape {}; {} must be ids' shape + [{}]", op,
                name, y, ids, name, d_);
  }

  std::int64_t d_ = 0;
  std::int32_t padding_idx_ = 1;
  Tensor<B> positions_;
  std::int64_t max_positions_ = 0;
  Tensor<B> pos_buf_;
};

}  // namespace lnformer
