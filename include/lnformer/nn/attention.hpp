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
  CView<B> forward(CView<B> query, CView<B> memory, CView<B> mask, ForwardContext const& ctx) {
    LNF_EXPECTS(query.rank() == 3 && memory.rank() == 3 && query.size(2) == d_ && memory.size(2) == d_ &&
                    query.size(0) == memory.size(0),
                "MultiHeadAttention: query {} and memory {} must be [N, T, {}] with the same N", query.shape(),
                memory.shape(), d_);
    std::int64_t const n = query.size(0), tq = query.size(1), tk = memory.size(1), dh = d_ / heads_;
    scale_ = static_cast<float>(1.0 / std::sqrt(static_cast<double>(dh)));
    qh_ = q_proj.forward(query).reshape(Shape{n, tq, heads_, dh}).permute({0, 2, 1, 3});  // [N,H,Tq,dh]
    kt_ = k_proj.forward(memory).reshape(Shape{n, tk, heads_, dh}).permute({0, 2, 3, 1});  // [N,H,dh,Tk]
    vh_ = v_proj.forward(memory).reshape(Shape{n, tk, heads_, dh}).permute({0, 2, 1, 3});  // [N,H,Tk,dh]
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
    auto dpd = detail::ensure(dpd_buf_, probs_.shape());
    auto dvh = detail::ensure(dvh_buf_, Shape{n, heads_, tk, dh});
    ops::matmul_backward(B{}, dpd, dvh, dctx, pd_, vh_);
    auto dprobs = drop_.backward(dpd);
    auto dscores = detail::ensure(dscores_buf_, probs_.shape());
    ops::softmax_backward(B{}, dscores, dprobs, probs_, scale_);
    auto dqh = detail::ensure(dqh_buf_, Shape{n, heads_, tq, dh});
    auto dkt = detail::ensure(dkt_buf_, Shape{n, heads_, dh, tk});
    ops::matmul_backward(B{}, dqh, dkt, dscores, qh_, kt_);
    auto dq = detail::ensure(dq_buf_, Shape{n, tq, heads_, dh});
    auto dk = detail::ensure(dk_buf_, Shape{n, tk, heads_, dh});
    auto dv = detail::ensure(dv_buf_, Shape{n, tk, heads_, dh});
    ops::copy(B{}, dq, CView<B>(dqh).permute({0, 2, 1, 3}));
    ops::copy(B{}, dk, CView<B>(dkt).permute({0, 3, 1, 2}));
    ops::copy(B{}, dv, CView<B>(dvh).permute({0, 2, 1, 3}));
    auto dquery = q_proj.backward(CView<B>(dq).reshape(Shape{n, tq, d_}));
    auto dmem = detail::ensure(dmem_buf_, Shape{n, tk, d_});
    ops::add(B{}, dmem, k_proj.backward(CView<B>(dk).reshape(Shape{n, tk, d_})),
             v_proj.backward(CView<B>(dv).reshape(Shape{n, tk, d_})));
    if (kind_ == AttentionKind::cross) {
      dmem_ = dmem;
      return dquery;
    }
    ops::add(B{}, dmem, dmem, dquery);
    return dmem;
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

 private:
  std::int64_t d_ = 0, heads_ = 1;
  AttentionKind kind_ = AttentionKind::self;
  Dropout<B> drop_;
  float scale_ = 1.f;
  CView<B> qh_, kt_, vh_, pd_, dmem_;
  View<B> probs_;
  Tensor<B> probs_buf_, ctxh_buf_, merged_buf_, dpd_buf_, dvh_buf_, dscores_buf_, dqh_buf_, dkt_buf_, dq_buf_,
      dk_buf_, dv_buf_, dmem_buf_;
};

}  // namespace lnformer
