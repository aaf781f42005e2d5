#pragma once
// Multi-head attention (fairseq's MultiheadAttention): q/k/v/out projections, softmax(QK^T/sqrt(dh)
// + mask) with attention dropout, for self-attention (memory = query), causal self-attention (a
// causal mask) and encoder-decoder attention (memory = encoder output).

#include <lnformer/nn/dropout.hpp>
#include <lnformer/nn/linear.hpp>
#include <lnformer/ops/elementwise.hpp>
#include <lnformer/ops/matmul.hpp>
#include <lnformer/ops/softmax.hpp>

#include <cmath>
#include <utility>

namespace lnformer {

enum class AttentionKind { self, cross };

template <class B>
class MultiHeadAttention {
 public:
  MultiHeadAttention() = default;
  MultiHeadAttention(std::int64_t d, std::int64_t heads, float attention_dropout, AttentionKind kind,
                     std::string_view site)
      : q_proj(d, d), k_proj(d, d), v_proj(d, d), out_proj(d, d), d_(d), heads_(heads), kind_(kind),
        drop_(attention_dropout, std::string(site) + ".attention_dropout") {
    LNF_EXPECTS_AS(ValueError, heads > 0 && d % heads == 0,
                   "MultiHeadAttention: d_model {} is not divisible by the number of heads {}", d, heads);
  }

  Linear<B> q_proj, k_proj, v_proj, out_proj;

  /// query [N, Tq, d]; memory [N, Tk, d] (for self-attention pass the query again); mask additive,
  /// broadcastable to [N, heads, Tq, Tk] ([N, 1, 1, Tk] key padding, [Tq, Tk] causal) or empty.
  ///
  /// The projections that read the same input run as one GEMM (StackedLinear): q, k and v of
  /// self-attention, k and v of cross-attention. The heads are strided views of that output, and
  /// backward writes the heads' gradients side by side so that one GEMM returns d input.
  CView<B> forward(CView<B> query, CView<B> memory, CView<B> mask, ForwardContext const& ctx) {
    LNF_EXPECTS(query.rank() == 3 && memory.rank() == 3 && query.size(2) == d_ && memory.size(2) == d_ &&
                    query.size(0) == memory.size(0),
                "MultiHeadAttention: query {} and memory {} must be [N, T, {}] with the same N", query.shape(),
                memory.shape(), d_);
    std::int64_t const n = query.size(0), tq = query.size(1), tk = memory.size(1), dh = d_ / heads_;
    scale_ = static_cast<float>(1.0 / std::sqrt(static_cast<double>(dh)));
    if (kind_ == AttentionKind::self) {
      LNF_EXPECTS_AS(ValueError, memory.data() == query.data() && memory.shape() == query.shape(),
                     "MultiHeadAttention: self-attention takes the query as its memory (query {}, memory {} "
                     "elsewhere); attend to another sequence with AttentionKind::cross",
                     query.shape(), memory.shape());
      auto qkv = qkv_.forward({&q_proj, &k_proj, &v_proj}, query);  // [N, T, 3d]: q | k | v per row
      qh_ = heads(qkv, 0, tq);
      kt_ = swap_last2(heads(qkv, d_, tk));
      vh_ = heads(qkv, 2 * d_, tk);
    } else {
      qh_ = heads(q_proj.forward(query), 0, tq);
      auto kv = qkv_.forward({&k_proj, &v_proj}, memory);  // [N, Tk, 2d]: k | v per row
      kt_ = swap_last2(heads(kv, 0, tk));
      vh_ = heads(kv, d_, tk);
    }
    probs_ = detail::ensure(probs_buf_, Shape{n, heads_, tq, tk});
    ops::matmul(B{}, probs_, qh_, kt_);
    ops::softmax_forward(B{}, probs_, probs_, mask, scale_);  // in place: scores are not needed again
    pd_ = drop_.forward(probs_, ctx);
    auto ctxh = detail::ensure(ctxh_buf_, Shape{n, heads_, tq, dh});
    ops::matmul(B{}, ctxh, pd_, vh_);
    auto merged = detail::ensure(merged_buf_, Shape{n, tq, heads_, dh});
    ops::copy(B{}, merged, CView<B>(ctxh).permute({0, 2, 1, 3}));
    return out_proj.forward(CView<B>(merged).reshape(Shape{n, tq, d_}));
  }

