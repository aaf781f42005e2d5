#pragma once
// The complete GPU backend: the tag, its context and every op. CUDA C++: nvcc only.

#include <lnformer/backend/cuda/gpu.cuh>

#include <lnformer/backend/cuda/activation.cuh>
#include <lnformer/backend/cuda/cross_entropy.cuh>
#include <lnformer/backend/cuda/dropout.cuh>
#include <lnformer/backend/cuda/elementwise.cuh>
#include <lnformer/backend/cuda/embedding.cuh>
#include <lnformer/backend/cuda/layer_norm.cuh>
#include <lnformer/backend/cuda/matmul.cuh>
#include <lnformer/backend/cuda/reduce.cuh>
#include <lnformer/backend/cuda/softmax.cuh>
#include <lnformer/backend/cuda/optimizer.cuh>

#include <lnformer/backend/concept.hpp>

static_assert(lnformer::Backend<lnformer::Gpu>, "the GPU backend must provide every op of the Backend concept");
