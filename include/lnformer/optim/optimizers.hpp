#pragma once
// Every optimizer, gradient clipping, state checkpoints, and the list that turns a runtime name into
// an optimizer type:
//   dispatch(Optimizers{}, "adam", [&](auto tag) { using O = typename decltype(tag)::type; ... }, "optimizer");

#include <lnformer/core/type_list.hpp>
#include <lnformer/optim/adam.hpp>
#include <lnformer/optim/adamw.hpp>
#include <lnformer/optim/clip.hpp>
#include <lnformer/optim/concept.hpp>
#include <lnformer/optim/radam.hpp>
#include <lnformer/optim/sgd.hpp>
#include <lnformer/optim/state.hpp>
#include <lnformer/optim/state_io.hpp>

namespace lnformer {

using Optimizers = TypeList<Sgd, Adam, AdamW, RAdam>;

}  // namespace lnformer
