// Optimizers (Sgd, Adam, AdamW, RAdam) and gradient clipping: step-by-step parity with torch.optim
// 1.13 on checked-in data (tests/optim/gen_torch_optim.py, re-checked against live torch by the
// ctest optim_torch_data), weight-decay groups, configuration and state errors, and state
// checkpoints that resume bit for bit.
#include <lnformer/backend/cpu/all.hpp>
#include <lnformer/backend/reference/all.hpp>
#include <lnformer/io/parameters.hpp>
#include <lnformer/optim/optimizers.hpp>
#include <lnformer/schedule/schedules.hpp>

#include "support.hpp"

#include <doctest/doctest.h>
#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <deque>
#include <filesystem>
#include <fstream>
#include <limits>
#include <string>
#include <vector>

#include <unistd.h>

using namespace lnformer;
using namespace lnformer::test;
using nlohmann::json;

namespace {

namespace fs = std::filesystem;

// --- torch parity data --------------------------------------------------------------------------

// Tolerance against torch (kept in sync with gen_torch_optim.py): |ours - torch| <= kRtol |torch| + kAtol.
// Both sides run the same float32 operations in the same order from the same float32 inputs. They
// differ only where torch's AVX2 kernels fuse a multiply-add (add_ with alpha, addcmul_, addcdiv_:
// checked against numpy, torch matches fma exactly) and we round the product first: a half-ulp event
// in one intermediate, of the size of the operands. The operands are the parameters (|p| <= ~2 here,
// ulp 2.4e-7) and the updates (lr * O(1)), so after 8 steps the difference is a few ulps of the
// parameter scale, also where p - lr * d cancels to a small value; measured: at most 2.4e-7 (SGD with
// momentum), 1.2e-7 (RAdam), 6e-8 (Adam, AdamW), the test prints it. kAtol = 1e-6 (about 8 ulps of
// the parameter scale) plus kRtol = 1e-6 leave room for another CPU's rounding without hiding a wrong
// formula: a bias correction off by one step, a missing eps term, dampening on the first step or
// weight decay on a no-decay parameter each move values by 1e-4 or more.
constexpr double kRtol = 1e-6;
constexpr double kAtol = 1e-6;

fs::path torch_data_path() {
  if (char const* env = std::getenv("LNF_TORCH_OPTIM_DATA")) return env;
  return fs::path(__FILE__).parent_path() / "torch_optim.json";
}

json const& torch_data() {
  static json const data = [] {
    fs::path const path = torch_data_path();
    std::ifstream in(path);
    REQUIRE_MESSAGE(in.good(), "cannot read ", path.string(), " (regenerate with tests/optim/gen_torch_optim.py)");
    return json::parse(in);
  }();
  return data;
}

std::vector<float> floats(json const& j) {
  std::vector<float> v;
  for (auto const& x : j) v.push_back(static_cast<float>(x.get<double>()));
  return v;
}

Shape shape_of(json const& j) {
  std::vector<std::int64_t> d = j.get<std::vector<std::int64_t>>();
  return Shape::from(d.begin(), d.end());
}

template <class O>
O config_from(json const& c) {
  O o{};
  if constexpr (std::is_same_v<O, Sgd>) {
    o.momentum = static_cast<float>(c.at("momentum").get<double>());
    o.dampening = static_cast<float>(c.at("dampening").get<double>());
    o.nesterov = c.at("nesterov").get<bool>();
  } else {
    o.beta1 = static_cast<float>(c.at("beta1").get<double>());
    o.beta2 = static_cast<float>(c.at("beta2").get<double>());
    o.eps = static_cast<float>(c.at("eps").get<double>());
  }
  o.weight_decay = static_cast<float>(c.at("weight_decay").get<double>());
  return o;
}

// Parameters of backend B that a ParameterList can point into (a deque never moves its elements).
template <class B>
struct Params {
  std::deque<Parameter<B>> storage;
  ParameterList<B> list;

