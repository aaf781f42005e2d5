#pragma once
// PreLN (Xiong et al. 2020, GPT-2): x = x + drop(f(LN(x))), and a final LayerNorm after the stack
// (encoder: after the last layer; decoder: before the output projection). Without the final LN a
// Pre-LN model's output is the unnormalised sum of every branch.

#include <lnformer/norm/concept.hpp>
#include <lnformer/norm/residual_branch.hpp>

namespace lnformer {

struct PreLN {
  static constexpr std::string_view name = "pre";
  static constexpr bool additive_residual = true;  // y = x + drop(f(LN(x)))

  template <class B>
  struct Residual {
    LayerNorm<B> ln;
    Branch<B> branch;

    Residual(std::int64_t d, float dropout, std::string_view site) : ln(d), branch(dropout, site) {}

    template <class F>
    CView<B> forward(CView<B> x, F& f, ForwardContext const& ctx) {
      return branch.forward_add(x, ln.forward(x), f, ctx);  // x + drop(f(LN(x))), one pass
    }
    template <class F>
    CView<B> backward(CView<B> dy, F& f) {
      auto dn = branch.backward(dy, f);
      return ln.backward(dn, dy);  // skip path + branch path, summed in the norm's backward pass
    }
    void collect(std::string const& prefix, ResidualNames names, ParameterList<B>& out) {
      ln.collect(join_name(prefix, names.layer_norm), out);
    }
    void share_backward_buffers(Residual& other) {
      ln.share_backward_buffers(other.ln);
      branch.share_backward_buffers(other.branch);
    }
  };

  template <class B>
  using Final = LayerNorm<B>;
};

}  // namespace lnformer
