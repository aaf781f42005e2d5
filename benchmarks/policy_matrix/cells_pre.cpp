// The policy matrix's PreLN cells (see cells.hpp).
#include "cells.hpp"

namespace lnformer::bench {
template Result run_cell<PreLN>(std::string_view, std::string_view, Options const&);
}  // namespace lnformer::bench
