#pragma once
// Which stack a residual belongs to. Defined below model/ because policies read it (DeepNorm's
// constants differ per stack; Admin keeps one running value per stack) and the model passes it to
// for_each_residual's visitor.

namespace lnformer {

/// Which stack a residual belongs to (Admin keeps one running value per stack).
enum class StackKind { encoder, decoder };

}  // namespace lnformer
