#pragma once
// EncoderLayer and DecoderLayer (model/encoder_layer.hpp, model/decoder_layer.hpp), and StackKind.

#include <lnformer/model/config.hpp>
#include <lnformer/nn/attention.hpp>
#include <lnformer/nn/feed_forward.hpp>
#include <lnformer/norm/concept.hpp>

#include <string>

namespace lnformer {

/// Which stack a residual belongs to (Admin keeps one running value per stack).
enum class StackKind { encoder, decoder };

}  // namespace lnformer

// The layers themselves, one header each.
#include <lnformer/model/decoder_layer.hpp>
#include <lnformer/model/encoder_layer.hpp>
