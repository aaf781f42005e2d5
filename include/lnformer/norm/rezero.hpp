#pragma once
// ReZero (Bachlechner et al. 2020): x = x + r * drop(f(x)), a scalar r per sublayer initialised to 0,
// and no LayerNorm anywhere. One header and one entry in the policy list.

#include <lnformer/norm/concept.hpp>
#include <lnformer/norm/residual_branch.hpp>
#include <lnformer/ops/elementwise.hpp>

namespace lnformer {

struct ReZero {
  static constexpr std::string_view name = "rezero";
  static constexpr bool additive_residual = true;  // y = x + r * drop(f(x))

  template <class B>
  struct Residual {
    Branch<B> branch;
    Parameter<B> r;  // [1], 0 at construction; excluded from weight decay

    Residual(std::int64_t /*d*/, float dropout, std::string_view site) : branch(dropout, site), r(Shape{1}, false) {}

    template <class F>
    CView<B> forward(CView<B> x, F& f, ForwardContext const& ctx) {
      h_ = branch.forward(x, f, ctx);
      auto y = ensure(y_, x.shape());
      ops::scale_add(B{}, y, h_, r.value, 1.f, x);  // r * h + x
      return y;
    }
    template <class F>
    CView<B> backward(CView<B> dy, F& f) {
      auto dh = ensure(dh_, dy.shape());
      ops::scale_add_backward(B{}, dh, r.grad, dy, h_, r.value, 1.f);
      auto dxf = branch.backward(dh, f);
      auto dx = ensure(dx_, dy.shape());
      ops::add(B{}, dx, dy, dxf);
      return dx;
    }
    void collect(std::string const& prefix, ResidualNames names, ParameterList<B>& out) {
      out.push_back({join_name(prefix, std::string(names.sublayer) + "_resweight"), &r});
    }
    void share_backward_buffers(Residual& other) {
      branch.share_backward_buffers(other.branch);
      dh_.share(other.dh_);
      dx_.share(other.dx_);
    }

   private:
    CView<B> h_;
    Tensor<B> y_;
    BackwardBuffer<B> dh_, dx_;
  };

  template <class B>
  using Final = Identity<B>;
};

}  // namespace lnformer