  Parameter<B>& add(std::string name, Shape shape, bool decay, std::vector<float> const& init = {}) {
    auto& p = storage.emplace_back(shape, decay);
    if (!init.empty()) p.value = Tensor<B>(shape, std::span<float const>(init));
    list.push_back({std::move(name), &p});
    return p;
  }
  void set_grads(std::vector<std::vector<float>> const& g) {
    REQUIRE(g.size() == storage.size());
    for (std::size_t i = 0; i < g.size(); ++i)
      storage[i].grad = Tensor<B>(storage[i].shape(), std::span<float const>(g[i]));
  }
};

std::vector<float> host(Tensor<Cpu> const& t) { return t.to_host(); }
std::vector<float> host(Tensor<Reference> const& t) { return t.to_host(); }

// A small model-like parameter list with gradients from `rng`.
template <class B>
void fill_model(Params<B>& ps, Rng& rng) {
  ps.add("encoder.layers.0.fc1.weight", Shape{8, 6}, true);
  ps.add("encoder.layers.0.fc1.bias", Shape{8}, false);
  ps.add("encoder.layers.0.final_layer_norm.weight", Shape{6}, false);
  ps.add("encoder.layers.0.attn_res.w", Shape{6}, false);
  for (auto& p : ps.storage) p.value = random_tensor<B>(p.shape(), rng);
}
template <class B>
void random_grads(Params<B>& ps, Rng& rng, float scale = 1.f) {
  for (auto& p : ps.storage) p.grad = random_tensor<B>(p.shape(), rng, -scale, scale);
}

// A temporary directory for checkpoints, removed at exit.
struct TempDir {
  fs::path path;
  TempDir() {
    path = fs::temp_directory_path() / fmt::format("lnf_optim_{}", ::getpid());
    fs::create_directories(path);
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path, ec);
  }
  [[nodiscard]] std::string file(std::string_view name) const { return (path / name).string(); }
};

}  // namespace

// --- compile-time contracts ---------------------------------------------------------------------

static_assert(Optimizer<Sgd> && Optimizer<Adam> && Optimizer<AdamW> && Optimizer<RAdam>);
static_assert(OptimizerFor<Adam, Reference>);
static_assert(Optimizers::size == 4);
static_assert(std::is_aggregate_v<Adam> && std::is_aggregate_v<Sgd>);
static_assert(!std::is_same_v<Adam::State<Cpu>, AdamW::State<Cpu>>, "states of different optimizers do not mix");
static_assert(Adam{.beta2 = 0.98f}.beta1 == 0.9f);

// --- parity with torch.optim --------------------------------------------------------------------

TEST_CASE_TEMPLATE("optimizers match torch.optim 1.13 step by step (checked-in data)", B, Cpu, Reference) {
  json const& data = torch_data();
  INFO("data: ", torch_data_path().string(), " from torch ", data.at("torch_version").get<std::string>());
  REQUIRE(data.at("cases").size() >= 6);
  for (json const& cs : data.at("cases")) {
    std::string const case_name = cs.at("name").get<std::string>();
    CAPTURE(case_name);
    dispatch(
        Optimizers{}, cs.at("optimizer").get<std::string>(),
        [&](auto tag) {
          using O = typename decltype(tag)::type;
          O const opt = config_from<O>(cs.at("config"));
          Params<B> ps;
          for (json const& p : cs.at("params"))
            ps.add(p.at("name").get<std::string>(), shape_of(p.at("shape")), p.at("decay").get<bool>(),
                   floats(p.at("init")));
          auto state = opt.make_state(ps.list);
          std::vector<float> const lrs = floats(cs.at("lrs"));
          double worst_abs = 0, worst_rel = 0;
          for (std::size_t t = 0; t < lrs.size(); ++t) {
            std::vector<std::vector<float>> grads;
            for (json const& g : cs.at("grads")[t]) grads.push_back(floats(g));
            ps.set_grads(grads);
            opt.step(state, ps.list, lrs[t]);
            CHECK(state.step == static_cast<std::int64_t>(t + 1));
            for (std::size_t i = 0; i < ps.storage.size(); ++i) {
              std::vector<float> const want = floats(cs.at("expected")[t][i]);
              std::vector<float> const got = host(ps.storage[i].value);
              auto const m = compare(got, want, kRtol, kAtol);
              INFO(fmt::format("{} step {} parameter '{}': {} of {} differ; first at {}: {} vs torch {}",
                               case_name, t + 1, ps.list[i].name, m.count, got.size(), m.index, m.a, m.b));
              CHECK(m.count == 0);
              for (std::size_t e = 0; e < got.size(); ++e) {
                double const d = std::abs(static_cast<double>(got[e]) - want[e]);
                worst_abs = std::max(worst_abs, d);
                if (std::abs(want[e]) >= 1e-2f) worst_rel = std::max(worst_rel, d / std::abs(want[e]));
              }
            }
          }
          MESSAGE(fmt::format("{} on {}: over {} steps, max |ours - torch| {:.3g}, max relative {:.3g} "
                              "(where |torch| >= 1e-2)",
                              case_name, B::name, lrs.size(), worst_abs, worst_rel));
        },
        "optimizer");
  }
}

