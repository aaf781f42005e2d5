#pragma once
// Admin initialisation as library functions (Liu et al. 2020; PAPERS.md section 2):
//   admin_profile(model, batch, ctx)   one training-mode forward pass that sets every w in order and
//                                      returns the values (the profile);
//   apply_admin_profile(model, prof)   sets w from a profile (e.g. one loaded from a file);
//   save/load_admin_profile(path)      the profile as JSON: {"encoder": [...], "decoder": [...]};
//   admin_closed_form_init(model, o)   admin-torch's closed forms instead of profiling;
//   fold_admin(model)                  a plain PostLN model computing the same outputs.

#include <lnformer/core/error.hpp>
#include <lnformer/model/language_model.hpp>
#include <lnformer/model/seq2seq.hpp>
#include <lnformer/norm/admin_ln.hpp>
#include <lnformer/norm/post_ln.hpp>

#include <nlohmann/json.hpp>

#include <cstdio>
#include <fstream>
#include <map>
#include <memory>
#include <string>
#include <vector>

namespace lnformer {

/// The w value of every sublayer, in order, per stack (one scalar per sublayer: profiling and the
/// closed forms give every channel of a sublayer the same value).
struct AdminProfile {
  std::vector<double> encoder;
  std::vector<double> decoder;
  friend bool operator==(AdminProfile const&, AdminProfile const&) = default;
};

namespace detail {
template <class Model>
concept AdminModel = std::same_as<typename Model::norm_policy, AdminLN>;

template <class Model>
std::pair<int, int> residual_counts(Model& m) {
  int enc = 0, dec = 0;
  m.for_each_residual([&](auto&, auto&, StackKind k, int) { ++(k == StackKind::encoder ? enc : dec); });
  return {enc, dec};
}
}  // namespace detail

/// Profiles w on one ordinary training batch (training mode, dropout on as configured). The running
/// value starts at 1 for the encoder and for the decoder separately. Gradients are not touched.
template <detail::AdminModel Model, class BatchT>
AdminProfile admin_profile(Model& model, BatchT const& batch, ForwardContext ctx) {
  auto [enc, dec] = AdminLN::profile(model, batch, ctx);
  return {std::move(enc), std::move(dec)};
}

template <detail::AdminModel Model>
void apply_admin_profile(Model& model, AdminProfile const& p) {
  auto const [ne, nd] = detail::residual_counts(model);
  LNF_EXPECTS_AS(ValueError, static_cast<int>(p.encoder.size()) == ne && static_cast<int>(p.decoder.size()) == nd,
                 "Admin profile has {} encoder and {} decoder values; the model has {} and {} sublayers",
                 p.encoder.size(), p.decoder.size(), ne, nd);
  model.for_each_residual([&](auto& res, auto&, StackKind k, int i) {
    double const v = (k == StackKind::encoder ? p.encoder : p.decoder)[static_cast<std::size_t>(i)];
    LNF_EXPECTS_AS(ValueError, std::isfinite(v) && v > 0, "Admin profile value {} at sublayer {} is not positive", v,
                   i);
    res.set_scale(res.w_trainable ? static_cast<float>(v) : 1.f);
  });
}

/// admin-torch's closed forms, N = the number of residual sublayers of each stack. The first sublayer
/// of each stack stays at w = 1 (see norm/admin_ln.hpp).
template <detail::AdminModel Model>
AdminProfile admin_closed_form_init(Model& model, AdminOrder order) {
  auto const [ne, nd] = detail::residual_counts(model);
  AdminProfile p;
  for (int i = 0; i < ne; ++i) p.encoder.push_back(i == 0 ? 1.0 : admin_closed_form(ne, order));
  for (int i = 0; i < nd; ++i) p.decoder.push_back(i == 0 ? 1.0 : admin_closed_form(nd, order));
  apply_admin_profile(model, p);
  return p;
}

inline void save_admin_profile(std::string const& path, AdminProfile const& p) {
  nlohmann::json j{{"format", "lnformer-admin-profile-1"}, {"encoder", p.encoder}, {"decoder", p.decoder}};
  std::string const tmp = path + ".tmp";
  {
    std::ofstream f(tmp, std::ios::trunc);
    LNF_EXPECTS_AS(IoError, f.good(), "cannot write Admin profile to {}", tmp);
    f << j.dump(2) << '\n';
    f.flush();
    LNF_EXPECTS_AS(IoError, f.good(), "writing Admin profile to {} failed", tmp);
  }
  LNF_EXPECTS_AS(IoError, std::rename(tmp.c_str(), path.c_str()) == 0, "cannot rename {} to {}", tmp, path);
}

inline AdminProfile load_admin_profile(std::string const& path) {
  std::ifstream f(path);
  LNF_EXPECTS_AS(IoError, f.good(), "cannot open Admin profile {}", path);
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(f);
  } catch (nlohmann::json::exception const& e) {
    throw IoError(fmt::format("Admin profile {} is not valid JSON: {}", path, e.what()));
  }
  auto read = [&](char const* key) {
    LNF_EXPECTS_AS(IoError, j.is_object() && j.contains(key) && j[key].is_array(),
                   "Admin profile {} has no array \"{}\"", path, key);
    std::vector<double> v;
    for (auto const& x : j[key]) {
      LNF_EXPECTS_AS(IoError, x.is_number(), "Admin profile {}: \"{}\" holds a non-number {}", path, key, x.dump());
      v.push_back(x.get<double>());
    }
    return v;
  };
  return {read("encoder"), read("decoder")};
}

