#pragma once
// The NormPolicy contract. A normalization policy owns the residual wiring of a sublayer, both
// directions, says what comes after the stack, and carries every fact the rest of the library needs
// about it, so that nothing outside norm/ names a policy (docs/writing-a-policy.md walks through one):
//
//   struct MyNorm {
//     static constexpr std::string_view name = "mine";      // its name on command lines (--norm mine)
//     static constexpr bool additive_residual = true;       // y = x + g(x): the skip path is the identity
//     template <class B> struct Residual {                  // one per sublayer
//       Residual(std::int64_t d, float dropout, std::string_view site);
//       template <class F> CView<B> forward(CView<B> x, F& f, ForwardContext const& ctx);
//       template <class F> CView<B> backward(CView<B> dy, F& f);  // dx assigned, params accumulate
//       void collect(std::string const& layer_prefix, ResidualNames names, ParameterList<B>& out);
//       // only when additive_residual is false: the branch output a that forward combines with x
//       template <class F> CView<B> branch_output(CView<B> x, F& f, ForwardContext const& ctx);
//       // optional: the buffers only backward uses (BackwardBuffer members, and those of its LayerNorms
//       // and Branch) become other's; the layers of a stack then keep two sets instead of one each
//       void share_backward_buffers(Residual& other);
//     };
//     template <class B> using Final = LayerNorm<B> or Identity<B>;  // after the stack
//
//     // Optional hooks; when a policy declares one, its signature is checked:
//     template <class Model> static void initialize(Model& model, Rng& rng);   // end of the model's constructor
//     template <class Model, class BatchT>                                      // parameters from data,
//     static void calibrate(Model& model, BatchT const& batch, ForwardContext const& ctx);  // before training
//   };
//
// A sublayer F has `CView<B> forward(CView<B> x, ForwardContext const&)` and `CView<B> backward(CView<B>)`.
// backward returns dx in a buffer the residual (or f) owns, never dy itself: with shared backward
// buffers, dy lives in the buffers the layer below writes.
// `Model` in the hooks is any model of the library (Seq2Seq, LanguageModel): it has
// `for_each_residual(visitor(residual, sublayer, StackKind, index))`, `config()` and `forward(batch, ctx)`.
//
// Who uses what: the layers construct Residual and call forward/backward/collect; the stacks hold
// Final; the models call initialize; calibrate_norm(model, batch, ctx) below (called by
// prepare_for_analysis, Trainer::calibrate and the example programs) calls calibrate; the analysis
// reads additive_residual and branch_output (analysis/dependency.hpp).
//
// The toolkit a policy author uses is public: Branch<B> (norm/residual_branch.hpp), ensure (a
// reusable buffer of a given shape), BackwardBuffer (a buffer backward alone uses, which the layers of
// a stack can share), join_name (parameter names), ResidualNames, StackKind.

#include <lnformer/core/rng.hpp>
#include <lnformer/nn/layer_norm.hpp>
#include <lnformer/nn/parameter.hpp>
#include <lnformer/norm/stack_kind.hpp>

#include <concepts>
#include <string_view>

