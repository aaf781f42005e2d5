// The policy matrix's AdminLN cells (see cells.hpp).
#include "cells.hpp"

namespace lnformer::bench {
template Result run_cell<AdminLN>(std::string_view, std::string_view, Options const&);
}  // namespace lnformer::bench