TEST_CASE("clip_grad_norm matches torch.nn.utils.clip_grad_norm_ (checked-in data)") {
  for (json const& cs : torch_data().at("clip")) {
    float const max_norm = static_cast<float>(cs.at("max_norm").get<double>());
    CAPTURE(max_norm);
    Params<Cpu> ps;
    json const& shapes = torch_data().at("cases")[0].at("params");
    std::vector<std::vector<float>> grads;
    for (std::size_t i = 0; i < shapes.size(); ++i) {
      ps.add(fmt::format("p{}", i), shape_of(shapes[i].at("shape")), true);
      grads.push_back(floats(cs.at("grads")[i]));
    }
    ps.set_grads(grads);
    float const norm = clip_grad_norm(ps.list, max_norm);
    double const want = cs.at("norm").get<double>();
    CHECK(std::abs(norm - want) <= kRtol * want);
    for (std::size_t i = 0; i < ps.storage.size(); ++i) {
      auto const m = compare(host(ps.storage[i].grad), floats(cs.at("clipped")[i]), kRtol, kAtol);
      INFO(fmt::format("gradient {}: {} differ; first at {}: {} vs torch {}", i, m.count, m.index, m.a, m.b));
      CHECK(m.count == 0);
    }
  }
}

// --- clipping -----------------------------------------------------------------------------------

TEST_CASE("clip_grad_norm: norm, scaling, norm-only mode, non-finite gradients") {
  Params<Cpu> ps;
  ps.add("a", Shape{2}, true);
  ps.add("b", Shape{1}, false);
  ps.set_grads({{3.f, 0.f}, {4.f}});  // norm 5

  SUBCASE("below the threshold nothing changes") {
    CHECK(clip_grad_norm(ps.list, 10.f) == 5.f);
    CHECK(host(ps.storage[0].grad) == std::vector<float>{3.f, 0.f});
  }
  SUBCASE("above it the gradients are scaled to max_norm / (norm + 1e-6)") {
    CHECK(clip_grad_norm(ps.list, 1.f) == 5.f);
    float const coef = 1.f / (5.f + 1e-6f) * 1.f;
    CHECK(host(ps.storage[0].grad) == std::vector<float>{3.f * coef, 0.f});
    CHECK(host(ps.storage[1].grad) == std::vector<float>{4.f * coef});
    CHECK(grad_norm(ps.list) == doctest::Approx(1.0).epsilon(1e-6));
  }
  SUBCASE("a little above it, a little scaling") {
    CHECK(clip_grad_norm(ps.list, 4.f) == 5.f);
    CHECK(grad_norm(ps.list) == doctest::Approx(4.0).epsilon(1e-6));
  }
  SUBCASE("exactly at it: scaled by max_norm / (norm + 1e-6), as torch") {
    CHECK(clip_grad_norm(ps.list, 5.f) == 5.f);
    float const coef = 1.f / (5.f + 1e-6f) * 5.f;
    REQUIRE(coef < 1.f);
    CHECK(host(ps.storage[1].grad) == std::vector<float>{4.f * coef});
  }
  SUBCASE("max_norm <= 0 only computes the norm") {
    CHECK(clip_grad_norm(ps.list, 0.f) == 5.f);
    CHECK(clip_grad_norm(ps.list, -1.f) == 5.f);
    CHECK(host(ps.storage[1].grad) == std::vector<float>{4.f});
  }
  SUBCASE("a NaN or infinite gradient gives a non-finite norm and leaves the gradients alone") {
    ps.set_grads({{3.f, std::numeric_limits<float>::quiet_NaN()}, {4.f}});
    CHECK(std::isnan(clip_grad_norm(ps.list, 1.f)));
    CHECK(host(ps.storage[1].grad) == std::vector<float>{4.f});
    ps.set_grads({{3.f, std::numeric_limits<float>::infinity()}, {4.f}});
    CHECK(std::isinf(clip_grad_norm(ps.list, 1.f)));
    CHECK(host(ps.storage[0].grad)[0] == 3.f);
  }
  SUBCASE("an empty list has norm 0; a NaN max_norm is an error") {
    CHECK(clip_grad_norm(ParameterList<Cpu>{}, 1.f) == 0.f);
    CHECK_THROWS_WITH_AS(clip_grad_norm(ps.list, std::numeric_limits<float>::quiet_NaN()),
                         doctest::Contains("clip_grad_norm: max_norm is NaN"), ValueError);
  }
}

