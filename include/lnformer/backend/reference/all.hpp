#pragma once
// The complete reference backend (the test oracle).

#include <lnformer/backend/reference/reference.hpp>

#include <lnformer/backend/reference/activation.hpp>
#include <lnformer/backend/reference/cross_entropy.hpp>
#include <lnformer/backend/reference/dropout.hpp>
#include <lnformer/backend/reference/elementwise.hpp>
#include <lnformer/backend/reference/embedding.hpp>
#include <lnformer/backend/reference/layer_norm.hpp>
#include <lnformer/backend/reference/matmul.hpp>
#include <lnformer/backend/reference/optimizer.hpp>
#include <lnformer/backend/reference/softmax.hpp>

#include <lnformer/backend/concept.hpp>

static_assert(lnformer::Backend<lnformer::Reference>, "the reference backend must provide every op of the Backend concept");
