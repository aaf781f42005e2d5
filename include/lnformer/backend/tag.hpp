#pragma once
// Every backend tag derives from ops::BackendTag. Ops are free functions in lnformer::ops overloaded
// on the tag; deriving from a type of that namespace makes argument-dependent lookup find a
// backend's ops wherever and whenever its header is included (the Backend concept relies on it).

namespace lnformer::ops {
struct BackendTag {};
}  // namespace lnformer::ops