// --- weight-decay groups ------------------------------------------------------------------------

TEST_CASE("weight decay applies to decay = true parameters only, or as a rule says") {
  Params<Cpu> ps;
  ps.add("fc.weight", Shape{2}, true, {1.f, -2.f});
  ps.add("fc.bias", Shape{2}, false, {1.f, -2.f});
  ps.set_grads({{0.f, 0.f}, {0.f, 0.f}});  // zero gradients: only weight decay moves anything

  SUBCASE("Sgd (coupled): p -= lr * wd * p for decaying parameters") {
    Sgd const opt{.weight_decay = 0.5f};
    auto st = opt.make_state(ps.list);
    CHECK(st.params[0].weight_decay == 0.5f);
    CHECK(st.params[1].weight_decay == 0.f);
    CHECK_FALSE(st.has_buffer(0));  // no momentum, no buffer
    opt.step(st, ps.list, 0.1f);
    CHECK(host(ps.storage[0].value) == std::vector<float>{1.f - 0.1f * (0.5f * 1.f), -2.f - 0.1f * (0.5f * -2.f)});
    CHECK(host(ps.storage[1].value) == std::vector<float>{1.f, -2.f});
  }
  SUBCASE("AdamW (decoupled): p *= 1 - lr * wd; the no-decay parameter stays put") {
    AdamW const opt{.weight_decay = 0.5f};
    auto st = opt.make_state(ps.list);
    opt.step(st, ps.list, 0.1f);
    float const s = static_cast<float>(1.0 - 0.1f * 0.5);
    CHECK(host(ps.storage[0].value) == std::vector<float>{1.f * s, -2.f * s});
    CHECK(host(ps.storage[1].value) == std::vector<float>{1.f, -2.f});
  }
  SUBCASE("Adam / RAdam (coupled): the decayed gradient moves the parameter, not the no-decay one") {
    for (int which = 0; which < 2; ++which) {
      Params<Cpu> q;
      q.add("fc.weight", Shape{2}, true, {1.f, -2.f});
      q.add("fc.bias", Shape{2}, false, {1.f, -2.f});
      q.set_grads({{0.f, 0.f}, {0.f, 0.f}});
      if (which == 0) {
        Adam const opt{.weight_decay = 0.1f};
        auto st = opt.make_state(q.list);
        opt.step(st, q.list, 0.01f);
      } else {
        RAdam const opt{.weight_decay = 0.1f};
        auto st = opt.make_state(q.list);
        opt.step(st, q.list, 0.01f);
      }
      auto const w = host(q.storage[0].value);
      CHECK(w[0] < 1.f);   // moved toward 0
      CHECK(w[1] > -2.f);
      CHECK(host(q.storage[1].value) == std::vector<float>{1.f, -2.f});
    }
  }
  SUBCASE("a rule overrides the groups: per-parameter weight decay by name") {
    Sgd const opt{.weight_decay = 0.5f};
    auto st = opt.make_state(ps.list, [](ParameterRef<Cpu> const& p) { return p.name.ends_with(".bias") ? 0.25f : 0.f; });
    CHECK(st.params[0].weight_decay == 0.f);
    CHECK(st.params[1].weight_decay == 0.25f);
    opt.step(st, ps.list, 1.f);
    CHECK(host(ps.storage[0].value) == std::vector<float>{1.f, -2.f});
    CHECK(host(ps.storage[1].value) == std::vector<float>{0.75f, -1.5f});
  }
  SUBCASE("a rule giving a negative or NaN weight decay is an error naming the parameter") {
    Adam const opt;
    CHECK_THROWS_WITH_AS((void)opt.make_state(ps.list, [](ParameterRef<Cpu> const&) { return -1.f; }),
                         doctest::Contains("the weight-decay rule gave -1 for parameter 'fc.weight'"), ValueError);
  }
}

