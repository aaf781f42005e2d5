#pragma once
// Saving and loading optimizer state (safetensors), so that a resumed run continues exactly.
//
// Layout: buffer k of parameter `name` is the F32 tensor "optim/<buffer_names[k]>/<name>" (e.g.
// "optim/exp_avg/encoder.layers.0.fc1.weight"); the metadata holds "optim/optimizer" (O::name),
// "optim/step" (updates done), "optim/config" (O::describe(), for people) and "optim/format" ("1").
// The names do not collide with parameter names, so the tensors can share a file with the model's
// parameters (optimizer_state_tensors/optimizer_state_metadata give the pieces).
//
// Loading is strict: the file must be the state of the same optimizer, hold every buffer of every
// parameter of the state with the parameter's shape, and hold no other "optim/" tensor (a buffer
// this configuration does not use, or a parameter the state does not have). Tensors outside
// "optim/" are ignored. Everything is checked before anything is written, so a failed load leaves
// the state as it was. The weight decay per parameter is not stored: it comes from make_state.

#include <lnformer/io/safetensors.hpp>
#include <lnformer/optim/state.hpp>

#include <fmt/format.h>

#include <charconv>
#include <cstdint>
#include <map>
#include <set>
#include <span>
#include <string>
#include <string_view>
#include <type_traits>
#include <vector>

