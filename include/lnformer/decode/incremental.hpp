#pragma once
// IncrementalDecoder: inference-only, step-by-step decoding of a Seq2Seq model with key/value caches.
//
// start() encodes the sources once and computes, per decoder layer, the encoder-attention keys and
// values of the memory; advance() feeds one token per row and returns that position's logits, so a
// step costs O(t) (attention over the cached keys) instead of re-running the decoder over the whole
// prefix. reorder() selects rows by index (beam search: keep, duplicate or drop hypotheses).
//
// Every normalization policy works unchanged: each sublayer goes through the policy's own
// Residual::forward, with the sublayer replaced by a one-position step (attention with a cache); the
// policies' residual wiring is per-position math, so the outputs are those of the full forward. The
// model runs in evaluation mode (no dropout). Training state is not touched except the scratch
// buffers of the residuals, LayerNorms and feed-forward layers, which the next forward overwrites
// anyway: do not decode between a training forward and its backward.
//
// Cache layout, per layer: keys and values [t, R, d] (position-major, R rows = hypotheses), so that
// reordering gathers only the filled positions, and one step writes one contiguous [R, d] slice.

#include <lnformer/model/batch.hpp>
#include <lnformer/model/seq2seq.hpp>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <span>
#include <utility>
#include <vector>

namespace lnformer {

template <class Norm, class B>
class IncrementalDecoder {
 public:
  explicit IncrementalDecoder(Seq2Seq<Norm, B>& model)
      : model_(&model), d_(model.config().d_model), heads_(model.config().heads),
        layers_(static_cast<std::size_t>(model.config().dec_layers)) {}
  IncrementalDecoder(IncrementalDecoder const&) = delete;
  IncrementalDecoder& operator=(IncrementalDecoder const&) = delete;

  /// Encodes `src` (token ids without EOS, fairseq conventions) and resets to one row per sentence
  /// (row i = sentence i) with nothing fed yet.
  void start(std::vector<std::vector<std::int32_t>> const& src, SpecialTokens sp = {}) {
    LNF_EXPECTS_AS(ValueError, !src.empty(), "IncrementalDecoder::start: no source sentences");
    sp_ = sp;
    batch_ = make_batch<B>(src, std::vector<std::vector<std::int32_t>>(src.size()), sp);
    n_ = batch_.size();
    ts_ = batch_.src.size(1);
    src_len_.resize(src.size());
    for (std::size_t i = 0; i < src.size(); ++i) src_len_[i] = static_cast<std::int64_t>(src[i].size()) + 1;
    CView<B> mem = model_->encoder.forward(batch_.src, batch_.src_pos, batch_.src_mask, eval_);
    auto const mem2 = mem.reshape(Shape{n_ * ts_, d_});
    for (std::size_t l = 0; l < layers_.size(); ++l) {
      auto& a = model_->decoder.layers[l].encoder_attn;
      auto& st = layers_[l];
      st.mk_base = Tensor<B>(Shape{n_, ts_, d_});
      st.mv_base = Tensor<B>(Shape{n_, ts_, d_});
      ops::linear_forward(B{}, st.mk_base.view().reshape(Shape{n_ * ts_, d_}), mem2, a.k_proj.weight.value,
                          a.k_proj.bias.value);
      ops::linear_forward(B{}, st.mv_base.view().reshape(Shape{n_ * ts_, d_}), mem2, a.v_proj.weight.value,
                          a.v_proj.bias.value);
    }
    sent_.resize(static_cast<std::size_t>(n_));
    for (std::int64_t i = 0; i < n_; ++i) sent_[static_cast<std::size_t>(i)] = static_cast<std::int32_t>(i);
    rows_ = n_;
    step_ = 0;
    cross_dirty_ = true;
  }

  /// Rows now decoded in parallel (hypotheses).
  [[nodiscard]] std::int64_t rows() const { return rows_; }
  /// Tokens fed so far per row (the first advance() feeds position 0).
  [[nodiscard]] std::int64_t step() const { return step_; }
  /// The sentence (index into start()'s sources) each row belongs to.
  [[nodiscard]] std::vector<std::int32_t> const& sentence_of_rows() const { return sent_; }
  [[nodiscard]] std::int64_t sentences() const { return n_; }
  [[nodiscard]] Seq2Seq<Norm, B>& model() { return *model_; }
  [[nodiscard]] SpecialTokens const& special_tokens() const { return sp_; }
  /// Number of tokens of sentence i's source, EOS included.
  [[nodiscard]] std::int64_t source_length(std::int64_t i) const { return src_len_.at(static_cast<std::size_t>(i)); }

