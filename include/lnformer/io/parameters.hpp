#pragma once
// Saving and loading a model's parameters as a safetensors file, under the model's (fairseq-style)
// parameter names. Loading is strict: every parameter must be in the file with its exact shape and
// dtype F32, and the file must hold nothing else (unless allow_extra), so that a model never runs
// with silently missing or misplaced weights.

#include <lnformer/io/safetensors.hpp>
#include <lnformer/nn/parameter.hpp>

#include <map>
#include <set>
#include <string>
#include <vector>

namespace lnformer::io {

/// Writes every parameter's value (atomically: temporary file, fsync, rename).
template <class B>
void save_parameters(std::string const& path, ParameterList<B> const& params,
                     std::map<std::string, std::string> const& metadata = {}) {
  std::vector<Tensor<Cpu>> host;  // parameters of other backends are staged on the host
  host.reserve(params.size());
  std::vector<NamedTensor> named;
  named.reserve(params.size());
  for (auto const& p : params) {
    if constexpr (std::is_same_v<B, Cpu>) {
      named.emplace_back(p.name, SaveView(p.param->value.cview()));
    } else {
      auto const h = p.param->value.to_host();
      host.emplace_back(p.param->value.shape(), std::span<float const>(h));
      named.emplace_back(p.name, SaveView(host.back().cview()));
    }
  }
  save_safetensors(path, named, metadata);
}

struct LoadOptions {
  bool allow_extra = false;  ///< accept tensors in the file that the model does not have
};

/// Loads every parameter's value from `file`; IoError naming what is missing, extra or mis-shaped.
template <class B>
void load_parameters(SafetensorsFile const& file, ParameterList<B> const& params, LoadOptions opt = {}) {
  std::vector<std::string> missing, wrong;
  std::set<std::string> wanted;
  for (auto const& p : params) {
    wanted.insert(p.name);
    TensorInfo const* t = file.find(p.name);
    if (t == nullptr) {
      missing.push_back(p.name);
    } else if (!(t->shape == p.param->shape()) || t->dtype != StDType::f32) {
      wrong.push_back(fmt::format("{} is {} {} in the file but F32 {} in the model", p.name, dtype_name(t->dtype),
                                  t->shape, p.param->shape()));
    }
  }
  std::vector<std::string> extra;
  for (auto const& t : file.tensors())
    if (!wanted.count(t.name)) extra.push_back(t.name);
  LNF_EXPECTS_AS(IoError, wrong.empty(), "'{}': {} parameter(s) do not match the model: {}", file.source(),
                 wrong.size(), fmt::join(wrong, "; "));
  LNF_EXPECTS_AS(IoError, missing.empty(), "'{}' lacks {} parameter(s) of the model: {}", file.source(),
                 missing.size(), fmt::join(missing, ", "));
  LNF_EXPECTS_AS(IoError, opt.allow_extra || extra.empty(),
                 "'{}' holds {} tensor(s) the model does not have: {} (is it a model of another policy or "
                 "size? LoadOptions::allow_extra accepts them)",
                 file.source(), extra.size(), fmt::join(extra, ", "));
  for (auto const& p : params) {
    if constexpr (std::is_same_v<B, Cpu>) {
      file.read_into(p.name, p.param->value.view());
    } else {
      auto const h = file.read<float>(p.name);
      p.param->value = Tensor<B>(p.param->shape(), std::span<float const>(h));
    }
  }
}

template <class B>
void load_parameters(std::string const& path, ParameterList<B> const& params, LoadOptions opt = {}) {
  load_parameters(SafetensorsFile::open(path), params, opt);
}

}  // namespace lnformer::io