namespace lnformer::io {

inline constexpr std::string_view kOptimizerPrefix = "optim/";
inline constexpr std::string_view kOptimizerStateFormat = "1";

/// The tensor name of buffer `buffer` of parameter `param`.
[[nodiscard]] inline std::string optimizer_tensor_name(std::string_view buffer, std::string_view param) {
  return fmt::format("{}{}/{}", kOptimizerPrefix, buffer, param);
}

/// The metadata entries of a saved state.
template <class O, class B>
[[nodiscard]] std::map<std::string, std::string> optimizer_state_metadata(O const& opt,
                                                                          OptimizerState<O, B> const& state) {
  return {{"optim/optimizer", std::string(O::name)},
          {"optim/step", std::to_string(state.step)},
          {"optim/config", opt.describe()},
          {"optim/format", std::string(kOptimizerStateFormat)}};
}

/// The buffers of a CPU state as named views (no copy), to write together with other tensors.
template <class O>
[[nodiscard]] std::vector<NamedTensor> optimizer_state_tensors(OptimizerState<O, Cpu> const& state) {
  std::vector<NamedTensor> out;
  for (std::size_t k = 0; k < state.buffers.size(); ++k)
    for (std::size_t i = 0; i < state.buffers[k].size(); ++i)
      out.emplace_back(optimizer_tensor_name(O::buffer_names[k], state.params[i].name),
                       SaveView(state.buffers[k][i].cview()));
  return out;
}

/// Writes the state to `path` (atomically, see save_safetensors); `metadata` adds entries.
template <class O, class B>
void save_optimizer_state(std::string const& path, O const& opt, OptimizerState<O, B> const& state,
                          std::map<std::string, std::string> metadata = {}) {
  for (auto& [k, v] : optimizer_state_metadata(opt, state)) metadata[k] = v;
  if constexpr (std::is_same_v<B, Cpu>) {
    save_safetensors(path, optimizer_state_tensors(state), metadata);
  } else {  // other backends are staged on the host
    std::vector<Tensor<Cpu>> host;
    std::vector<NamedTensor> named;
    for (std::size_t k = 0; k < state.buffers.size(); ++k)
      for (std::size_t i = 0; i < state.buffers[k].size(); ++i) {
        auto const h = state.buffers[k][i].to_host();
        host.emplace_back(state.buffers[k][i].shape(), std::span<float const>(h));
      }
    std::size_t n = 0;
    for (std::size_t k = 0; k < state.buffers.size(); ++k)
      for (std::size_t i = 0; i < state.buffers[k].size(); ++i)
        named.emplace_back(optimizer_tensor_name(O::buffer_names[k], state.params[i].name),
                           SaveView(host[n++].cview()));
    save_safetensors(path, named, metadata);
  }
}

/// Restores `state` (made by opt.make_state over the current parameters) from `file`: the buffers
/// and the update count. IoError naming what is missing, extra or mis-shaped.
template <class O, class B>
void load_optimizer_state(SafetensorsFile const& file, O const& opt, OptimizerState<O, B>& state) {
  (void)opt;
  auto const& meta = file.metadata();
  auto get = [&](std::string const& key) -> std::string const& {
    auto it = meta.find(key);
    LNF_EXPECTS_AS(IoError, it != meta.end(),
                   "'{}' is not an optimizer state: its metadata has no '{}' (written by save_optimizer_state?)",
                   file.source(), key);
    return it->second;
  };
  LNF_EXPECTS_AS(IoError, get("optim/format") == kOptimizerStateFormat,
                 "'{}': optimizer state format '{}' is not the supported '{}'", file.source(), get("optim/format"),
                 kOptimizerStateFormat);
  LNF_EXPECTS_AS(IoError, get("optim/optimizer") == O::name,
                 "'{}' holds the state of optimizer '{}' but it is being loaded into a '{}' state", file.source(),
                 get("optim/optimizer"), O::name);
  std::string const& step_text = get("optim/step");
  std::int64_t step = -1;
  auto const [end, ec] = std::from_chars(step_text.data(), step_text.data() + step_text.size(), step);
  LNF_EXPECTS_AS(IoError, ec == std::errc{} && end == step_text.data() + step_text.size() && step >= 0,
                 "'{}': optim/step = '{}' is not a non-negative integer", file.source(), step_text);

  std::set<std::string> wanted;
  std::vector<std::string> missing, wrong;
  for (std::size_t k = 0; k < state.buffers.size(); ++k) {
    if (!state.has_buffer(k)) continue;
    for (auto const& e : state.params) {
      std::string const name = optimizer_tensor_name(O::buffer_names[k], e.name);
      wanted.insert(name);
      TensorInfo const* t = file.find(name);
      if (t == nullptr)
        missing.push_back(name);
      else if (!(t->shape == e.shape) || t->dtype != StDType::f32)
        wrong.push_back(fmt::format("{} is {} {} in the file but F32 {} in the state", name, dtype_name(t->dtype),
                                    t->shape, e.shape));
    }
  }
  std::vector<std::string> extra;
  for (auto const& t : file.tensors())
    if (std::string_view(t.name).starts_with(kOptimizerPrefix) && !wanted.count(t.name)) extra.push_back(t.name);
  LNF_EXPECTS_AS(IoError, wrong.empty(), "'{}': {} optimizer tensor(s) do not match the state: {}", file.source(),
                 wrong.size(), fmt::join(wrong, "; "));
  LNF_EXPECTS_AS(IoError, missing.empty(), "'{}' lacks {} optimizer tensor(s) of the state: {}", file.source(),
                 missing.size(), fmt::join(missing, ", "));
  LNF_EXPECTS_AS(IoError, extra.empty(),
                 "'{}' holds {} optimizer tensor(s) the state does not have: {} (another model, or a configuration "
                 "with other buffers, e.g. Sgd momentum on/off?)",
                 file.source(), extra.size(), fmt::join(extra, ", "));

  for (std::size_t k = 0; k < state.buffers.size(); ++k) {
    if (!state.has_buffer(k)) continue;
    for (std::size_t i = 0; i < state.params.size(); ++i) {
      std::string const name = optimizer_tensor_name(O::buffer_names[k], state.params[i].name);
      if constexpr (std::is_same_v<B, Cpu>) {
        file.read_into(name, state.buffers[k][i].view());
      } else {
        auto const h = file.read<float>(name);
        state.buffers[k][i] = Tensor<B>(state.params[i].shape, std::span<float const>(h));
      }
    }
  }
  state.step = step;
}

template <class O, class B>
void load_optimizer_state(std::string const& path, O const& opt, OptimizerState<O, B>& state) {
  load_optimizer_state(SafetensorsFile::open(path), opt, state);
}

}  // namespace lnformer::io