  /// Feeds token tokens[r] at position step() to every row r; returns the logits [rows, V] of the
  /// next token (valid until the next call). The first token of a hypothesis is EOS (fairseq).
  CView<B> advance(std::span<std::int32_t const> tokens) {
    LNF_EXPECTS_AS(ValueError, static_cast<std::int64_t>(tokens.size()) == rows_,
                   "IncrementalDecoder::advance: {} tokens for {} rows", tokens.size(), rows_);
    LNF_EXPECTS_AS(ValueError, rows_ > 0, "IncrementalDecoder::advance: no rows left");
    auto& emb = model_->target_embedding();
    LNF_EXPECTS_AS(ValueError, step_ < emb.max_positions(),
                   "target length {} exceeds max_positions {} of the model", step_ + 1, emb.max_positions());
    std::int64_t const v = model_->config().vocab;
    for (std::size_t r = 0; r < tokens.size(); ++r)
      LNF_EXPECTS_AS(ValueError, tokens[r] >= 0 && tokens[r] < v && tokens[r] != sp_.pad,
                     "IncrementalDecoder::advance: token {} of row {} is negative, outside the vocabulary of {} or "
                     "the padding id {}",
                     tokens[r], r, v, sp_.pad);
    if (cross_dirty_) update_cross_rows();
    // Self-attention runs over a key length rounded up to kKeyBlock, the positions after this one
    // masked out: the same values, and the CPU backend's primitive cache sees kKeyBlock times fewer
    // shapes. The masked positions hold stale but finite cache entries (or zeros).
    tk_ = (step_ + kKeyBlock) / kKeyBlock * kKeyBlock;
    for (auto& st : layers_) {
      grow(st.k, tk_ * rows_ * d_, step_ * rows_ * d_);
      grow(st.v, tk_ * rows_ * d_, step_ * rows_ * d_);
    }
    if (self_mask_.numel() != tk_ || self_mask_step_ != step_) {
      std::vector<float> m(static_cast<std::size_t>(tk_), 0.f);
      std::fill(m.begin() + step_ + 1, m.end(), -std::numeric_limits<float>::infinity());
      self_mask_ = Tensor<B>(Shape{1, tk_}, std::span<float const>(m));
      self_mask_step_ = step_;
    }
    // Embedding of the new token at position padding_idx + 1 + step (no padding inside a prefix).
    std::vector<std::int32_t> pos(tokens.size(), static_cast<std::int32_t>(emb.padding_idx() + 1 + step_));
    ids_ = Tensor<B, std::int32_t>(Shape{rows_, 1}, tokens);
    pos_ = Tensor<B, std::int32_t>(Shape{rows_, 1}, std::span<std::int32_t const>(pos));
    auto x0 = detail::ensure(x0_, Shape{rows_, 1, d_});
    emb.forward(x0, ids_, pos_);
    CView<B> x = x0;
    for (std::size_t l = 0; l < layers_.size(); ++l) {
      auto& layer = model_->decoder.layers[l];
      StepSelfAttention self{this, l};
      StepCrossAttention cross{this, l};
      detail::FeedForwardSublayer<B> ffn{&layer.ffn};
      x = layer.self_res.forward(x, self, eval_);
      x = layer.cross_res.forward(x, cross, eval_);
      x = layer.ffn_res.forward(x, ffn, eval_);
    }
    x = model_->decoder.final.forward(x);
    auto logits = detail::ensure(logits_, Shape{rows_, v});
    ops::linear_forward(B{}, logits, x.reshape(Shape{rows_, d_}), model_->head.weight().value,
                        model_->head.bias().value);
    ++step_;
    return logits;
  }

