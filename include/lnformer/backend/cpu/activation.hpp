#pragma once
// CPU activations: oneDNN eltwise primitives (eltwise_relu with alpha 0, eltwise_gelu_erf), forward
// and backward-from-src, on the tensor viewed as one flat [n] array. Contract in ops/activation.hpp.
//
// One cache entry per (direction, kind, n) in cpu::context() holds the primitive, its memory objects
// (rebound to the caller's buffers with set_data_handle) and its argument map, so a steady-state call
// creates nothing.

#include <lnformer/backend/cpu/cpu.hpp>
#include <lnformer/ops/activation.hpp>

#include <fmt/format.h>
#include <oneapi/dnnl/dnnl.hpp>

#include <cstdint>
#include <string>
#include <unordered_map>

namespace lnformer::cpu::detail {

inline dnnl::algorithm eltwise_algorithm(ops::Activation act) {
  return act == ops::Activation::relu ? dnnl::algorithm::eltwise_relu : dnnl::algorithm::eltwise_gelu_erf;
}

inline dnnl::memory::desc eltwise_flat_desc(std::int64_t n) {
  return dnnl::memory::desc({n}, dnnl::memory::data_type::f32, dnnl::memory::format_tag::a);
}

struct EltwiseForwardEntry : CacheEntryBase {
  dnnl::eltwise_forward prim;
  dnnl::memory src, dst;
  std::unordered_map<int, dnnl::memory> args;

  EltwiseForwardEntry(Context& ctx, ops::Activation act, std::int64_t n) {
    auto const md = eltwise_flat_desc(n);
    // alpha = 0: plain relu (no leak); gelu_erf ignores alpha and beta.
    dnnl::eltwise_forward::desc const d(dnnl::prop_kind::forward_training, eltwise_algorithm(act), md, 0.f,
                                        0.f);
    prim = dnnl::eltwise_forward(dnnl::eltwise_forward::primitive_desc(d, ctx.engine()));
    src = dnnl::memory(md, ctx.engine(), DNNL_MEMORY_NONE);
    dst = dnnl::memory(md, ctx.engine(), DNNL_MEMORY_NONE);
    args = {{DNNL_ARG_SRC, src}, {DNNL_ARG_DST, dst}};
  }
};

struct EltwiseBackwardEntry : CacheEntryBase {
  dnnl::eltwise_backward prim;
  dnnl::memory src, diff_dst, diff_src;
  std::unordered_map<int, dnnl::memory> args;

  EltwiseBackwardEntry(Context& ctx, ops::Activation act, std::int64_t n) {
    auto const md = eltwise_flat_desc(n);
    auto const alg = eltwise_algorithm(act);
    dnnl::eltwise_forward::primitive_desc const hint(
        dnnl::eltwise_forward::desc(dnnl::prop_kind::forward_training, alg, md, 0.f, 0.f), ctx.engine());
    dnnl::eltwise_backward::desc const d(alg, md, md, 0.f, 0.f);
    prim = dnnl::eltwise_backward(dnnl::eltwise_backward::primitive_desc(d, ctx.engine(), hint));
    src = dnnl::memory(md, ctx.engine(), DNNL_MEMORY_NONE);
    diff_dst = dnnl::memory(md, ctx.engine(), DNNL_MEMORY_NONE);
    diff_src = dnnl::memory(md, ctx.engine(), DNNL_MEMORY_NONE);
    args = {{DNNL_ARG_SRC, src}, {DNNL_ARG_DIFF_DST, diff_dst}, {DNNL_ARG_DIFF_SRC, diff_src}};
  }
};

}  // namespace lnformer::cpu::detail

namespace lnformer::ops {

inline void activation_forward(Cpu, View<Cpu> y, CView<Cpu> x, Activation act) {
  check::activation_forward<Cpu>(y, x, act);
  std::int64_t const n = x.numel();
  if (n == 0) return;
  auto& ctx = cpu::context();
  auto& e = ctx.cached<cpu::detail::EltwiseForwardEntry>(fmt::format("eltwise_fwd:{}:{}", name(act), n), [&] {
    return cpu::detail::EltwiseForwardEntry(ctx, act, n);
  });
  // oneDNN eltwise runs in place when src and dst share a buffer, so y may alias x.
  LNF_DNNL_CHECK(e.src.set_data_handle(const_cast<float*>(x.data())); e.dst.set_data_handle(y.data());
                 e.prim.execute(ctx.stream(), e.args); ctx.stream().wait());
}

inline void activation_backward(Cpu, View<Cpu> dx, CView<Cpu> dy, CView<Cpu> x, Activation act) {
  check::activation_backward<Cpu>(dx, dy, x, act);
  std::int64_t const n = x.numel();
  if (n == 0) return;
  auto& ctx = cpu::context();
  auto& e = ctx.cached<cpu::detail::EltwiseBackwardEntry>(
      fmt::format("eltwise_bwd:{}:{}", name(act), n),
      [&] { return cpu::detail::EltwiseBackwardEntry(ctx, act, n); });
  // diff_src may share diff_dst's buffer (in place), so dx may alias dy.
  LNF_DNNL_CHECK(e.src.set_data_handle(const_cast<float*>(x.data()));
                 e.diff_dst.set_data_handle(const_cast<float*>(dy.data()));
                 e.diff_src.set_data_handle(dx.data()); e.prim.execute(ctx.stream(), e.args);
                 ctx.stream().wait());
}

}  // namespace lnformer::ops
