#pragma once
// The umbrella header: everything that needs only the core dependencies (oneDNN, Eigen, fmt,
// nlohmann-json).
// Optional parts (SentencePiece, MPI, NCCL, CLI helpers) are included by name.

#include <lnformer/version.hpp>

#include <lnformer/core/error.hpp>
#include <lnformer/core/rng.hpp>
#include <lnformer/core/shape.hpp>
#include <lnformer/core/tensor.hpp>
#include <lnformer/core/type_list.hpp>

#include <lnformer/backend/backends.hpp>

#include <lnformer/nn/attention.hpp>
#include <lnformer/nn/dropout.hpp>
#include <lnformer/nn/embedding.hpp>
#include <lnformer/nn/feed_forward.hpp>
#include <lnformer/nn/layer_norm.hpp>
#include <lnformer/nn/linear.hpp>

#include <lnformer/norm/policies.hpp>

#include <lnformer/data/gettext.hpp>
#include <lnformer/data/parallel_corpus.hpp>
#include <lnformer/data/synthetic.hpp>
#include <lnformer/data/token_batches.hpp>

#include <lnformer/model/batch.hpp>
#include <lnformer/model/config.hpp>
#include <lnformer/model/language_model.hpp>
#include <lnformer/model/seq2seq.hpp>

#include <lnformer/decode/beam.hpp>
#include <lnformer/decode/greedy.hpp>
#include <lnformer/decode/incremental.hpp>
#include <lnformer/metrics/accuracy.hpp>
#include <lnformer/metrics/bleu.hpp>
#include <lnformer/metrics/chrf.hpp>

#include <lnformer/analysis/admin.hpp>
#include <lnformer/analysis/dependency.hpp>
#include <lnformer/analysis/fit.hpp>
#include <lnformer/analysis/gradients.hpp>
#include <lnformer/analysis/paper_setup.hpp>
#include <lnformer/analysis/perturbation.hpp>
#include <lnformer/analysis/seed_summary.hpp>
#include <lnformer/analysis/training_stats.hpp>

#include <lnformer/optim/optimizers.hpp>
#include <lnformer/schedule/schedules.hpp>
#include <lnformer/train/trainer.hpp>
#include <lnformer/dist/communicator.hpp>

#include <lnformer/io/checksum.hpp>
#include <lnformer/io/parameters.hpp>
#include <lnformer/io/safetensors.hpp>
