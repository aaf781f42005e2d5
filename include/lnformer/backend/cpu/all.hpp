#pragma once
// The complete CPU backend: the tag, its context and every op.

#include <lnformer/backend/cpu/cpu.hpp>

#include <lnformer/backend/cpu/activation.hpp>
#include <lnformer/backend/cpu/cross_entropy.hpp>
#include <lnformer/backend/cpu/dropout.hpp>
#include <lnformer/backend/cpu/elementwise.hpp>
#include <lnformer/backend/cpu/embedding.hpp>
#include <lnformer/backend/cpu/layer_norm.hpp>
#include <lnformer/backend/cpu/matmul.hpp>
#include <lnformer/backend/cpu/optimizer.hpp>
#include <lnformer/backend/cpu/softmax.hpp>

#include <lnformer/backend/concept.hpp>

static_assert(lnformer::Backend<lnformer::Cpu>, "the CPU backend must provide every op of the Backend concept");
