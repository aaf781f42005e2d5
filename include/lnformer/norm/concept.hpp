#pragma once
// The NormPolicy concept. A normalization policy owns the residual wiring of a sublayer, both
// directions, and says what comes after the stack:
//
//   struct MyNorm {
//     static constexpr std::string_view name = "mine";
//     template <class B> struct Residual {            // one per sublayer
//       Residual(std::int64_t d, float dropout, std::string_view site);
//       template <class F> CView<B> forward(CView<B> x, F& f, ForwardContext const& ctx);
//       template <class F> CView<B> backward(CView<B> dy, F& f);  // dx assigned, params accumulate
//       void collect(std::string const& layer_prefix, ResidualNames names, ParameterList<B>& out);
//     };
//     template <class B> using Final = LayerNorm<B> or Identity<B>;  // after the stack
//   };
//
// A sublayer F has `CView<B> forward(CView<B> x, ForwardContext const&)` and `CView<B> backward(CView<B>)`.

#include <lnformer/nn/layer_norm.hpp>
#include <lnformer/nn/parameter.hpp>

#include <concepts>
#include <string_view>

namespace lnformer {

/// The names of a residual's parameters inside its layer (fairseq's: `self_attn_layer_norm`, ...).
struct ResidualNames {
  std::string_view layer_norm;  ///< e.g. "self_attn_layer_norm", "final_layer_norm"
  std::string_view sublayer;    ///< e.g. "self_attn", "encoder_attn", "ffn"
};

namespace detail {
/// The simplest sublayer, used to check policies: the identity.
template <class B>
struct ProbeSublayer {
  CView<B> forward(CView<B> x, ForwardContext const&) { return x; }
  CView<B> backward(CView<B> dy) { return dy; }
};
struct ProbeBackend;  // only named in unevaluated checks
}  // namespace detail

template <class N, class B>
concept NormPolicyFor =
    requires { { N::name } -> std::convertible_to<std::string_view>; } &&
    std::constructible_from<typename N::template Residual<B>, std::int64_t, float, std::string_view> &&
    requires(typename N::template Residual<B> r, detail::ProbeSublayer<B> f, CView<B> x, ForwardContext ctx,
             std::string const& prefix, ResidualNames names, ParameterList<B>& list) {
      { r.forward(x, f, ctx) } -> std::convertible_to<CView<B>>;
      { r.backward(x, f) } -> std::convertible_to<CView<B>>;
      r.collect(prefix, names, list);
    } &&
    std::constructible_from<typename N::template Final<B>, std::int64_t> &&
    requires(typename N::template Final<B> fin, CView<B> x, std::string const& prefix, ParameterList<B>& list) {
      { fin.forward(x) } -> std::convertible_to<CView<B>>;
      { fin.backward(x) } -> std::convertible_to<CView<B>>;
      fin.collect(prefix, list);
    };

}  // namespace lnformer

namespace lnformer {

/// Checks a policy member by member so that a user-written policy that misses one fails with a
/// message naming it (a bare concept failure would print the whole requires-expression).
template <class N, class B>
consteval bool check_norm_policy() {
  static_assert(requires { { N::name } -> std::convertible_to<std::string_view>; },
                "NormPolicy: missing `static constexpr std::string_view name` (see norm/concept.hpp)");
  static_assert(requires { typename N::template Residual<B>; },
                "NormPolicy: missing member template `template <class B> struct Residual` (see norm/concept.hpp)");
  static_assert(requires { typename N::template Final<B>; },
                "NormPolicy: missing member alias `template <class B> using Final = LayerNorm<B> or Identity<B>` "
                "(see norm/concept.hpp)");
  if constexpr (requires { typename N::template Residual<B>; typename N::template Final<B>; }) {
    using R = typename N::template Residual<B>;
    static_assert(std::constructible_from<R, std::int64_t, float, std::string_view>,
                  "NormPolicy: Residual<B> needs a constructor (std::int64_t d, float dropout, std::string_view site)");
    static_assert(requires(R r, detail::ProbeSublayer<B> f, CView<B> x, ForwardContext ctx) {
      { r.forward(x, f, ctx) } -> std::convertible_to<CView<B>>;
    }, "NormPolicy: Residual<B> needs `template <class F> CView<B> forward(CView<B> x, F& f, ForwardContext const&)`");
    static_assert(requires(R r, detail::ProbeSublayer<B> f, CView<B> x) {
      { r.backward(x, f) } -> std::convertible_to<CView<B>>;
    }, "NormPolicy: Residual<B> needs `template <class F> CView<B> backward(CView<B> dy, F& f)`");
    static_assert(requires(R r, std::string const& p, ResidualNames n, ParameterList<B>& l) { r.collect(p, n, l); },
                  "NormPolicy: Residual<B> needs `void collect(std::string const&, ResidualNames, ParameterList<B>&)`");
    using Fin = typename N::template Final<B>;
    static_assert(std::constructible_from<Fin, std::int64_t> &&
                      requires(Fin fin, CView<B> x, std::string const& p, ParameterList<B>& l) {
                        { fin.forward(x) } -> std::convertible_to<CView<B>>;
                        { fin.backward(x) } -> std::convertible_to<CView<B>>;
                        fin.collect(p, l);
                      },
                  "NormPolicy: Final<B> needs a (std::int64_t d) constructor, forward, backward and collect "
                  "(see norm/concept.hpp)");
  }
  return true;
}

}  // namespace lnformer
