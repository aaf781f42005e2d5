#pragma once
// Layer dependency beta_{i,j} (Liu et al. 2020, Figures 7 and 8; PAPERS.md section 4).
//
// Number the residual sublayers of one stack 1..N; x_0 is the stack's input (embedding after its
// dropout), x_i the output of sublayer i, a_i = drop(f_i(.)) the output of its residual branch and
// â_i = a_i / std(a_i) (â_0 = x_0 / std(x_0)). Unrolling the residual recurrence gives
//   x_i / std(x_i) = sum_{j <= i} beta_{i,j} â_j.
// Each step is decomposed by least squares over every element of the batch tensor (padding
// included, as in Admin's profiling): x_i ≈ c_x x_{i-1} + c_a â_i (centred). For a policy whose
// residual is additive (Norm::additive_residual: PreLN, ReZero, ...) this is exact: a_i = x_i - x_{i-1}
// and c_x = 1, c_a = std(a_i) by definition, not fitted; for PostLN it gives the LayerNorm's 1/sigma_i and
// std(a_i)/sigma_i (Liu et al.'s unrolling), for AdminLN and DeepNorm w_i/sigma_i and std(a_i)/sigma_i;
// for a trained model it also absorbs the LayerNorm gains on average. Then, in raw units,
// B_{i,j} = c_x B_{i-1,j} (j < i), B_{i,i} = c_a, B_{0,0} = std(x_0), and beta_{i,j} = B_{i,j}/std(x_i).
// The stack's final LayerNorm (PreLN, PeriLN) is a per-token rescaling of x_N and is not a sublayer.
//
//   layer_dependency(seq2seq, batch, ctx, StackKind)  one stack of a Seq2Seq (the decoder's
//                                                     cross-attention reads the real encoder output);
//   layer_dependency(lm, batch, ctx)                  the stack of a LanguageModel.
// Works at initialisation (profile Admin first: prepare_for_analysis) or on a trained model. Same ctx
// = same dropout masks as the model's own forward; DependencyMatrix::reproduction_error says how far
// the layer-by-layer pass used here is from the model's own stack output (float rounding only).

#include <lnformer/analysis/common.hpp>

#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

namespace lnformer {

struct DependencyMatrix {
  StackKind stack = StackKind::encoder;
  /// beta[i][j] for 0 <= j <= i <= N (row i has i + 1 entries); row 0 is {1}.
  std::vector<std::vector<double>> beta;
  std::vector<double> coef_x;       ///< c_x of sublayer i = 1..N (index i - 1)
  std::vector<double> coef_a;       ///< c_a of sublayer i = 1..N
  std::vector<double> branch_std;   ///< std(a_i), i = 1..N
  std::vector<double> output_std;   ///< std(x_i), i = 0..N
  double reproduction_error = 0;    ///< max |stack output recomputed here - the model's own|
  [[nodiscard]] int sublayers() const { return static_cast<int>(beta.size()) - 1; }
  /// beta_{i,i} for i = 1..N: how much each sublayer's output depends on its own branch.
  [[nodiscard]] std::vector<double> self_dependency() const {
    std::vector<double> v;
    for (std::size_t i = 1; i < beta.size(); ++i) v.push_back(beta[i][i]);
    return v;
  }
};

namespace detail {

struct DependencyBuilder {
  DependencyMatrix m;
  std::vector<double> raw_prev;  // B_{i-1, .}

  static std::pair<double, double> mean_std(std::vector<float> const& v) {
    double s = 0;
    for (float a : v) s += a;
    double const mean = v.empty() ? 0 : s / static_cast<double>(v.size());
    double s2 = 0;
    for (float a : v) s2 += (a - mean) * (a - mean);
    return {mean, v.empty() ? 0 : std::sqrt(s2 / static_cast<double>(v.size()))};
  }

