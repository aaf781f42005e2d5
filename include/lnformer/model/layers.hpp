#pragma once
// EncoderLayer and DecoderLayer (model/encoder_layer.hpp, model/decoder_layer.hpp). StackKind, which
// the layers and the policies share, lives below norm/ (norm/stack_kind.hpp).

#include <lnformer/model/config.hpp>
#include <lnformer/nn/attention.hpp>
#include <lnformer/nn/feed_forward.hpp>
#include <lnformer/norm/concept.hpp>
#include <lnformer/norm/stack_kind.hpp>

// The layers themselves, one header each.
#include <lnformer/model/decoder_layer.hpp>
#include <lnformer/model/encoder_layer.hpp>
