#pragma once
// Every backend available in this translation unit. Layers call ops by qualified name
// (ops::matmul(B{}, ...)), which binds to the overloads declared before the layer's definition (no
// argument-dependent lookup for qualified names; see backend/tag.hpp), so every layer header
// includes this first.
//
// Plain C++ units get the CPU backend (oneDNN). Units compiled by nvcc get the GPU backend and the
// CPU backend's tag and memory traits (host staging: checkpoints, optimizer state), but not its ops:
// nvcc cannot parse oneDNN's headers. A program that trains on both puts each in its own unit.
// The Reference backend (plain loops, the tests' oracle) is included by name where it is wanted.

#include <lnformer/backend/cpu/tag.hpp>
#include <lnformer/backend/cuda/tag.hpp>

#if defined(__CUDACC__)
#include <lnformer/backend/cpu/optimizer.hpp>  // oneDNN-free: optimizer state staged on the host
#include <lnformer/backend/cuda/all.cuh>
#else
#include <lnformer/backend/cpu/all.hpp>
#endif