  void start(std::vector<float> const& x0) {
    double const sd = mean_std(x0).second;
    m.output_std.push_back(sd);
    m.beta.push_back({1.0});
    raw_prev = {sd};
  }
  /// One sublayer: input x, branch output a, output y (all the same size). additive: y = x + a, so
  /// c_x = 1 and c_a = std(a) exactly; otherwise both are fitted.
  void step(std::vector<float> const& x, std::vector<float> const& a, std::vector<float> const& y, bool additive) {
    auto const [mx, sx] = mean_std(x);
    auto const [ma, sa] = mean_std(a);
    auto const [my, sy] = mean_std(y);
    // Least squares y - my ≈ cx (x - mx) + ca (a - ma) / sa.
    double xx = 0, xa = 0, aa = 0, xy = 0, ay = 0;
    double const inv_sa = sa > 0 ? 1.0 / sa : 0.0;
    for (std::size_t k = 0; k < x.size(); ++k) {
      double const u = x[k] - mx, v = (a[k] - ma) * inv_sa, w = y[k] - my;
      xx += u * u, xa += u * v, aa += v * v, xy += u * w, ay += v * w;
    }
    double cx = 0, ca = 0;
    double const det = xx * aa - xa * xa;
    if (additive) {
      cx = 1, ca = sa;
    } else if (aa > 0 && std::abs(det) > 1e-12 * xx * aa) {
      cx = (xy * aa - ay * xa) / det;
      ca = (ay * xx - xy * xa) / det;
    } else if (xx > 0) {
      cx = xy / xx;  // the branch is zero (e.g. ReZero at initialisation)
    }
    std::vector<double> raw(raw_prev.size() + 1);
    for (std::size_t j = 0; j < raw_prev.size(); ++j) raw[j] = cx * raw_prev[j];
    raw.back() = ca;
    std::vector<double> row(raw.size());
    for (std::size_t j = 0; j < raw.size(); ++j) row[j] = sy > 0 ? raw[j] / sy : 0.0;
    m.coef_x.push_back(cx);
    m.coef_a.push_back(ca);
    m.branch_std.push_back(sa);
    m.output_std.push_back(sy);
    m.beta.push_back(std::move(row));
    raw_prev = std::move(raw);
  }
};

/// Runs one residual, recording (x, a, y); returns y. The branch output a is y - x for an additive
/// residual (whatever the policy does on its branch), otherwise the policy's branch_output.
template <class Norm, class B, class Res, class Sub>
CView<B> observe(DependencyBuilder& d, Res& res, Sub& sub, CView<B> x, ForwardContext const& ctx) {
  auto xh = host_copy<B>(x);
  std::vector<float> a;
  if constexpr (!Norm::additive_residual) a = host_copy<B>(res.branch_output(x, sub, ctx));
  CView<B> y = res.forward(x, sub, ctx);
  auto yh = host_copy<B>(y);
  if constexpr (Norm::additive_residual) {
    a.resize(yh.size());
    for (std::size_t k = 0; k < yh.size(); ++k) a[k] = yh[k] - xh[k];
  }
  d.step(xh, a, yh, Norm::additive_residual);
  return y;
}

template <class B>
CView<B> embed_input(TokenEmbedding<B>& emb, Tensor<B>& buf, Dropout<B>& drop, TensorView<B, std::int32_t const> ids,
                     TensorView<B, std::int32_t const> pos, ForwardContext const& ctx) {
  auto x0 = ensure(buf, Shape{ids.size(0), ids.size(1), emb.dim()});
  emb.forward(x0, ids, pos);
  return drop.forward(x0, ctx);
}

template <class B>
double max_abs_diff(CView<B> a, CView<B> b) {
  auto const x = host_copy<B>(a), y = host_copy<B>(b);
  double m = 0;
  for (std::size_t k = 0; k < x.size(); ++k) m = std::max(m, static_cast<double>(std::abs(x[k] - y[k])));
  return m;
}

/// An encoder-layer stack (Seq2Seq encoder, LanguageModel stack) layer by layer.
template <class Norm, class B>
DependencyMatrix encoder_stack_dependency(Encoder<Norm, B>& enc, TokenEmbedding<B>& emb, float dropout,
                                          std::string const& prefix, TensorView<B, std::int32_t const> ids,
                                          TensorView<B, std::int32_t const> pos, CView<B> mask,
                                          ForwardContext const& ctx, StackKind kind) {
  DependencyBuilder d;
  d.m.stack = kind;
  Tensor<B> buf;
  Dropout<B> drop(dropout, prefix + ".dropout_input");  // same site name: the same mask as the stack's
  CView<B> x = embed_input<B>(emb, buf, drop, ids, pos, ctx);
  d.start(host_copy<B>(x));
  for (auto& l : enc.layers) {
    SelfAttentionSublayer<B> as{&l.self_attn, mask};
    FeedForwardSublayer<B> fs{&l.ffn};
    x = observe<Norm, B>(d, l.attn_res, as, x, ctx);
    x = observe<Norm, B>(d, l.ffn_res, fs, x, ctx);
  }
  CView<B> fin = enc.final.forward(x);
  auto const mine = host_copy<B>(fin);
  Tensor<B> mine_t(fin.shape(), std::span<float const>(mine));
  d.m.reproduction_error = max_abs_diff<B>(mine_t.cview(), enc.forward(ids, pos, mask, ctx));
  return d.m;
}

}  // namespace detail

template <class Norm, class B>
DependencyMatrix layer_dependency(Seq2Seq<Norm, B>& model, Batch<B> const& batch, ForwardContext const& ctx,
                                  StackKind stack = StackKind::encoder) {
  float const p = model.config().dropout;
  if (stack == StackKind::encoder)
    return detail::encoder_stack_dependency<Norm, B>(model.encoder, model.source_embedding(), p, "encoder", batch.src,
                                                     batch.src_pos, batch.src_mask, ctx, StackKind::encoder);
  CView<B> memory = model.encoder.forward(batch.src, batch.src_pos, batch.src_mask, ctx);
  auto& dec = model.decoder;
  detail::DependencyBuilder d;
  d.m.stack = StackKind::decoder;
  Tensor<B> buf;
  Dropout<B> drop(p, "decoder.dropout_input");
  CView<B> x = detail::embed_input<B>(model.target_embedding(), buf, drop, batch.prev, batch.prev_pos, ctx);
  d.start(detail::host_copy<B>(x));
  CView<B> causal = dec.causal_mask(batch.prev.size(1));
  for (auto& l : dec.layers) {
    detail::SelfAttentionSublayer<B> ss{&l.self_attn, causal};
    detail::CrossAttentionSublayer<B> cs{&l.encoder_attn, memory, batch.src_mask};
    detail::FeedForwardSublayer<B> fs{&l.ffn};
    x = detail::observe<Norm, B>(d, l.self_res, ss, x, ctx);
    x = detail::observe<Norm, B>(d, l.cross_res, cs, x, ctx);
    x = detail::observe<Norm, B>(d, l.ffn_res, fs, x, ctx);
  }
  CView<B> fin = dec.final.forward(x);
  auto const mine_h = detail::host_copy<B>(fin);
  Tensor<B> mine(fin.shape(), std::span<float const>(mine_h));
  d.m.reproduction_error =
      detail::max_abs_diff<B>(mine.cview(), dec.forward(batch.prev, batch.prev_pos, memory, batch.src_mask, ctx));
  return d.m;
}

template <class Norm, class B>
DependencyMatrix layer_dependency(LanguageModel<Norm, B>& model, LmBatch<B> const& batch, ForwardContext const& ctx) {
  Tensor<B> causal;
  return detail::encoder_stack_dependency<Norm, B>(model.decoder, model.embedding(), model.config().dropout, "decoder",
                                                   batch.input, batch.input_pos,
                                                   detail::causal_mask<B>(causal, batch.input.size(1)), ctx,
                                                   StackKind::decoder);
}

}  // namespace lnformer