  /// New row i continues old row parents[i]: rows may be repeated, reordered or dropped (any number,
  /// zero included).
  void reorder(std::span<std::int32_t const> parents) {
    for (std::size_t i = 0; i < parents.size(); ++i)
      LNF_EXPECTS_AS(ValueError, parents[i] >= 0 && parents[i] < rows_,
                     "IncrementalDecoder::reorder: parent {} of new row {} is outside [0, {})", parents[i], i, rows_);
    auto const r_new = static_cast<std::int64_t>(parents.size());
    bool identity = r_new == rows_;
    for (std::size_t i = 0; identity && i < parents.size(); ++i) identity = parents[i] == static_cast<std::int32_t>(i);
    if (identity) return;
    std::vector<std::int32_t> sent(parents.size());
    for (std::size_t i = 0; i < parents.size(); ++i) sent[i] = sent_[static_cast<std::size_t>(parents[i])];
    if (sent != sent_) cross_dirty_ = true;
    sent_ = std::move(sent);
    if (step_ > 0 && r_new > 0) {
      // ids over the filled positions: new[s, i] = old[s, parents[i]].
      std::vector<std::int32_t> ids(static_cast<std::size_t>(step_ * r_new));
      for (std::int64_t s = 0; s < step_; ++s)
        for (std::int64_t i = 0; i < r_new; ++i)
          ids[static_cast<std::size_t>(s * r_new + i)] =
              static_cast<std::int32_t>(s * rows_) + parents[static_cast<std::size_t>(i)];
      Tensor<B, std::int32_t> const dev_ids(Shape{step_ * r_new}, std::span<std::int32_t const>(ids));
      for (auto& st : layers_) {
        for (Tensor<B>* c : {&st.k, &st.v}) {
          grow(spare_, (step_ + kKeyBlock) * r_new * d_, 0);
          CView<B> table(c->data(), Shape{step_ * rows_, d_});
          ops::embedding_forward(B{}, View<B>(spare_.data(), Shape{step_ * r_new, d_}), table, dev_ids, 1.f);
          std::swap(*c, spare_);
        }
      }
    }
    rows_ = r_new;
  }

 private:
  // The sublayers a policy's Residual wraps during a step (inference only: no backward).
  struct StepSelfAttention {
    IncrementalDecoder* dec;
    std::size_t layer;
    CView<B> forward(CView<B> x, ForwardContext const&) { return dec->self_attention_step(layer, x); }
    CView<B> backward(CView<B>) {
      LNF_EXPECTS_AS(Error, false, "IncrementalDecoder: decoding steps have no backward pass");
      return {};
    }
  };
  struct StepCrossAttention {
    IncrementalDecoder* dec;
    std::size_t layer;
    CView<B> forward(CView<B> x, ForwardContext const&) { return dec->cross_attention_step(layer, x); }
    CView<B> backward(CView<B>) {
      LNF_EXPECTS_AS(Error, false, "IncrementalDecoder: decoding steps have no backward pass");
      return {};
    }
  };

  struct LayerState {
    Tensor<B> k, v;                 // self-attention cache, [t, R, d] in a buffer of some capacity
    Tensor<B> mk_base, mv_base;     // encoder-attention keys/values of the memory, [N, Ts, d]
    Tensor<B> mk_rows, mv_rows;     // the same per row, [R, Ts, d] (when rows differ from sentences)
  };

  /// t holds at least `need` floats afterwards, its first `keep` preserved (capacity doubles).
  static void grow(Tensor<B>& t, std::int64_t need, std::int64_t keep) {
    if (t.numel() >= need) return;
    Tensor<B> bigger(Shape{std::max(need, 2 * t.numel())});
    if (keep > 0) ops::copy(B{}, View<B>(bigger.data(), Shape{keep}), CView<B>(t.data(), Shape{keep}));
    t = std::move(bigger);
  }

  /// Per-row encoder-attention keys/values and the source mask, after the rows' sentences changed.
  void update_cross_rows() {
    bool const identity = rows_ == n_ && [&] {
      for (std::int64_t i = 0; i < n_; ++i)
        if (sent_[static_cast<std::size_t>(i)] != i) return false;
      return true;
    }();
    cross_identity_ = identity;
    if (!identity && rows_ > 0) {
      Tensor<B, std::int32_t> const ids(Shape{rows_}, std::span<std::int32_t const>(sent_));
      for (auto& st : layers_) {
        for (auto [base, rows] : {std::pair{&st.mk_base, &st.mk_rows}, std::pair{&st.mv_base, &st.mv_rows}}) {
          auto out = detail::ensure(*rows, Shape{rows_, ts_ * d_});
          ops::embedding_forward(B{}, out, base->cview().reshape(Shape{n_, ts_ * d_}), ids, 1.f);
        }
      }
    }
    std::vector<float> mask(static_cast<std::size_t>(rows_ * ts_), 0.f);
    for (std::int64_t r = 0; r < rows_; ++r)
      for (std::int64_t j = src_len_[static_cast<std::size_t>(sent_[static_cast<std::size_t>(r)])]; j < ts_; ++j)
        mask[static_cast<std::size_t>(r * ts_ + j)] = -std::numeric_limits<float>::infinity();
    mask_ = Tensor<B>(Shape{rows_, 1, 1, ts_}, std::span<float const>(mask));
    cross_dirty_ = false;
  }

