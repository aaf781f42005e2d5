#pragma once
// The stacks and the output head, one header each: Encoder (model/encoder.hpp), Decoder
// (model/decoder.hpp), what they share (model/stack_base.hpp), and OutputHead with LossStats
// (model/output_head.hpp).

#include <lnformer/model/decoder.hpp>
#include <lnformer/model/encoder.hpp>
#include <lnformer/model/output_head.hpp>
