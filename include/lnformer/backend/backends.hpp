#pragma once
// Every backend available in this translation unit. Layers call ops by qualified name
// (ops::matmul(B{}, ...)), which binds to the overloads declared before the layer's definition, so
// every layer header includes this first: the CPU backend always, the GPU backend under nvcc.

#include <lnformer/backend/cpu/all.hpp>