  /// softmax(q K^T / sqrt(dh) + mask) V then the output projection, for one query position per row.
  /// kt [R, H, dh, Tk], vh [R, H, Tk, dh] (any strides).
  CView<B> attend(MultiHeadAttention<B>& a, CView<B> x, CView<B> kt, CView<B> vh, CView<B> mask) {
    std::int64_t const dh = d_ / heads_, tk = kt.size(3);
    auto q = detail::ensure(q_, Shape{rows_, d_});
    ops::linear_forward(B{}, q, x.reshape(Shape{rows_, d_}), a.q_proj.weight.value, a.q_proj.bias.value);
    CView<B> const qh = CView<B>(q).reshape(Shape{rows_, 1, heads_, dh}).permute({0, 2, 1, 3});  // [R,H,1,dh]
    auto probs = detail::ensure(probs_, Shape{rows_, heads_, 1, tk});
    ops::matmul(B{}, probs, qh, kt, 1.f, 0.f);
    ops::softmax_forward(B{}, probs, probs, mask, static_cast<float>(1.0 / std::sqrt(static_cast<double>(dh))));
    auto ctx = detail::ensure(ctx_, Shape{rows_, heads_, 1, dh});
    ops::matmul(B{}, ctx, CView<B>(probs), vh, 1.f, 0.f);
    // [R, H, 1, dh] is laid out as [R, 1, H, dh]: the heads merge without a copy.
    auto out = detail::ensure(out_, Shape{rows_, 1, d_});
    ops::linear_forward(B{}, out.reshape(Shape{rows_, d_}), CView<B>(ctx).reshape(Shape{rows_, d_}),
                        a.out_proj.weight.value, a.out_proj.bias.value);
    return out;
  }

  CView<B> self_attention_step(std::size_t l, CView<B> x) {
    auto& a = model_->decoder.layers[l].self_attn;
    auto& st = layers_[l];
    std::int64_t const dh = d_ / heads_;
    auto const x2 = x.reshape(Shape{rows_, d_});
    // This position's key and value go straight into the cache slice.
    ops::linear_forward(B{}, View<B>(st.k.data() + step_ * rows_ * d_, Shape{rows_, d_}), x2,
                        a.k_proj.weight.value, a.k_proj.bias.value);
    ops::linear_forward(B{}, View<B>(st.v.data() + step_ * rows_ * d_, Shape{rows_, d_}), x2,
                        a.v_proj.weight.value, a.v_proj.bias.value);
    CView<B> const k(st.k.data(), Shape{tk_, rows_, heads_, dh});
    CView<B> const v(st.v.data(), Shape{tk_, rows_, heads_, dh});
    return attend(a, x, k.permute({1, 2, 3, 0}), v.permute({1, 2, 0, 3}), self_mask_);
  }

  CView<B> cross_attention_step(std::size_t l, CView<B> x) {
    auto& a = model_->decoder.layers[l].encoder_attn;
    auto& st = layers_[l];
    std::int64_t const dh = d_ / heads_;
    Tensor<B>& mk = cross_identity_ ? st.mk_base : st.mk_rows;
    Tensor<B>& mv = cross_identity_ ? st.mv_base : st.mv_rows;
    CView<B> const k(mk.data(), Shape{rows_, ts_, heads_, dh});
    CView<B> const v(mv.data(), Shape{rows_, ts_, heads_, dh});
    return attend(a, x, k.permute({0, 2, 3, 1}), v.permute({0, 2, 1, 3}), mask_);
  }

  static constexpr std::int64_t kKeyBlock = 8;

  Seq2Seq<Norm, B>* model_;
  std::int64_t d_, heads_, tk_ = 0, self_mask_step_ = -1;
  std::vector<LayerState> layers_;
  ForwardContext eval_{.training = false};
  SpecialTokens sp_{};
  Batch<B> batch_;
  std::int64_t n_ = 0, ts_ = 0, rows_ = 0, step_ = 0;
  std::vector<std::int64_t> src_len_;
  std::vector<std::int32_t> sent_;
  bool cross_dirty_ = true, cross_identity_ = true;
  Tensor<B> spare_, mask_, self_mask_, x0_, q_, probs_, ctx_, out_, logits_;
  Tensor<B, std::int32_t> ids_, pos_;
};

}  // namespace lnformer
