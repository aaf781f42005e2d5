// The policy matrix's PostLN cells (see cells.hpp).
#include "cells.hpp"

namespace lnformer::bench {
template Result run_cell<PostLN>(std::string_view, std::string_view, Options const&);
}  // namespace lnformer::bench