// --- behaviour details --------------------------------------------------------------------------

TEST_CASE("RAdam rectifies from the step where rho_t exceeds 5") {
  RAdam const opt{.beta2 = 0.98f};
  for (std::int64_t t = 1; t <= 5; ++t) CHECK_FALSE(opt.rectification(t).rectify);
  for (std::int64_t t = 6; t <= 20; ++t) {
    auto const r = opt.rectification(t);
    CHECK(r.rectify);
    CHECK(r.rect > 0.0);
    CHECK(r.rect < 1.0);
  }
  CHECK(opt.rectification(1'000'000).rect == doctest::Approx(1.0).epsilon(1e-3));
}

TEST_CASE("Sgd: the first update starts the momentum buffer at the gradient (torch)") {
  Params<Cpu> ps;
  ps.add("w", Shape{1}, true, {0.f});
  ps.set_grads({{1.f}});
  Sgd const opt{.momentum = 0.9f, .dampening = 0.5f};
  auto st = opt.make_state(ps.list);
  opt.step(st, ps.list, 1.f);
  CHECK(host(st.buffers[0][0]) == std::vector<float>{1.f});  // not (1 - dampening) * g
  CHECK(host(ps.storage[0].value) == std::vector<float>{-1.f});
  opt.step(st, ps.list, 1.f);
  CHECK(host(st.buffers[0][0]) == std::vector<float>{0.9f * 1.f + 0.5f * 1.f});
}

// A configuration of each optimizer that exercises every term (momentum, Nesterov, weight decay).
template <class O>
O busy_config() {
  if constexpr (std::is_same_v<O, Sgd>)
    return Sgd{.momentum = 0.9f, .nesterov = true, .weight_decay = 1e-2f};
  else
    return O{.beta2 = 0.98f, .weight_decay = 1e-2f};
}

TEST_CASE("a large tensor (parallel loop) updates like the same values split into small tensors") {
  Rng rng(7);
  std::int64_t const n = std::int64_t{1} << 17;  // above the parallel threshold
  std::int64_t const chunk = 1000;               // below it
  auto const v = random_tensor<Cpu>(Shape{n}, rng).to_host();
  auto const g = random_tensor<Cpu>(Shape{n}, rng).to_host();
  for_each_type(Optimizers{}, [&](auto tag) {
    using O = typename decltype(tag)::type;
    CAPTURE(O::name);
    Params<Cpu> big, small;
    auto& b = big.add("big", Shape{n}, true, v);
    b.grad = Tensor<Cpu>(Shape{n}, std::span<float const>(g));
    for (std::int64_t s = 0; s < n; s += chunk) {
      std::int64_t const e = std::min(n, s + chunk);
      auto& p = small.add(fmt::format("small.{}", s), Shape{e - s}, true,
                          std::vector<float>(v.begin() + s, v.begin() + e));
      p.grad = Tensor<Cpu>(Shape{e - s}, std::span<float const>(g.data() + s, static_cast<std::size_t>(e - s)));
    }
    O const opt = busy_config<O>();
    auto sb = opt.make_state(big.list);
    auto ss = opt.make_state(small.list);
    for (int t = 0; t < 7; ++t) {  // RAdam rectifies from step 6
      opt.step(sb, big.list, 1e-2f);
      opt.step(ss, small.list, 1e-2f);
    }
    std::vector<float> joined;
    for (auto const& p : small.storage) {
      auto const h = p.value.to_host();
      joined.insert(joined.end(), h.begin(), h.end());
    }
    auto const m = compare(b.value.to_host(), joined, 0.0, 0.0);
    INFO(fmt::format("{}: {} of {} differ; first at {}: {} vs {}", O::name, m.count, n, m.index, m.a, m.b));
    CHECK(m.count == 0);
  });
}

