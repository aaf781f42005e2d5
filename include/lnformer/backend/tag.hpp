#pragma once
// Every backend tag derives from ops::BackendTag. Ops are free functions in lnformer::ops overloaded
// on the tag. How a call inside a template finds them depends on how it is written (checked with
// GCC 12 and clang):
//   - unqualified, `matmul(B{}, ...)`: argument-dependent lookup at instantiation; deriving from a
//     type of lnformer::ops puts that namespace among the tag's associated namespaces, so the call
//     finds overloads declared after the template too. The Backend concept and the optimizers call
//     this way, so they work whatever the include order.
//   - qualified, `ops::matmul(B{}, ...)`: no ADL; only overloads declared before the template's
//     definition are candidates. The layers (nn/, norm/, model/) call this way, which is why they
//     include backend/backends.hpp first.

namespace lnformer::ops {
struct BackendTag {};
}  // namespace lnformer::ops
