#pragma once
// safetensors checkpoints: a strict reader and an atomic writer.
//
// File layout (https://github.com/huggingface/safetensors):
//   8 bytes   N, little-endian u64: the length of the header
//   N bytes   UTF-8 JSON object: name -> {"dtype": "F32", "shape": [2, 3], "data_offsets": [b, e]},
//             plus an optional "__metadata__": {string: string}
//   rest      the data buffer; a tensor's bytes are [b, e) of it, row-major, little-endian
//
// The reader treats the file as untrusted input: every rule of the format is checked (see
// SafetensorsFile::parse) and a violation throws lnformer::IoError naming the file, the tensor
// and the numbers involved. Nothing is read outside the buffer, whatever the bytes say.
//
// The writer lays tensors out as the reference implementation does (by dtype, widest kinds first,
// then by name; header padded with spaces to a multiple of 8 bytes), so a file it writes is
// byte-for-byte what `safetensors.torch.save_file` writes for the same tensors and (at most one
// key of) metadata. It writes `path + ".tmp"`, fsyncs it and renames it over `path`: a crash
// leaves either the old file or the new one, never half a checkpoint.
//
// The parts, one concern each: io/safetensors/dtype.hpp (the dtype table, TensorInfo),
// io/safetensors/reader.hpp (SafetensorsFile), io/safetensors/writer.hpp (save_safetensors),
// io/safetensors/bytes.hpp (byte-level helpers both share).

#include <lnformer/io/safetensors/dtype.hpp>
#include <lnformer/io/safetensors/reader.hpp>
#include <lnformer/io/safetensors/writer.hpp>
