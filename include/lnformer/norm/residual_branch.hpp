#pragma once
// Branch<B>: the piece every policy shares, the sublayer's output followed by the residual dropout,
// drop(f(x)), or with the skip path added in the same pass, skip + drop(f(x)). Part of the public
// toolkit for policy authors (docs/writing-a-policy.md).

#include <lnformer/nn/dropout.hpp>

namespace lnformer {

template <class B>
struct Branch {
  Dropout<B> drop;
  Branch() = default;
  /// p: the residual dropout; site: the residual's name, so that masks do not depend on order.
  Branch(float p, std::string_view site) : drop(p, std::string(site) + ".dropout") {}
  /// drop(f(x)).
  template <class F>
  CView<B> forward(CView<B> x, F& f, ForwardContext const& ctx) {
    return drop.forward(f.forward(x, ctx), ctx);
  }
  /// skip + drop(f(x)); backward() as after forward(x, f, ctx).
  template <class F>
  CView<B> forward_add(CView<B> skip, CView<B> x, F& f, ForwardContext const& ctx) {
    return drop.forward_add(skip, f.forward(x, ctx), ctx);
  }
  /// dx of f's input from dy of the branch output (assigned); f's parameter gradients accumulate.
  template <class F>
  CView<B> backward(CView<B> dy, F& f) {
    return f.backward(drop.backward(dy));
  }
  void share_backward_buffers(Branch& other) { drop.share_backward_buffers(other.drop); }
};

}  // namespace lnformer