TEST_CASE("runtime names select optimizers; unknown names list the valid ones") {
  CHECK(type_names(Optimizers{}) == "sgd, adam, adamw, radam");
  std::string got;
  dispatch(Optimizers{}, "radam", [&](auto tag) { got = decltype(tag)::type::name; }, "optimizer");
  CHECK(got == "radam");
  CHECK_THROWS_WITH_AS(dispatch(Optimizers{}, "adagrad", [](auto) {}, "optimizer"),
                       doctest::Contains("unknown optimizer 'adagrad'; valid: sgd, adam, adamw, radam"), ValueError);
  CHECK(Adam{.beta2 = 0.98f}.describe() == "beta1=0.9 beta2=0.98 eps=1e-08 weight_decay=0");
}

// --- errors -------------------------------------------------------------------------------------

TEST_CASE("bad configurations and learning rates are ValueErrors naming the field") {
  Params<Cpu> ps;
  ps.add("w", Shape{2}, true);
  auto bad = [&](auto const& opt, char const* what) {
    CHECK_THROWS_WITH_AS((void)opt.make_state(ps.list), doctest::Contains(what), ValueError);
  };
  bad(Adam{.beta1 = 1.f}, "adam: beta1 = 1 is outside [0, 1)");
  bad(Adam{.beta2 = -0.5f}, "adam: beta2 = -0.5 is outside [0, 1)");
  bad(AdamW{.eps = 0.f}, "adamw: eps = 0 must be finite and > 0");
  bad(RAdam{.eps = -1e-8f}, "radam: eps = -1e-08 must be finite and > 0");
  bad(RAdam{.weight_decay = -1.f}, "radam: weight_decay = -1 must be finite and >= 0");
  bad(Adam{.weight_decay = std::numeric_limits<float>::infinity()}, "adam: weight_decay = inf must be finite");
  bad(Sgd{.momentum = 1.5f}, "sgd: momentum = 1.5 is outside [0, 1)");
  bad(Sgd{.dampening = 2.f}, "sgd: dampening = 2 is outside [0, 1]");
  bad(Sgd{.nesterov = true}, "sgd: Nesterov momentum needs momentum > 0 and dampening = 0");
  bad(Sgd{.momentum = 0.9f, .dampening = 0.1f, .nesterov = true}, "dampening = 0.1");

  Adam const opt;
  auto st = opt.make_state(ps.list);
  CHECK_THROWS_WITH_AS(opt.step(st, ps.list, -1e-3f),
                       doctest::Contains("adam::step: learning rate -0.001 for update 1 must be finite and >= 0"),
                       ValueError);
  CHECK_THROWS_WITH_AS(opt.step(st, ps.list, std::numeric_limits<float>::quiet_NaN()),
                       doctest::Contains("learning rate nan for update 1"), ValueError);
  CHECK(st.step == 0);  // a refused step is not counted
  Adam changed = opt;
  changed.beta2 = 1.f;  // the configuration is checked at every step too
  CHECK_THROWS_WITH_AS(changed.step(st, ps.list, 1e-3f), doctest::Contains("beta2 = 1 is outside [0, 1)"), ValueError);
  Sgd const sgd{.momentum = 0.9f};
  auto sst = Sgd{}.make_state(ps.list);
  CHECK_THROWS_WITH_AS(sgd.step(sst, ps.list, 0.1f),
                       doctest::Contains("the state was made without momentum buffers but momentum is now 0.9"),
                       ValueError);
}

TEST_CASE("a state used with other parameters fails naming the parameter") {
  Params<Cpu> ps;
  ps.add("enc.fc1.weight", Shape{3, 2}, true);
  ps.add("enc.fc1.bias", Shape{3}, false);
  Adam const opt;
  auto st = opt.make_state(ps.list);

  ParameterList<Cpu> fewer{ps.list[0]};
  CHECK_THROWS_WITH_AS(opt.step(st, fewer, 1e-3f),
                       doctest::Contains("the state was made for 2 parameters but 1 were given"), ShapeError);
  ParameterList<Cpu> swapped{ps.list[1], ps.list[0]};
  CHECK_THROWS_WITH_AS(opt.step(st, swapped, 1e-3f),
                       doctest::Contains("parameter 0 is 'enc.fc1.bias' [3] but the state's parameter 0 is "
                                         "'enc.fc1.weight' [3, 2]"),
                       ShapeError);
  Params<Cpu> other;
  other.add("enc.fc1.weight", Shape{3, 2}, true);
  other.add("enc.fc1.bias", Shape{4}, false);
  CHECK_THROWS_WITH_AS(opt.step(st, other.list, 1e-3f),
                       doctest::Contains("parameter 'enc.fc1.bias' has shape [4] but its state has shape [3]"),
                       ShapeError);
  ps.storage[1].grad = Tensor<Cpu>(Shape{1, 3});
  CHECK_THROWS_WITH_AS(opt.step(st, ps.list, 1e-3f),
                       doctest::Contains("the gradient of parameter 'enc.fc1.bias' has shape [1, 3]"), ShapeError);
  CHECK(st.step == 0);

  Params<Cpu> dup;
  dup.add("a", Shape{2}, true);
  dup.add("a", Shape{2}, true);
  CHECK_THROWS_WITH_AS((void)opt.make_state(dup.list), doctest::Contains("two parameters are called 'a'"),
                       ValueError);
  ParameterList<Cpu> twice{ps.list[0], {"alias", ps.list[0].param}};
  CHECK_THROWS_WITH_AS((void)opt.make_state(twice),
                       doctest::Contains("parameter 'alias' is the same tensor as an earlier entry"), ValueError);
}

