#pragma once
// PostLN (Vaswani et al. 2017, BERT): x = LN(x + drop(f(x))); nothing after the stack.

#include <lnformer/norm/concept.hpp>
#include <lnformer/norm/residual_branch.hpp>
#include <lnformer/ops/elementwise.hpp>

namespace lnformer {

struct PostLN {
  static constexpr std::string_view name = "post";
  static constexpr bool additive_residual = false;  // the LayerNorm is on the skip path

  template <class B>
  struct Residual {
    LayerNorm<B> ln;
    Branch<B> branch;

    Residual(std::int64_t d, float dropout, std::string_view site) : ln(d), branch(dropout, site) {}

    template <class F>
    CView<B> forward(CView<B> x, F& f, ForwardContext const& ctx) {
      return ln.forward(branch.forward_add(x, x, f, ctx));  // LN(x + drop(f(x))), the sum in one pass
    }
    template <class F>
    CView<B> backward(CView<B> dy, F& f) {
      auto ds = ln.backward(dy);                  // d(x + h)
      auto dxf = branch.backward(ds, f);          // through f
      auto dx = ensure(dx_, ds.shape());
      ops::add(B{}, dx, ds, dxf);                 // skip path + branch path
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
    BackwardBuffer<B> dx_;
  };

  template <class B>
  using Final = Identity<B>;
};

}  // namespace lnformer
