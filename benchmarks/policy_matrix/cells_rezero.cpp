// The policy matrix's ReZero cells (see cells.hpp).
#include "cells.hpp"

namespace lnformer::bench {
template Result run_cell<ReZero>(std::string_view, std::string_view, Options const&);
}  // namespace lnformer::bench