// --- state checkpoints --------------------------------------------------------------------------

TEST_CASE_TEMPLATE("a saved and loaded state continues bit for bit", O, Sgd, Adam, AdamW, RAdam) {
  TempDir dir;
  O const opt = busy_config<O>();
  Rng init(11);
  Params<Cpu> a, b;  // a: uninterrupted run; b: resumed from a checkpoint
  fill_model(a, init);
  Rng init2(11);
  fill_model(b, init2);
  auto sa = opt.make_state(a.list);
  auto sb = opt.make_state(b.list);
  Rng grads_a(5), grads_b(5);
  InverseSqrt const sched{.peak = 1e-2f, .warmup = 3};
  std::int64_t step = 1;
  for (; step <= 4; ++step) {
    random_grads(a, grads_a);
    opt.step(sa, a.list, sched(step));
    random_grads(b, grads_b);
    opt.step(sb, b.list, sched(step));
  }
  std::string const path = dir.file("optim.safetensors");
  io::save_parameters(dir.file("model.safetensors"), b.list);
  io::save_optimizer_state(path, opt, sb);

  // A fresh process, as it were: new parameters, new state, both loaded.
  Params<Cpu> c;
  Rng other(99);
  fill_model(c, other);
  io::load_parameters(dir.file("model.safetensors"), c.list);
  auto sc = opt.make_state(c.list);
  io::load_optimizer_state(path, opt, sc);
  CHECK(sc.step == 4);
  for (; step <= 10; ++step) {
    random_grads(a, grads_a);
    opt.step(sa, a.list, sched(step));
    random_grads(c, grads_b);
    opt.step(sc, c.list, sched(step));
  }
  for (std::size_t i = 0; i < a.storage.size(); ++i) {
    INFO(a.list[i].name);
    CHECK(host(a.storage[i].value) == host(c.storage[i].value));
    for (std::size_t k = 0; k < sa.buffers.size(); ++k)
      if (sa.has_buffer(k)) CHECK(host(sa.buffers[k][i]) == host(sc.buffers[k][i]));
  }
  auto const f = io::SafetensorsFile::open(path);
  CHECK(f.metadata().at("optim/optimizer") == O::name);
  CHECK(f.metadata().at("optim/step") == "4");
  CHECK(f.metadata().at("optim/config") == opt.describe());
  CHECK(f.find(fmt::format("optim/{}/encoder.layers.0.fc1.weight", O::buffer_names[0])) != nullptr);
}

