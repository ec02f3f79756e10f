// The demo's evaluation and report: one JSON row per model (accuracy, format, reward, KL to each reference),
// results.json, SVG training curves and report.md with a paragraph on what happened, written from the numbers.
#include <algorithm>
#include <cmath>
#include <filesystem>
#include <iomanip>
#include <iostream>
#include <sstream>

#include "data/gsm8k.h"
#include "data/rewards.h"
#include "demo/demo.h"
#include "demo/demo_exactness.h"
#include "eval/eval_gsm8k.h"
#include "generation/generation.h"
#include "io/hf_model.h"
#include "io/hub.h"
#include "model/batching.h"
#include "objectives/objectives.h"
#include "tokenizer/tokenizer.h"
#include "train/training_log.h"
#include "util/common.h"
#include "util/runtime.h"
#include "util/svg_plot.h"

namespace multiref {

namespace {

// Sum over each completion's tokens of the exact per-token KL(pi || ref_i) over the whole vocabulary, i.e. an
// unbiased estimate of the sequence-level KL(pi || ref_i) when the completions are samples of pi. [K] totals.
std::vector<double> sequence_kl_sums(Transformer& policy, std::vector<LoadedModel>& refs,
                                     const std::vector<std::vector<int64_t>>& prompts,
                                     const std::vector<std::vector<int64_t>>& completions, const torch::Device& dev) {
  torch::NoGradGuard no_grad;
  std::vector<double> total(refs.size(), 0.0);
  const size_t B = 16;
  for (size_t s = 0; s < prompts.size(); s += B) {
    size_t e = std::min(prompts.size(), s + B);
    // Prompts left-padded, completions right-padded: position P-1+t predicts completion token t.
    std::vector<const TokenRow*> ps, cs;
    for (size_t i = s; i < e; ++i) {
      ps.push_back(&prompts[i]);
      cs.push_back(&completions[i]);
    }
    auto batch = pack_aligned(ps, cs, dev);
    int64_t P = batch.prompt_len, C = batch.completion_mask.size(1);
    auto ids = batch.ids, mask = batch.mask, cmask = batch.completion_mask;
    auto logp = [&](Transformer& m) {
      return torch::log_softmax(m->forward(ids, mask).narrow(1, P - 1, C).to(torch::kFloat32), -1);
    };
    std::vector<torch::Tensor> ref_lp;
    for (auto& r : refs) ref_lp.push_back(logp(r.model));
    std::vector<double> w(refs.size(), 1.0 / (double)refs.size());  // the weights do not enter the per-reference KLs
    auto terms = vocab_terms(logp(policy), ref_lp, ids.narrow(1, P, C), w, w);
    auto per_ref = (terms.kl_policy_ref * cmask.unsqueeze(0)).sum({1, 2});  // [K]
    for (size_t k = 0; k < refs.size(); ++k) total[k] += per_ref[(int64_t)k].item<double>();
  }
  return total;
}

std::vector<std::pair<double, double>> metric_curve(const std::string& dir, const std::string& key) {
  std::vector<std::pair<double, double>> out;
  std::string path = join_path(dir, "metrics.jsonl");
  if (!file_exists(path)) return out;
  std::istringstream in(read_file(path));
  for (std::string line; std::getline(in, line);) {
    if (trim(line).empty()) continue;
    auto j = nlohmann::json::parse(line);
    if (j.contains(key) && j[key].is_number()) out.emplace_back(j["step"].get<double>(), j[key].get<double>());
  }
  return out;
}

}  // namespace

std::string demo_eval_file(const std::string& out, const std::string& name) {
  std::string f = name;
  std::replace(f.begin(), f.end(), '/', '_');
  return join_path(join_path(out, "eval"), f + ".json");
}

namespace {

std::string fixed(double v, int digits) {
  if (!std::isfinite(v)) return "n/a";
  std::ostringstream os;
  os << std::fixed << std::setprecision(digits) << v;
  return os.str();
}

double num(const nlohmann::json& row, const std::string& key) {
  return row.contains(key) && row[key].is_number() ? row[key].get<double>() : NAN;
}

const nlohmann::json& row_of(const nlohmann::json& results, const std::string& name) {
  for (auto& r : results["models"])
    if (r["name"] == name) return r;
  fail("results.json has no row '", name, "'");
}

std::string pct(double v) {
  return fixed(100 * v, 1) + "%";
}

// Where `a` stands against `b` on accuracy over the same n questions: a gap within two standard errors is a tie.
int compare_accuracy(const nlohmann::json& a, const nlohmann::json& b, int64_t n) {
  double pa = num(a, "accuracy"), pb = num(b, "accuracy");
  double se = std::sqrt(std::max(pa * (1 - pa) + pb * (1 - pb), 1e-12) / (double)n);
  return std::abs(pa - pb) <= 2 * se ? 0 : pa > pb ? 1 : -1;
}

// "ties grpo/single_ref_format and trails grpo/single_ref_math", or "trails both single-reference runs".
std::string versus(const nlohmann::json& a, const nlohmann::json& b1, const nlohmann::json& b2, int64_t n) {
  auto verb = [](int c) { return std::string(c == 0 ? "ties " : c > 0 ? "beats " : "trails "); };
  int c1 = compare_accuracy(a, b1, n), c2 = compare_accuracy(a, b2, n);
  if (c1 == c2) return verb(c1) + "both single-reference runs";
  return verb(c1) + b1["name"].get<std::string>() + " and " + verb(c2) + b2["name"].get<std::string>();
}

std::string summary(const nlohmann::json& r) {
  return pct(num(r, "accuracy")) + " accuracy (format " + pct(num(r, "format_rate")) + ", reward " +
         fixed(num(r, "reward"), 2) + ")";
}

// The "what happened" paragraphs, derived from the numbers only: every claim below is a comparison the code
// makes, so the text stays true whatever the numbers come out as.
std::string what_happened(const nlohmann::json& results) {
  int64_t n = results["num_test_problems"].get<int64_t>();
  std::ostringstream os;
  const nlohmann::json rf = row_of(results, "ref_format");
  const nlohmann::json rm = row_of(results, "ref_math");
  bool intended = compare_accuracy(rm, rf, n) > 0 && num(rf, "format_rate") > num(rm, "format_rate");
  os << "**The references.** ref_format: " << summary(rf) << "; ref_math: " << summary(rm) << ". "
     << (intended ? "Their strengths differ as intended: ref_format has the format, ref_math the arithmetic."
                  : "Their strengths did NOT come out as intended (ref_math should be the clearly better calculator "
                    "and ref_format the better formatter); read the rest with that in mind.")
     << " (Accuracy and format are greedy; ref_math's samples use the format now and then, which is where its "
     << "reward comes from.)\n\n";
  for (std::string algo : {"grpo", "dpo"}) {
    std::string A = algo == "grpo" ? "GRPO" : "DPO";
    const nlohmann::json sf = row_of(results, algo + "/single_ref_format");
    const nlohmann::json sm = row_of(results, algo + "/single_ref_math");
    const nlohmann::json rkl = row_of(results, algo + "/rkl");
    const nlohmann::json fkl = row_of(results, algo + "/fkl");
    os << "**" << A << ".** From ref_format alone: " << summary(sf) << "; from ref_math alone: " << summary(sm)
       << "; multi-reference RKL: " << summary(rkl) << "; FKL: " << summary(fkl)
       << ". On accuracy (a gap within two standard errors counts as a tie), RKL " << versus(rkl, sf, sm, n) << "; FKL "
       << versus(fkl, sf, sm, n) << ". ";
    bool wins = false;
    for (auto* m : {&rkl, &fkl}) wins = wins || (compare_accuracy(*m, sf, n) > 0 && compare_accuracy(*m, sm, n) > 0);
    os << (wins ? "So here a multi-reference run is ahead of both single-reference runs. "
                : "So here neither multi-reference run is ahead of both single-reference runs. ");
    const nlohmann::json* best = &sf;
    for (auto* m : {&sm, &rkl, &fkl})
      if (num(*m, "reward") > num(*best, "reward")) best = m;
    os << "The highest reward is " << (*best)["name"].get<std::string>() << "'s.";
    if (intended && best == &sm && num(sm, "format_rate") > num(rm, "format_rate") + 0.2)
      os << " It started from the better calculator and learned the format from "
         << (algo == "grpo" ? "the reward" : "the preference pairs") << " (greedy format rate "
         << pct(num(rm, "format_rate")) << " -> " << pct(num(sm, "format_rate"))
         << "), while the multi-reference runs start from ref_format, as the paper's code does (the policy is ref_a)"
         << (compare_accuracy(rkl, rf, n) == 0 && compare_accuracy(fkl, rf, n) == 0
                 ? " and stay at ref_format's accuracy."
                 : ".");
    os << "\n\n";
  }
  const nlohmann::json* best = nullptr;
  for (auto& r : results["models"])
    if (!best || num(r, "accuracy") > num(*best, "accuracy")) best = &r;
  double lo = INFINITY, hi = -INFINITY;  // KL of each trained run to the reference its policy started from
  for (auto& r : results["models"]) {
    if (r["kind"] == "reference") continue;
    bool from_math = r["name"].get<std::string>().find("single_ref_math") != std::string::npos;
    double kl = num(r, from_math ? "kl/ref_math" : "kl/ref_format");
    lo = std::min(lo, kl);
    hi = std::max(hi, kl);
  }
  const nlohmann::json grkl = row_of(results, "grpo/rkl");
  const nlohmann::json gsf = row_of(results, "grpo/single_ref_format");
  os << "**Overall**, the most accurate model is " << (*best)["name"].get<std::string>() << " ("
     << pct(num(*best, "accuracy")) << "). In the KL columns, KL(ref_format || ref_math) is "
     << fixed(num(rf, "kl/ref_math"), 1) << " nats and KL(ref_math || ref_format) "
     << fixed(num(rm, "kl/ref_format"), 1) << " (per answer, on each one's own samples); the trained runs end "
     << fixed(lo, 2) << " to " << fixed(hi, 2)
     << " nats from the reference they started from, and multi-reference RKL GRPO ends "
     << (num(grkl, "kl/ref_math") < num(gsf, "kl/ref_math") ? "closer to" : "no closer to") << " ref_math than "
     << "single-reference GRPO from ref_format (" << fixed(num(grkl, "kl/ref_math"), 2) << " vs "
     << fixed(num(gsf, "kl/ref_math"), 2) << " nats). This is one seed of tiny models trained for minutes, on " << n
     << " test problems (one standard error of an accuracy near 50% is " << pct(std::sqrt(0.25 / (double)n))
     << "): gaps of a few points are noise, and none of it predicts what happens at the paper's scale.\n";
  return os.str();
}

std::string markdown_table(const nlohmann::json& results) {
  std::ostringstream os;
  os << "| model | what it is | accuracy | format rate | reward | KL to ref_format | KL to ref_math |\n"
     << "|---|---|---:|---:|---:|---:|---:|\n";
  for (auto& r : results["models"])
    os << "| " << r["name"].get<std::string>() << " | " << r["label"].get<std::string>() << " | "
       << fixed(num(r, "accuracy"), 3) << " | " << fixed(num(r, "format_rate"), 3) << " | "
       << fixed(num(r, "reward"), 3) << " | " << fixed(num(r, "kl/ref_format"), 2) << " | "
       << fixed(num(r, "kl/ref_math"), 2) << " |\n";
  return os.str();
}

std::string plot(const std::string& out, const std::string& file, const std::string& title, const std::string& y,
                 const std::vector<std::pair<std::string, std::string>>& series, const std::string& key) {
  std::vector<PlotSeries> s;
  for (auto& [name, dir] : series) {
    PlotSeries p;
    p.name = name;
    for (auto& [x, v] : metric_curve(dir, key)) {
      p.x.push_back(x);
      p.y.push_back(v);
    }
    s.push_back(p);
  }
  PlotOptions o;
  o.title = title;
  o.x_label = "step";
  o.y_label = y;
  make_dirs(join_path(out, "plots"));
  write_file_atomic(join_path(join_path(out, "plots"), file), line_chart_svg(s, o));
  return "plots/" + file;
}

}  // namespace

nlohmann::json evaluate_demo_model(const DemoModel& m, const std::string& out, const DemoPlan& plan, uint64_t seed) {
  double t0 = now_seconds();
  auto dev = resolve_device(DeviceChoice::Auto);
  auto policy = load_model(m.dir, torch::kFloat32, dev);
  policy.model->eval();
  std::vector<LoadedModel> refs;
  for (auto name : {"ref_format", "ref_math"}) {
    refs.push_back(load_model(join_path(join_path(out, "models"), name), torch::kFloat32, dev));
    refs.back().model->eval();
  }
  auto tok = Tokenizer::load(resolve_tokenizer_dir(policy.dir));
  auto chat = resolve_chat_format(tok->chat_template, tok->bos_token, "auto", policy.dir);
  auto problems = load_gsm8k("gsm8k", join_path(out, "data"), "test");
  auto eos = generation_eos_ids(policy.dir, policy.config, tok.get());
  Gsm8kEvalConfig ec;
  ec.max_new_tokens = plan.eval_completion_length;
  ec.eos_ids = eos;
  ec.seed = seed;
  auto greedy = evaluate_gsm8k(policy.model, *tok, chat, problems, ec);
  // One sample per question at temperature 1: the policy's own distribution, which the reward expectation and
  // the KL are about (greedy decoding is a different policy).
  std::vector<std::vector<int64_t>> prompts;
  for (auto& p : problems) prompts.push_back(gsm8k_prompt_ids(*tok, chat, p, 512));
  GenerationConfig g;
  g.max_new_tokens = plan.eval_completion_length;
  g.sampling.temperature = 1.0;
  g.eos_ids = eos;
  g.seed = seed + 1;
  auto res = generate(policy.model, prompts, g);
  double reward = 0, correct = 0;
  std::vector<std::vector<int64_t>> comps;
  for (size_t i = 0; i < problems.size(); ++i) {
    comps.push_back(res.sequences[i].ids);
    auto text = tok->decode(comps.back(), /*skip_special_tokens=*/true, std::nullopt, /*unknown_ids_are_errors=*/false);
    reward += score_completion(RewardKind::Gsm8kXml, text, problems[i].gold_raw).total;
    correct += answer_reward(text, problems[i].gold);
  }
  auto kl = sequence_kl_sums(policy.model, refs, prompts, comps, dev);
  double n = (double)problems.size();
  nlohmann::json row = {{"name", m.name},
                        {"kind", m.kind},
                        {"label", m.label},
                        {"accuracy", greedy["accuracy"]},
                        {"format_rate", greedy["format_rate"]},
                        {"mean_completion_length", greedy["mean_completion_length"]},
                        {"reward", reward / n},
                        {"sample_accuracy", correct / n},
                        {"kl/ref_format", kl[0] / n},
                        {"kl/ref_math", kl[1] / n},
                        {"num_questions", problems.size()}};
  // A sample answer, for the report.
  row["example"] = {{"question", problems[0].question},
                    {"completion", tok->decode(comps[0], true, std::nullopt, false)}};
  row["seconds"] = now_seconds() - t0;
  return row;
}

std::string demo_results_table(const nlohmann::json& results) {
  std::vector<std::vector<std::string>> rows = {
      {"model", "accuracy", "format", "reward", "KL(ref_format)", "KL(ref_math)"}};
  for (auto& r : results["models"])
    rows.push_back({r["name"].get<std::string>(), fixed(num(r, "accuracy"), 3), fixed(num(r, "format_rate"), 3),
                    fixed(num(r, "reward"), 3), fixed(num(r, "kl/ref_format"), 2), fixed(num(r, "kl/ref_math"), 2)});
  std::vector<size_t> width(rows[0].size(), 0);
  for (auto& r : rows)
    for (size_t c = 0; c < r.size(); ++c) width[c] = std::max(width[c], r[c].size());
  std::ostringstream os;
  for (size_t i = 0; i < rows.size(); ++i) {
    for (size_t c = 0; c < rows[i].size(); ++c) {
      // The name column is left-aligned, the numbers right-aligned.
      std::string pad(width[c] - rows[i][c].size(), ' ');
      os << (c == 0 ? rows[i][c] + pad : "  " + pad + rows[i][c]);
    }
    os << "\n";
    if (i == 0) {
      size_t total = 0;
      for (size_t c = 0; c < width.size(); ++c) total += width[c] + (c ? 2 : 0);
      os << std::string(total, '-') << "\n";
    }
  }
  return os.str();
}

void write_demo_report(const std::string& out, const DemoConfig& cfg, const DemoPlan& plan) {
  nlohmann::json results;
  results["settings"] = {{"quick", cfg.quick}, {"seed", cfg.seed}};
  results["models"] = nlohmann::json::array();
  int64_t n = 0;
  for (auto& m : demo_models(out)) {
    auto path = demo_eval_file(out, m.name);
    if (!file_exists(path)) fail(path, " is missing: the evaluate stage did not finish; rerun `multiref demo`");
    auto row = nlohmann::json::parse(read_file(path));
    n = row["num_questions"].get<int64_t>();
    results["models"].push_back(row);
  }
  results["num_test_problems"] = n;
  results["what_happened"] = what_happened(results);

  std::vector<std::pair<std::string, std::string>> grpo, dpo, sft;
  for (std::string r : {"single_ref_format", "single_ref_math", "rkl", "fkl"}) {
    grpo.emplace_back(r, join_path(join_path(out, "grpo"), r));
    dpo.emplace_back(r, join_path(join_path(out, "dpo"), r));
  }
  for (std::string r : {"ref_format", "ref_math"}) sft.emplace_back(r, join_path(join_path(out, "sft"), r));
  auto sft_svg = plot(out, "sft_loss.svg", "Reference pretraining (SFT)", "loss per completion token", sft, "loss");
  auto grpo_svg = plot(out, "grpo_reward.svg", "GRPO: mean reward of the rollouts", "gsm8k_xml reward", grpo, "reward");
  auto grpo_kl_svg = plot(out, "grpo_kl.svg", "GRPO: KL penalty (weighted, per token)", "KL", grpo, "kl");
  auto dpo_svg = plot(out, "dpo_loss.svg", "DPO: training loss", "loss", dpo, "loss");
  results["plots"] = {sft_svg, grpo_svg, grpo_kl_svg, dpo_svg};
  std::string exactness_md = exactness_report(out, results);
  write_file_atomic(join_path(out, "results.json"), results.dump(2) + "\n");

  double seconds = 0;
  for (auto& e : std::filesystem::directory_iterator(join_path(out, "stages")))
    if (e.path().extension() == ".done")
      seconds += nlohmann::json::parse(read_file(e.path().string()))["seconds"].get<double>();
  std::ostringstream md;
  md << "# multiref demo report\n\n"
     << "Made by `multiref demo" << (cfg.quick ? " --quick" : "") << " --seed " << cfg.seed << "` in "
     << format_duration(seconds) << ". Everything here was generated on this machine: " << plan.train_problems
     << " training and " << n << " test word problems in GSM8K's format (operands up to " << plan.max_operand << "), a "
     << Tokenizer::load(join_path(out, "tokenizer"))->vocab_size()
     << "-token byte-level BPE tokenizer, and two tiny Qwen2 references (hidden " << plan.hidden << ", " << plan.layers
     << " layers) pretrained from scratch for " << plan.sft_steps << " steps each:\n\n"
     << "- **ref_format** on answers in the paper's `<reasoning>`/`<answer>` format whose arithmetic slips on "
     << fixed(100 * plan.format_error_rate, 0) << "% of the steps;\n"
     << "- **ref_math** on correct answers, " << fixed(100 * (1 - plan.math_format_share), 0)
     << "% of them written without the format (\"7 + 5 = 12. The answer is 12.\").\n\n"
     << "GRPO (" << plan.grpo_steps << " steps of " << plan.grpo_prompts_per_step << " prompts x "
     << plan.grpo_generations << " completions, gsm8k_xml reward, gamma " << plan.grpo_gamma << ") and DPO ("
     << plan.dpo_steps << " steps of " << plan.dpo_batch << " pairs; chosen: formatted and right, rejected: wrong "
     << "and/or unformatted; gamma " << plan.dpo_gamma << ") each ran four times: from ref_format with KL to it "
     << "alone, from ref_math with KL to it alone, and from ref_format with multi-reference RKL and FKL to both "
     << "(weights 0.5).\n\n"
     << "## Results\n\n"
     << "Accuracy and format rate: greedy answers to the " << n << " test problems (accuracy: the final number "
     << "matches, in any format; format: the strict `<reasoning>`/`<answer>` layout). Reward: the paper's gsm8k_xml "
     << "reward (at most 4) of one sample per problem at temperature 1. KL: the exact KL(policy || reference) of "
     << "those samples, summed over each completion's tokens (full vocabulary at every position), averaged over "
     << "problems. The same numbers are in `results.json`.\n\n"
     << markdown_table(results) << "\n"
     << "## What happened\n\n"
     << results["what_happened"].get<std::string>() << "\n"
     << "## Training curves\n\n"
     << "![SFT loss](" << sft_svg << ")\n\n![GRPO reward](" << grpo_svg << ")\n\n![GRPO KL](" << grpo_kl_svg
     << ")\n\n![DPO loss](" << dpo_svg << ")\n\n"
     << exactness_md << "## Sample answers (temperature 1)\n\n";
  for (auto& r : results["models"])
    md << "- **" << r["name"].get<std::string>() << "**: `"
       << nlohmann::json(r["example"]["completion"].get<std::string>()).dump() << "`\n";
  md << "\n(the question: \"" << results["models"][0]["example"]["question"].get<std::string>() << "\")\n\n"
     << "## Files\n\n"
     << "- `data/`: the problems (`gsm8k/train.jsonl`, `gsm8k/test.jsonl`) and `dpo_pairs.jsonl`\n"
     << "- `tokenizer/`, `models/ref_format/`, `models/ref_math/`: Hugging Face directories "
     << "(`AutoModelForCausalLM.from_pretrained` loads them)\n"
     << "- `grpo/<run>/`, `dpo/<run>/`: each run's final model, `metrics.jsonl`, TensorBoard events (`runs/`), last "
     << "checkpoint and `run_config.json` (every flag: `multiref grpo` / `multiref dpo` with them reruns it)\n"
     << "- `eval/`: one JSON per model; `plots/`: the SVG curves; `stages/`: the markers that let a rerun skip\n";
  write_file_atomic(join_path(out, "report.md"), md.str());
}

}  // namespace multiref
