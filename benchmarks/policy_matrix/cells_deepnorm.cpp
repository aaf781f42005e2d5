// The policy matrix's DeepNorm cells (see cells.hpp).
#include "cells.hpp"

namespace lnformer::bench {
template Result run_cell<DeepNorm>(std::string_view, std::string_view, Options const&);
}  // namespace lnformer::bench