TEST_CASE("loading a state is strict and leaves the state untouched on failure") {
  TempDir dir;
  Rng rng(3);
  Params<Cpu> ps;
  fill_model(ps, rng);
  Adam const adam;
  auto st = adam.make_state(ps.list);
  random_grads(ps, rng);
  adam.step(st, ps.list, 1e-3f);
  std::string const path = dir.file("adam.safetensors");
  io::save_optimizer_state(path, adam, st);

  auto fresh = adam.make_state(ps.list);
  auto expect_untouched = [&] {
    CHECK(fresh.step == 0);
    for (auto const& t : fresh.buffers[0]) {
      auto const h = t.to_host();
      CHECK(std::all_of(h.begin(), h.end(), [](float x) { return x == 0.f; }));
    }
  };

  SUBCASE("another optimizer's state") {
    AdamW const adamw;
    auto sw = adamw.make_state(ps.list);
    CHECK_THROWS_WITH_AS(io::load_optimizer_state(path, adamw, sw),
                         doctest::Contains("holds the state of optimizer 'adam' but it is being loaded into a 'adamw' state"),
                         IoError);
  }
  SUBCASE("a parameter the file does not have") {
    Params<Cpu> more;
    Rng r2(3);
    fill_model(more, r2);
    more.add("decoder.extra.weight", Shape{2, 2}, true);
    auto sm = adam.make_state(more.list);
    CHECK_THROWS_WITH_AS(io::load_optimizer_state(path, adam, sm),
                         doctest::Contains("lacks 2 optimizer tensor(s) of the state: optim/exp_avg/decoder.extra.weight, "
                                           "optim/exp_avg_sq/decoder.extra.weight"),
                         IoError);
    CHECK(sm.step == 0);
  }
  SUBCASE("a parameter the state does not have") {
    ParameterList<Cpu> fewer(ps.list.begin(), ps.list.end() - 1);
    auto sf = adam.make_state(fewer);
    CHECK_THROWS_WITH_AS(io::load_optimizer_state(path, adam, sf),
                         doctest::Contains("holds 2 optimizer tensor(s) the state does not have: "
                                           "optim/exp_avg/encoder.layers.0.attn_res.w"),
                         IoError);
  }
  SUBCASE("a shape that differs") {
    Params<Cpu> other;
    other.add("encoder.layers.0.fc1.weight", Shape{6, 8}, true);
    other.add("encoder.layers.0.fc1.bias", Shape{8}, false);
    other.add("encoder.layers.0.final_layer_norm.weight", Shape{6}, false);
    other.add("encoder.layers.0.attn_res.w", Shape{6}, false);
    auto so = adam.make_state(other.list);
    CHECK_THROWS_WITH_AS(io::load_optimizer_state(path, adam, so),
                         doctest::Contains("optim/exp_avg/encoder.layers.0.fc1.weight is F32 [8, 6] in the file but "
                                           "F32 [6, 8] in the state"),
                         IoError);
    CHECK(so.step == 0);
  }
  SUBCASE("Sgd with and without momentum") {
    Sgd const with{.momentum = 0.9f}, without{};
    auto s1 = with.make_state(ps.list);
    with.step(s1, ps.list, 1e-3f);
    io::save_optimizer_state(dir.file("sgd.safetensors"), with, s1);
    auto s0 = without.make_state(ps.list);
    CHECK_THROWS_WITH_AS(io::load_optimizer_state(dir.file("sgd.safetensors"), without, s0),
                         doctest::Contains("holds 4 optimizer tensor(s) the state does not have: "
                                           "optim/momentum_buffer/"),
                         IoError);
  }
  SUBCASE("a file that is not an optimizer state") {
    io::save_parameters(dir.file("model.safetensors"), ps.list);
    CHECK_THROWS_WITH_AS(io::load_optimizer_state(dir.file("model.safetensors"), adam, fresh),
                         doctest::Contains("is not an optimizer state: its metadata has no 'optim/format'"), IoError);
  }
  SUBCASE("a bad step count") {
    auto tensors = io::optimizer_state_tensors(st);
    auto meta = io::optimizer_state_metadata(adam, st);
    meta["optim/step"] = "12x";
    io::save_safetensors(dir.file("bad.safetensors"), tensors, meta);
    CHECK_THROWS_WITH_AS(io::load_optimizer_state(dir.file("bad.safetensors"), adam, fresh),
                         doctest::Contains("optim/step = '12x' is not a non-negative integer"), IoError);
  }
  expect_untouched();

  SUBCASE("parameters and state in one file: loading ignores tensors outside optim/") {
    std::vector<io::NamedTensor> all = io::optimizer_state_tensors(st);
    for (auto const& p : ps.list) all.emplace_back(p.name, io::SaveView(p.param->value.cview()));
    io::save_safetensors(dir.file("both.safetensors"), all, io::optimizer_state_metadata(adam, st));
    auto s2 = adam.make_state(ps.list);
    io::load_optimizer_state(dir.file("both.safetensors"), adam, s2);
    CHECK(s2.step == 1);
    CHECK(host(s2.buffers[1][0]) == host(st.buffers[1][0]));
  }
}
