#pragma once
// Communicators for data-parallel training and the helpers built on them: the interface
// (dist/communicator_interface.hpp: why it is virtual, the rules every collective follows), the
// broadcasts (dist/broadcast.hpp) and the gradient sums (dist/gradient_reducer.hpp). Include this
// for all of them; MPI and NCCL communicators are in dist/mpi.hpp and dist/nccl.cuh.

#include <lnformer/dist/broadcast.hpp>
#include <lnformer/dist/communicator_interface.hpp>
#include <lnformer/dist/gradient_reducer.hpp>
