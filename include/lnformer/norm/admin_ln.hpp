#pragma once
// AdminLN (Liu et al. 2020): x = LN(x * w + drop(f(x))), with a trainable vector w [d] per sublayer.
// w comes from profiling one training batch (admin_profile, see analysis below) or from admin-torch's
// closed forms (admin_closed_form). After training, fold_admin() turns the model into a plain PostLN
// model that computes the same outputs.
//
// The first sublayer of each stack keeps w = 1, not trained: profiling gives exactly 1 there (the
// running value starts at 1), and its skip input is the embedding output, which no LayerNorm
// precedes, so a trained w could not be folded into a plain Post-LN model.

#include <lnformer/norm/concept.hpp>
#include <lnformer/norm/residual_branch.hpp>
#include <lnformer/ops/elementwise.hpp>

#include <cmath>
#include <utility>
#include <vector>

namespace lnformer {

namespace detail {
/// Population variance over every element of a contiguous view (host round trip; profiling only).
template <class B>
double population_variance(CView<B> x) {
  LNF_EXPECTS(x.is_contiguous(), "population_variance needs a contiguous view, got shape {}", x.shape());
  std::vector<float> h(static_cast<std::size_t>(x.numel()));
  if (!h.empty()) BackendTraits<B>::to_host(h.data(), x.data(), h.size() * sizeof(float));
  double s = 0, s2 = 0;
  for (float v : h) s += v;
  double const mean = h.empty() ? 0.0 : s / static_cast<double>(h.size());
  for (float v : h) s2 += (v - mean) * (v - mean);
  return h.empty() ? 0.0 : s2 / static_cast<double>(h.size());
}
}  // namespace detail

/// The running value of Admin profiling for one stack (encoder or decoder), section 2 of PAPERS.md:
/// at sublayer i set w_i = r, then r = sqrt(Var[w_i x] + Var[drop(f(x))]).
struct AdminProfiler {
  double r = 1.0;
  std::vector<double> values;  // w_i in sublayer order
};

struct AdminLN {
  static constexpr std::string_view name = "admin";
  static constexpr bool additive_residual = false;  // LN(x * w + ...)

  template <class B>
  struct Residual {
    LayerNorm<B> ln;
    Branch<B> branch;
    Parameter<B> w;                    // [d], 1 at construction; excluded from weight decay
    AdminProfiler* profiler = nullptr;  // set only during admin_profile()
    bool w_trainable = true;

    Residual(std::int64_t d, float dropout, std::string_view site)
        : ln(d), branch(dropout, site), w(Shape{d}, /*weight_decay=*/false) {
      init::constant(w.value, 1.f);
    }

    /// Every entry of w set to v.
    void set_scale(float v) { init::constant(w.value, v); }

    template <class F>
    CView<B> forward(CView<B> x, F& f, ForwardContext const& ctx) {
      auto h = branch.forward(x, f, ctx);
      if (profiler != nullptr) {
        double const wi = profiler->r;
        set_scale(static_cast<float>(wi));
        profiler->values.push_back(wi);
        profiler->r = std::sqrt(wi * wi * detail::population_variance<B>(x) + detail::population_variance<B>(h));
      }
      x_ = x;
      auto s = ensure(sum_, x.shape());
      ops::scale_add(B{}, s, x, w.value, 1.f, h);
      return ln.forward(s);
    }
    template <class F>
    CView<B> backward(CView<B> dy, F& f) {
      auto ds = ln.backward(dy);
      auto dxf = branch.backward(ds, f);
      auto dx = ensure(dx_, ds.shape());
      ops::scale_add_backward(B{}, dx, w_trainable ? View<B>(w.grad) : View<B>{}, ds, x_, w.value, 1.f);
      ops::add(B{}, dx, dx, dxf);
      return dx;
    }
    /// The branch output a = drop(f(x)) that forward combines with x (for the analysis).
    template <class F>
    CView<B> branch_output(CView<B> x, F& f, ForwardContext const& ctx) {
      return branch.forward(x, f, ctx);
    }
    void collect(std::string const& prefix, ResidualNames names, ParameterList<B>& out) {
      ln.collect(join_name(prefix, names.layer_norm), out);
      if (w_trainable) out.push_back({join_name(prefix, std::string(names.sublayer) + "_admin_w"), &w});
    }
    void share_backward_buffers(Residual& other) {
      ln.share_backward_buffers(other.ln);
      branch.share_backward_buffers(other.branch);
      dx_.share(other.dx_);
    }

   private:
    CView<B> x_;
    Tensor<B> sum_;
    BackwardBuffer<B> dx_;
  };

  template <class B>
  using Final = Identity<B>;

  /// Freeze w = 1 on the first sublayer of each stack (see the note at the top of this header).
  template <class Model>
  static void initialize(Model& model, Rng& /*rng*/) {
    model.for_each_residual([](auto& res, auto& /*sublayer*/, auto /*stack*/, int index) {
      if (index == 0) {
        res.set_scale(1.f);
        res.w_trainable = false;
      }
    });
  }

  /// Admin's profiling (PAPERS.md section 2): one training-mode forward pass on an ordinary training
  /// batch sets every w in sublayer order, the running value starting at 1 for each stack. Returns the
  /// values, {encoder, decoder}. Gradients are not touched. (analysis/admin.hpp's admin_profile wraps it.)
  template <class Model, class BatchT>
  static std::pair<std::vector<double>, std::vector<double>> profile(Model& model, BatchT const& batch,
                                                                     ForwardContext ctx) {
    AdminProfiler enc, dec;
    model.for_each_residual(
        [&](auto& res, auto&, StackKind k, int) { res.profiler = k == StackKind::encoder ? &enc : &dec; });
    auto detach = [&] { model.for_each_residual([](auto& res, auto&, StackKind, int) { res.profiler = nullptr; }); };
    ctx.training = true;
    try {
      (void)model.forward(batch, ctx);
    } catch (...) {
      detach();
      throw;
    }
    detach();
    return {std::move(enc.values), std::move(dec.values)};
  }

  /// The calibrate hook (norm/concept.hpp): w profiled on `batch`.
  template <class Model, class BatchT>
  static void calibrate(Model& model, BatchT const& batch, ForwardContext const& ctx) {
    (void)profile(model, batch, ctx);
  }
};

/// admin-torch's closed forms for w, N = the number of residual sublayers of the stack.
enum class AdminOrder { log_n, constant, linear };

inline double admin_closed_form(int n_sublayers, AdminOrder order) {
  LNF_EXPECTS_AS(ValueError, n_sublayers >= 1, "admin_closed_form: need at least one sublayer, got {}",
                 n_sublayers);
  double const n = n_sublayers;
  switch (order) {
    case AdminOrder::log_n: return std::sqrt((n + 1) / std::log(n + 1) - 1);
    case AdminOrder::constant: return std::sqrt(n);
    case AdminOrder::linear: return 1.0;
  }
  return 1.0;
}

}  // namespace lnformer