namespace detail {
/// dst[name] = src[name] for every parameter of dst; src may have more (Admin's w).
template <class B>
void copy_parameters_by_name(ParameterList<B> const& src, ParameterList<B> const& dst) {
  std::map<std::string, Parameter<B>*> by_name;
  for (auto const& p : src) by_name[p.name] = p.param;
  for (auto const& p : dst) {
    auto it = by_name.find(p.name);
    LNF_EXPECTS_AS(Error, it != by_name.end(), "fold_admin: no source parameter named {}", p.name);
    LNF_EXPECTS(it->second->shape() == p.param->shape(), "fold_admin: {} has shape {} in the source and {} here",
                p.name, it->second->shape(), p.param->shape());
    p.param->value = it->second->value.clone();
  }
}

template <class B>
void scale_host(Tensor<B>& t, std::vector<float> const& s, bool columns, bool divide) {
  auto h = t.to_host();
  std::size_t const d = s.size();
  for (std::size_t i = 0; i < h.size(); ++i) {
    float const f = s[columns ? i % d : i];
    h[i] = divide ? h[i] / f : h[i] * f;
  }
  t = Tensor<B>(t.shape(), std::span<float const>(h));
}
}  // namespace detail

/// A plain PostLN model that computes the same function as the AdminLN model: for every sublayer
/// i > 0 of a stack, w_i is folded into the previous LayerNorm (gain and bias times w_i) and into the
/// input columns of the sublayer's first linear maps (divided by w_i): q/k/v for self-attention, q for
/// encoder-decoder attention (k/v read the encoder output), fc1 for the FFN. The first sublayer of
/// each stack has w = 1 and needs nothing.
template <template <class, class> class M, class B>
std::unique_ptr<M<PostLN, B>> fold_admin(M<AdminLN, B>& admin, std::uint64_t seed = 0) {
  auto out = std::make_unique<M<PostLN, B>>(admin.config(), seed);
  detail::copy_parameters_by_name(admin.parameters(), out->parameters());
  std::vector<std::vector<float>> w[2];
  admin.for_each_residual([&](auto& res, auto&, StackKind k, int) {
    w[static_cast<int>(k)].push_back(res.w.value.to_host());
  });
  LayerNorm<B>* prev[2] = {nullptr, nullptr};
  out->for_each_residual([&](auto& res, auto& sub, StackKind k, int i) {
    auto const& wi = w[static_cast<int>(k)][static_cast<std::size_t>(i)];
    if (i > 0) {
      detail::scale_host(prev[static_cast<int>(k)]->weight.value, wi, false, false);
      detail::scale_host(prev[static_cast<int>(k)]->bias.value, wi, false, false);
      if constexpr (requires { sub.v_proj; }) {
        detail::scale_host(sub.q_proj.weight.value, wi, true, true);
        if (sub.kind() == AttentionKind::self) {
          detail::scale_host(sub.k_proj.weight.value, wi, true, true);
          detail::scale_host(sub.v_proj.weight.value, wi, true, true);
        }
      } else {
        detail::scale_host(sub.fc1.weight.value, wi, true, true);
      }
    } else {
      for (float v : wi)
        LNF_EXPECTS_AS(ValueError, v == 1.f, "fold_admin: the first sublayer's w must be 1, found {}", v);
    }
    prev[static_cast<int>(k)] = &res.ln;
  });
  return out;
}

}  // namespace lnformer
