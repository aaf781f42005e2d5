#pragma once
// PeriLN (Kim et al., ICML 2025, "Peri-LN"; the Sandwich-LN of CogView; the placement of Gemma 2 and
// OLMo 2): y = x + drop(LN_out(f(LN_in(x)))), a LayerNorm on the input and on the output of every
// sublayer, and a final LayerNorm after the stack. The skip path is the identity, as in PreLN (the
// residual is additive), while the output norm bounds what each sublayer adds to it.
// One header and one entry in the policy list: everything else picks it up from the list.

#include <lnformer/norm/concept.hpp>
#include <lnformer/norm/residual_branch.hpp>

namespace lnformer {

struct PeriLN {
  static constexpr std::string_view name = "peri";
  static constexpr bool additive_residual = true;  // y = x + drop(LN_out(f(LN_in(x))))

  template <class B>
  struct Residual {
    LayerNorm<B> ln_in, ln_out;
    Branch<B> branch;

    Residual(std::int64_t d, float dropout, std::string_view site) : ln_in(d), ln_out(d), branch(dropout, site) {}

    template <class F>
    CView<B> forward(CView<B> x, F& f, ForwardContext const& ctx) {
      OutputNormed<F> g{&f, &ln_out};
      return branch.forward_add(x, ln_in.forward(x), g, ctx);  // x + drop(LN_out(f(LN_in(x)))), one pass
    }
    template <class F>
    CView<B> backward(CView<B> dy, F& f) {
      OutputNormed<F> g{&f, &ln_out};
      auto dn = branch.backward(dy, g);  // through the dropout, LN_out and f
      return ln_in.backward(dn, dy);     // skip path + branch path, summed in the norm's backward pass
    }
    /// fairseq's name for the input norm (as PreLN's); `<sublayer>_out_layer_norm` for the output norm.
    void collect(std::string const& prefix, ResidualNames names, ParameterList<B>& out) {
      ln_in.collect(join_name(prefix, names.layer_norm), out);
      ln_out.collect(join_name(prefix, std::string(names.sublayer) + "_out_layer_norm"), out);
    }
    void share_backward_buffers(Residual& other) {
      ln_in.share_backward_buffers(other.ln_in);
      ln_out.share_backward_buffers(other.ln_out);
      branch.share_backward_buffers(other.branch);
    }

   private:
    /// The sublayer followed by the output norm, which Branch sees as one sublayer.
    template <class F>
    struct OutputNormed {
      F* f;
      LayerNorm<B>* ln;
      CView<B> forward(CView<B> x, ForwardContext const& ctx) {
        auto h = f->forward(x, ctx);
        LNF_EXPECTS(h.shape() == x.shape(), "PeriLN: the sublayer maps {} to {}; a residual sublayer keeps the shape",
                    x.shape(), h.shape());
        return ln->forward(h);
      }
      CView<B> backward(CView<B> dy) { return f->backward(ln->backward(dy)); }
    };
  };

  template <class B>
  using Final = LayerNorm<B>;
};

}  // namespace lnformer
