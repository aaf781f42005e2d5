#pragma once
// Broadcasts from one rank to all: values, strings, vectors, maps, tensors of any backend, and a
// model's parameters (broadcast_parameters: every rank starts from root's). Communicator: dist/communicator_interface.hpp.

#include <lnformer/core/error.hpp>
#include <lnformer/dist/communicator_interface.hpp>
#include <lnformer/nn/parameter.hpp>

#include <fmt/format.h>

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <map>
#include <span>
#include <string>
#include <type_traits>
#include <vector>

namespace lnformer::dist {

/// A trivially copyable value from root to every rank.
template <class T>
  requires std::is_trivially_copyable_v<T>
void broadcast_value(Communicator& comm, T& v, int root = 0) {
  comm.broadcast(std::as_writable_bytes(std::span<T>(&v, 1)), root);
}

/// A string from root to every rank (its length first).
inline void broadcast_string(Communicator& comm, std::string& s, int root = 0) {
  std::uint64_t n = s.size();
  broadcast_value(comm, n, root);
  s.resize(n);
  if (n > 0) comm.broadcast(std::as_writable_bytes(std::span<char>(s.data(), s.size())), root);
}

/// A vector of trivially copyable values from root to every rank (its length first).
template <class T>
  requires std::is_trivially_copyable_v<T>
void broadcast_vector(Communicator& comm, std::vector<T>& v, int root = 0) {
  std::uint64_t n = v.size();
  broadcast_value(comm, n, root);
  v.resize(n);
  if (n > 0) comm.broadcast(std::as_writable_bytes(std::span<T>(v)), root);
}

/// Floats from root to every rank, in place.
inline void broadcast_floats(Communicator& comm, std::span<float> x, int root = 0) {
  if (!x.empty()) comm.broadcast(std::as_writable_bytes(x), root);
}

/// A tensor of backend B from root to every rank, in place: host memory through the host
/// collective; device memory directly where the communicator can (NCCL), through the host otherwise.
template <class B>
void broadcast_tensor(Communicator& comm, Tensor<B>& t, int root = 0) {
  auto const n = static_cast<std::size_t>(t.numel());
  if (n == 0 || comm.size() == 1) return;
  if constexpr (BackendTraits<B>::host_accessible) {
    broadcast_floats(comm, std::span<float>(t.data(), n), root);
  } else if (comm.device_collectives()) {
    comm.broadcast_device(t.data(), n, root);
  } else {
    std::vector<float> h(n);
    if (comm.rank() == root) BackendTraits<B>::to_host(h.data(), t.data(), n * sizeof(float));
    broadcast_floats(comm, std::span<float>(h), root);
    BackendTraits<B>::from_host(t.data(), h.data(), n * sizeof(float));
  }
}

/// A string-to-string map (metadata) from root to every rank: the pairs as length-prefixed fields.
inline void broadcast_map(Communicator& comm, std::map<std::string, std::string>& m, int root = 0) {
  std::string flat;
  if (comm.rank() == root)
    for (auto const& [k, v] : m) flat += fmt::format("{}:{}{}:{}", k.size(), k, v.size(), v);
  broadcast_string(comm, flat, root);
  if (comm.rank() == root) return;
  m.clear();
  for (std::size_t i = 0; i < flat.size();) {
    auto take = [&] {
      auto const colon = flat.find(':', i);
      LNF_EXPECTS_AS(CommError, colon != std::string::npos, "broadcast_map: malformed data from rank {}", root);
      auto const n = static_cast<std::size_t>(std::stoull(flat.substr(i, colon - i)));
      std::string out = flat.substr(colon + 1, n);
      i = colon + 1 + n;
      return out;
    };
    std::string k = take();
    m[std::move(k)] = take();
  }
}

/// Every rank's parameter values become root's. The ranks must hold the same parameters (names and
/// shapes are checked against root's, so that a rank built with another configuration is an error
/// rather than a scrambled model).
template <class B>
void broadcast_parameters(Communicator& comm, ParameterList<B> const& params, int root = 0) {
  if (comm.size() == 1) return;
  std::string layout;
  for (auto const& p : params) layout += fmt::format("{}:{};", p.name, p.param->value.shape());
  std::string roots = layout;
  broadcast_string(comm, roots, root);
  std::int64_t mismatch = roots == layout ? 0 : 1;
  comm.allreduce_sum(std::span<std::int64_t>(&mismatch, 1));
  LNF_EXPECTS_AS(CommError, mismatch == 0,
                 "broadcast_parameters: {} rank(s) hold other parameters (names or shapes) than rank {}{}", mismatch,
                 root, roots == layout ? "" : " (this one among them)");
  for (auto const& p : params) broadcast_tensor(comm, p.param->value, root);
}

}  // namespace lnformer::dist