  /// dy [N, Tq, d] -> d query. For self-attention the k/v paths are included; for cross-attention
  /// their gradient is memory_grad() (assigned, valid until the next backward).
  CView<B> backward(CView<B> dy) {
    std::int64_t const n = dy.size(0), tq = dy.size(1), tk = vh_.size(2), dh = d_ / heads_;
    auto dctx = out_proj.backward(dy).reshape(Shape{n, tq, heads_, dh}).permute({0, 2, 1, 3});
    // The heads' gradients, [N, H, T, dh] each: self-attention puts q, k, v in slots 0..2 of one
    // buffer, cross-attention k and v in slots 0..1 (and q on its own).
    bool const self = kind_ == AttentionKind::self;
    std::int64_t const slots = self ? 3 : 2, head_numel = n * heads_ * tk * dh;
    auto dheads = detail::ensure(dheads_buf_, Shape{slots, n, heads_, tk, dh});
    auto slot = [&](std::int64_t i) { return View<B>(dheads.data() + i * head_numel, Shape{n, heads_, tk, dh}); };
    View<B> const dkh = slot(self ? 1 : 0), dvh = slot(self ? 2 : 1);
    View<B> const dqh = self ? slot(0) : detail::ensure(dqh_buf_, Shape{n, heads_, tq, dh});

    auto dpd = detail::ensure(dpd_buf_, probs_.shape());
    ops::matmul_backward(B{}, dpd, dvh, dctx, pd_, vh_);
    auto dprobs = drop_.backward(dpd);
    auto dscores = detail::ensure(dscores_buf_, probs_.shape());
    ops::softmax_backward(B{}, dscores, dprobs, probs_, scale_);
    ops::matmul(B{}, dqh, dscores, swap_last2(kt_));  // [Tq, Tk] @ [Tk, dh]
    ops::matmul(B{}, dkh, swap_last2(CView<B>(dscores)), qh_);  // [Tk, Tq] @ [Tq, dh]

    // [slots, N, H, T, dh] -> [N, T, slots, H, dh]: the rows StackedLinear::backward reads.
    auto dstacked = detail::ensure(dstacked_buf_, Shape{n, tk, slots, heads_, dh});
    ops::copy(B{}, dstacked, CView<B>(dheads).permute({1, 3, 0, 2, 4}));
    auto dinput = qkv_.backward(CView<B>(dstacked).reshape(Shape{n, tk, slots * d_}));
    if (self) return dinput;  // d query through q, k and v at once
    dmem_ = dinput;
    auto dq = detail::ensure(dq_buf_, Shape{n, tq, heads_, dh});
    ops::copy(B{}, dq, CView<B>(dqh).permute({0, 2, 1, 3}));
    return q_proj.backward(CView<B>(dq).reshape(Shape{n, tq, d_}));
  }
  [[nodiscard]] CView<B> memory_grad() const {
    LNF_EXPECTS_AS(Error, kind_ == AttentionKind::cross, "memory_grad() is only defined for cross-attention");
    return dmem_;
  }
  /// The attention probabilities of the last forward, [N, heads, Tq, Tk] (before dropout).
  [[nodiscard]] CView<B> probabilities() const { return probs_; }
  [[nodiscard]] AttentionKind kind() const { return kind_; }

  void collect(std::string const& prefix, ParameterList<B>& out) {
    q_proj.collect(detail::join_name(prefix, "q_proj"), out);
    k_proj.collect(detail::join_name(prefix, "k_proj"), out);
    v_proj.collect(detail::join_name(prefix, "v_proj"), out);
    out_proj.collect(detail::join_name(prefix, "out_proj"), out);
  }
  /// Backward's buffers, memory_grad()'s included: that is valid until the next backward of a layer
  /// that shares them.
  void share_backward_buffers(MultiHeadAttention& other) {
    for (auto [mine, theirs] : {std::pair{&q_proj, &other.q_proj}, std::pair{&k_proj, &other.k_proj},
                                std::pair{&v_proj, &other.v_proj}, std::pair{&out_proj, &other.out_proj}})
      mine->share_backward_buffers(*theirs);
    drop_.share_backward_buffers(other.drop_);
    qkv_.share_backward_buffers(other.qkv_);
    dpd_buf_.share(other.dpd_buf_);
    dscores_buf_.share(other.dscores_buf_);
    dqh_buf_.share(other.dqh_buf_);
    dheads_buf_.share(other.dheads_buf_);
    dstacked_buf_.share(other.dstacked_buf_);
    dq_buf_.share(other.dq_buf_);
  }

 private:
  std::int64_t d_ = 0, heads_ = 1;
  AttentionKind kind_ = AttentionKind::self;
  Dropout<B> drop_;
  float scale_ = 1.f;
  CView<B> qh_, kt_, vh_, pd_, dmem_;
  View<B> probs_;
  StackedLinear<B> qkv_;  // q, k, v (self) or k, v (cross)
  Tensor<B> probs_buf_, ctxh_buf_, merged_buf_;
  detail::BackwardBuffer<B> dpd_buf_, dscores_buf_, dqh_buf_, dheads_buf_, dstacked_buf_, dq_buf_;

  /// [N, H, T, dh] view of the heads in columns [offset, offset + d) of x [N, T, width].
  CView<B> heads(CView<B> x, std::int64_t offset, std::int64_t t) const {
    std::int64_t const width = x.size(2), dh = d_ / heads_;
    return CView<B>(x.data() + offset, Shape{x.size(0), heads_, t, dh}, Strides{t * width, dh, width, 1});
  }
  static CView<B> swap_last2(CView<B> v) { return ops::detail::gemm::swap_last2(v); }
};

}  // namespace lnformer
