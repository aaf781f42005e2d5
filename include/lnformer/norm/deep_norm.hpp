#pragma once
// DeepNorm (Wang et al. 2022): x = LN(alpha * x + drop(f(x))), with fc1, fc2, v_proj and out_proj
// initialised Xavier normal with gain beta. alpha and beta depend on the depth (PAPERS.md section 2):
//   encoder-decoder: encoder alpha 0.81 (N^4 M)^(1/16), beta 0.87 (N^4 M)^(-1/16);
//                    decoder alpha (3M)^(1/4), beta (12M)^(-1/4);
//   decoder-only:    alpha (2M)^(1/4), beta (8M)^(-1/4).
// One header and one entry in the policy list: nothing else in the library knows about it.

#include <lnformer/norm/stack_kind.hpp>
#include <lnformer/norm/concept.hpp>
#include <lnformer/norm/residual_branch.hpp>
#include <lnformer/ops/elementwise.hpp>

#include <cmath>

namespace lnformer {

struct DeepNorm {
  static constexpr std::string_view name = "deepnorm";
  static constexpr bool additive_residual = false;  // LN(alpha * x + ...)

  template <class B>
  struct Residual {
    LayerNorm<B> ln;
    Branch<B> branch;
    float alpha = 1.f;  // set by initialize() from the model's depth

    Residual(std::int64_t d, float dropout, std::string_view site) : ln(d), branch(dropout, site) {}

    template <class F>
    CView<B> forward(CView<B> x, F& f, ForwardContext const& ctx) {
      auto h = branch.forward(x, f, ctx);
      auto s = ensure(sum_, x.shape());
      ops::scale_add(B{}, s, x, CView<B>{}, alpha, h);
      return ln.forward(s);
    }
    template <class F>
    CView<B> backward(CView<B> dy, F& f) {
      auto ds = ln.backward(dy);
      auto dxf = branch.backward(ds, f);
      auto dx = ensure(dx_, ds.shape());
      ops::scale_add_backward(B{}, dx, View<B>{}, ds, ds, CView<B>{}, alpha);  // x unused without dw
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
    }
    void share_backward_buffers(Residual& other) {
      ln.share_backward_buffers(other.ln);
      branch.share_backward_buffers(other.branch);
      dx_.share(other.dx_);
    }

   private:
    Tensor<B> sum_;
    BackwardBuffer<B> dx_;
  };

  template <class B>
  using Final = Identity<B>;

  struct Constants {
    double alpha, beta;
  };
  /// alpha and beta of one stack; n_enc = 0 means a decoder-only model, n_dec = 0 an encoder-only one.
  static Constants constants(int n_enc, int n_dec, StackKind stack) {
    double const n = n_enc, m = n_dec;
    if (n_enc > 0 && n_dec > 0) {
      if (stack == StackKind::encoder)
        return {0.81 * std::pow(n * n * n * n * m, 1.0 / 16), 0.87 * std::pow(n * n * n * n * m, -1.0 / 16)};
      return {std::pow(3 * m, 0.25), std::pow(12 * m, -0.25)};
    }
    double const l = n_enc > 0 ? n : m;
    return {std::pow(2 * l, 0.25), std::pow(8 * l, -0.25)};
  }

  template <class Model>
  static void initialize(Model& model, Rng& rng) {
    auto const& c = model.config();
    bool const enc_dec = requires { model.encoder; };
    int const n_enc = enc_dec ? c.enc_layers : 0;
    model.for_each_residual([&](auto& res, auto& sub, StackKind stack, int) {
      auto const k = constants(n_enc, c.dec_layers, stack);
      res.alpha = static_cast<float>(k.alpha);
      auto reinit = [&](auto& lin, double gain) {
        init::xavier_normal(lin.weight.value, rng, gain);
        if (lin.bias.value.numel() != 0) init::constant(lin.bias.value, 0.f);
      };
      if constexpr (requires { sub.v_proj; }) {
        reinit(sub.q_proj, 1.0);
        reinit(sub.k_proj, 1.0);
        reinit(sub.v_proj, k.beta);
        reinit(sub.out_proj, k.beta);
      } else {
        reinit(sub.fc1, k.beta);
        reinit(sub.fc2, k.beta);
      }
    });
  }
};

}  // namespace lnformer