namespace lnformer {

/// The names of a residual's parameters inside its layer (fairseq's: `self_attn_layer_norm`, ...).
struct ResidualNames {
  std::string_view layer_norm;  ///< e.g. "self_attn_layer_norm", "final_layer_norm"
  std::string_view sublayer;    ///< e.g. "self_attn", "encoder_attn", "ffn"
};

/// `ensure(buf, shape)`: a view of `buf` with that shape, reallocating only when the element count
/// changes (a policy's per-step buffers). `join_name(prefix, name)`: "prefix.name" ("name" if no prefix).
using detail::ensure;
using detail::BackwardBuffer;
using detail::join_name;

namespace detail {
/// The simplest sublayer, used to check policies: the identity.
template <class B>
struct ProbeSublayer {
  CView<B> forward(CView<B> x, ForwardContext const&) { return x; }
  CView<B> backward(CView<B> dy) { return dy; }
};
/// Stand-ins for "any model" and "any batch" when checking the hooks' signatures: a hook is a template
/// over the model, so a declaration that accepts these accepts every model.
struct ProbeModel {};
struct ProbeBatch {};

// Does N declare a member with this name, of any kind and signature? Name lookup in a class that
// derives from N and from a class with that member is ambiguous exactly when N has one too.
struct HasInitializeMember {
  int initialize;
};
struct HasCalibrateMember {
  int calibrate;
};
template <class N>
struct InitializeLookup : N, HasInitializeMember {};
template <class N>
struct CalibrateLookup : N, HasCalibrateMember {};
template <class N>
concept declares_initialize = std::is_class_v<N> && !requires { &InitializeLookup<N>::initialize; };
template <class N>
concept declares_calibrate = std::is_class_v<N> && !requires { &CalibrateLookup<N>::calibrate; };
}  // namespace detail

/// A policy that sets parameters from data before training (AdminLN's profiling).
template <class N>
concept CalibratingPolicy =
    detail::declares_calibrate<N> &&
    requires(detail::ProbeModel& m, detail::ProbeBatch const& b, ForwardContext const& ctx) {
      N::calibrate(m, b, ctx);
    };

/// A policy whose models need a step after construction (DeepNorm's alpha and beta).
template <class N>
concept InitializingPolicy = detail::declares_initialize<N> && requires(detail::ProbeModel& m, Rng& rng) {
  N::initialize(m, rng);
};

/// Checks a policy member by member so that a user-written policy that misses one fails with a
/// message naming it (a bare concept failure would print the whole requires-expression).
template <class N, class B>
consteval bool check_norm_policy() {
  static_assert(requires { { N::name } -> std::convertible_to<std::string_view>; },
                "NormPolicy: missing `static constexpr std::string_view name` (see norm/concept.hpp)");
  static_assert(requires { { N::additive_residual } -> std::convertible_to<bool>; },
                "NormPolicy: missing `static constexpr bool additive_residual` (true when y = x + g(x), the "
                "skip path untouched; see norm/concept.hpp)");
  static_assert(requires { typename N::template Residual<B>; },
                "NormPolicy: missing member template `template <class B> struct Residual` (see norm/concept.hpp)");
  static_assert(requires { typename N::template Final<B>; },
                "NormPolicy: missing member alias `template <class B> using Final = LayerNorm<B> or Identity<B>` "
                "(see norm/concept.hpp)");
  static_assert(!detail::declares_initialize<N> || InitializingPolicy<N>,
                "NormPolicy: `initialize` must be `template <class Model> static void initialize(Model& model, "
                "Rng& rng)` (see norm/concept.hpp, docs/writing-a-policy.md)");
  static_assert(!detail::declares_calibrate<N> || CalibratingPolicy<N>,
                "NormPolicy: `calibrate` must be `template <class Model, class BatchT> static void calibrate(Model& "
                "model, BatchT const& batch, ForwardContext const& ctx)` (see norm/concept.hpp, "
                "docs/writing-a-policy.md)");
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
    if constexpr (requires { { N::additive_residual } -> std::convertible_to<bool>; }) {
      static_assert(N::additive_residual || requires(R r, detail::ProbeSublayer<B> f, CView<B> x, ForwardContext ctx) {
        { r.branch_output(x, f, ctx) } -> std::convertible_to<CView<B>>;
      }, "NormPolicy: a policy with additive_residual = false needs Residual<B>::`template <class F> CView<B> "
         "branch_output(CView<B> x, F& f, ForwardContext const&)`, the branch output forward combines with x "
         "(see norm/concept.hpp)");
    }
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

/// Runs the model's policy's calibrate hook on `batch` (training mode as the policy chooses); returns
/// whether the policy has one. Call it once before training, on an ordinary training batch; every
/// policy without the hook needs nothing.
template <class Model, class BatchT>
bool calibrate_norm(Model& model, BatchT const& batch, ForwardContext const& ctx) {
  using N = typename Model::norm_policy;
  if constexpr (CalibratingPolicy<N>) {
    N::calibrate(model, batch, ctx);
    return true;
  } else {
    return false;
  }
}

}  // namespace lnformer
