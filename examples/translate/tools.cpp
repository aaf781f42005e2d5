// translate score: BLEU and chrF of any hypothesis file against a reference file (sacreBLEU's
// defaults and signatures). translate fold-admin: an AdminLN checkpoint as the plain PostLN model that
// computes the same function (analysis/admin.hpp's fold_admin), with the profiled and trained w printed.
// translate average: one checkpoint whose parameters are the mean of
// several checkpoints' (fairseq's average_checkpoints), loadable by translate and evaluate.

#include "commands.hpp"

#include <lnformer/io/checksum.hpp>
#include <lnformer/io/parameters.hpp>

namespace translate {

namespace {

/// The lines of a UTF-8 text file ("\r\n" or "\n" endings); a missing file, a directory or invalid
/// UTF-8 is an IoError naming the file (and the line).
std::vector<std::string> read_lines(fs::path const& path, std::string_view what) {
  LNF_EXPECTS_AS(IoError, fs::exists(path), "{} '{}' does not exist", what, path.string());
  LNF_EXPECTS_AS(IoError, !fs::is_directory(path), "{} '{}' is a directory, not a file", what, path.string());
  std::ifstream in(path, std::ios::binary);
  LNF_EXPECTS_AS(IoError, in.good(), "cannot open {} '{}'", what, path.string());
  std::vector<std::string> lines;
  for (std::string l; std::getline(in, l);) {
    if (!l.empty() && l.back() == '\r') l.pop_back();
    auto const bad = lnformer::detail::first_invalid_utf8(l);
    LNF_EXPECTS_AS(IoError, bad == std::string_view::npos, "{} '{}' line {}: invalid UTF-8 at byte {}", what,
                   path.string(), lines.size() + 1, bad);
    lines.push_back(std::move(l));
  }
  LNF_EXPECTS_AS(IoError, !in.bad(), "error reading {} '{}'", what, path.string());
  return lines;
}

}  // namespace

int cmd_score(ScoreOptions const& o) {
  auto const hyps = read_lines(o.hyp, "--hyp");
  auto const refs = read_lines(o.ref, "--ref");
  LNF_EXPECTS_AS(ValueError, hyps.size() == refs.size(), "--hyp '{}' has {} lines but --ref '{}' has {}",
                 o.hyp.string(), hyps.size(), o.ref.string(), refs.size());
  LNF_EXPECTS_AS(ValueError, !hyps.empty(), "--hyp '{}' and --ref '{}' are empty", o.hyp.string(), o.ref.string());
  auto const bleu = corpus_bleu(hyps, refs);
  auto const chrf = corpus_chrf(hyps, refs);
  fmt::print("{}\n{}\n", bleu.format(true), chrf.format(true));
  return 0;
}

int cmd_average(AverageOptions const& o) {
  std::vector<fs::path> inputs(o.inputs.begin(), o.inputs.end());
  if (o.last > 0) {
    LNF_EXPECTS_AS(ValueError, inputs.empty(), "give --inputs or --last, not both");
    auto const all = numbered_checkpoints(o.out);
    LNF_EXPECTS_AS(IoError, static_cast<int>(all.size()) >= o.last,
                   "--last {}: '{}' holds {} numbered checkpoint(s){}", o.last, o.out.string(), all.size(),
                   all.empty() ? std::string() : fmt::format(" (steps {}..{})", all.begin()->first, all.rbegin()->first));
    for (auto it = std::prev(all.end(), o.last); it != all.end(); ++it) inputs.push_back(it->second);
  }
  LNF_EXPECTS_AS(ValueError, !inputs.empty(), "nothing to average: give --inputs FILE... or --last N");
  LNF_EXPECTS_AS(ValueError, !o.output.empty(), "give --output FILE");

  // The first checkpoint names the model; every other must be the same model and vocabulary.
  auto const first = io::SafetensorsFile::open(inputs.front().string());
  io::verify_checksum(first, /*required=*/true);
  RunConfig const cfg = config_of(first.metadata(), first.source());
  return dispatch(
      NormPolicies{}, cfg.norm,
      [&](auto tag) {
        using Norm = typename decltype(tag)::type;
        Seq2Seq<Norm, Cpu> model(model_config(cfg), cfg.seed);
        auto const params = model.parameters();
        std::vector<std::vector<double>> sum(params.size());
        std::vector<std::string> steps;
        for (auto const& path : inputs) {
          auto const file = io::SafetensorsFile::open(path.string());
          io::verify_checksum(file, /*required=*/true);
          RunConfig const c = config_of(file.metadata(), file.source());
          LNF_EXPECTS_AS(ValueError, json(c).dump() == json(cfg).dump(),
                         "'{}' was trained with another configuration than '{}' (model, data or vocabulary "
                         "differ): only checkpoints of one run can be averaged",
                         path.string(), inputs.front().string());
          io::load_parameters(file, params, io::LoadOptions{.allow_extra = true});
          for (std::size_t i = 0; i < params.size(); ++i) {
            auto const v = params[i].param->value.to_host();
            sum[i].resize(v.size(), 0.0);
            for (std::size_t k = 0; k < v.size(); ++k) sum[i][k] += v[k];
          }
          steps.push_back(meta_at(file.metadata(), "optim/step", file.source()));
        }
        double const n = static_cast<double>(inputs.size());
        std::vector<Tensor<Cpu>> mean;
        std::vector<io::NamedTensor> named;
        mean.reserve(params.size());
        for (std::size_t i = 0; i < params.size(); ++i) {
          std::vector<float> v(sum[i].size());
          for (std::size_t k = 0; k < v.size(); ++k) v[k] = static_cast<float>(sum[i][k] / n);
          mean.emplace_back(params[i].param->value.shape(), std::span<float const>(v));
          named.emplace_back(params[i].name, io::SaveView(mean.back().cview()));
        }
        std::vector<std::string> names;
        for (auto const& p : inputs) names.push_back(p.filename().string());
        std::map<std::string, std::string> meta{{"translate/format", std::string(kFormat)},
                                                {"translate/config", json(cfg).dump()},
                                                {"translate/averaged_from", json(names).dump()}};
        meta[std::string(io::kChecksumKey)] = io::content_sha256(named, meta);
        io::save_safetensors(o.output.string(), named, meta);
        fmt::print("averaged the parameters of {} checkpoint(s) (steps {}) into {}\n", inputs.size(),
                   fmt::join(steps, ", "), o.output.string());
        return 0;
      },
      "--norm (of the checkpoint)");
}

int cmd_fold_admin(FoldAdminOptions const& o) {
  auto const file = io::SafetensorsFile::open(o.checkpoint.string());
  io::verify_checksum(file, /*required=*/true);
  RunConfig cfg = config_of(file.metadata(), file.source());
  LNF_EXPECTS_AS(ValueError, cfg.norm == "admin", "'{}' is a --norm {} checkpoint; fold-admin folds AdminLN checkpoints",
                 o.checkpoint.string(), cfg.norm);
  // This command is about Admin by nature: it names the policy on purpose.
  Seq2Seq<AdminLN, Cpu> admin(model_config(cfg), cfg.seed);
  io::load_parameters(file, admin.parameters(), io::LoadOptions{.allow_extra = true});
  // w per sublayer: the mean over channels (w is per channel and trained after its profile) and its range.
  admin.for_each_residual([&](auto& res, auto&, StackKind k, int i) {
    auto const w = res.w.value.to_host();
    double sum = 0;
    float lo = w.front(), hi = w.front();
    for (float v : w) sum += v, lo = std::min(lo, v), hi = std::max(hi, v);
    fmt::print("w {} sublayer {:2d}: mean {:.4f}, min {:.4f}, max {:.4f}\n",
               k == StackKind::encoder ? "encoder" : "decoder", i, sum / static_cast<double>(w.size()), lo, hi);
  });
  auto const post = fold_admin(admin, cfg.seed);
  // The evidence that the two compute the same function: logits of both on a fixed batch of 8 random
  // sentences (tokens 4.. of the vocabulary, 5-24 long), in evaluation mode.
  {
    auto const mc = model_config(cfg);
    Rng rng(cfg.seed);
    std::vector<std::vector<std::int32_t>> src(8), tgt(8);
    auto const draw = [&](std::vector<std::int32_t>& s) {
      s.resize(5 + rng.below(20));
      for (auto& t : s) t = 4 + static_cast<std::int32_t>(rng.below(static_cast<std::uint32_t>(mc.vocab - 4)));
    };
    for (std::size_t i = 0; i < src.size(); ++i) draw(src[i]), draw(tgt[i]);
    auto const b = make_batch<Cpu>(src, tgt);
    ForwardContext const eval{.training = false};
    double const la = admin.forward(b, eval).loss, lp = post->forward(b, eval).loss;
    CView<Cpu> const ga = admin.logits(), gp = post->logits();  // host memory, contiguous
    double worst = 0, scale = 0;
    for (std::int64_t i = 0; i < ga.numel(); ++i) {
      worst = std::max(worst, std::abs(static_cast<double>(ga.data()[i]) - gp.data()[i]));
      scale = std::max(scale, std::abs(static_cast<double>(ga.data()[i])));
    }
    fmt::print("check on 8 random sentences: loss AdminLN {:.6f}, folded PostLN {:.6f}; largest logit difference "
               "{:.2e} (largest logit {:.2f})\n", la, lp, worst, scale);
    LNF_EXPECTS_AS(ValueError, worst <= 1e-3 * std::max(1.0, scale),
                   "the folded model's logits differ from the AdminLN model's by {:.2e}: not written", worst);
  }
  cfg.norm = "post";
  std::vector<io::NamedTensor> named;
  for (auto const& p : post->parameters()) named.emplace_back(p.name, io::SaveView(p.param->value.cview()));
  std::map<std::string, std::string> meta{{"translate/format", std::string(kFormat)},
                                          {"translate/config", json(cfg).dump()},
                                          {"translate/folded_from", o.checkpoint.filename().string()}};
  if (file.metadata().contains("optim/step")) meta["optim/step"] = file.metadata().at("optim/step");
  meta[std::string(io::kChecksumKey)] = io::content_sha256(named, meta);
  io::save_safetensors(o.output.string(), named, meta);
  fmt::print("folded the AdminLN model of {} into a PostLN model ({} parameters) in {}\n", o.checkpoint.string(),
             named.size(), o.output.string());
  return 0;
}

}  // namespace translate
