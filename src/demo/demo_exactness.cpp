#include "demo/demo_exactness.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <iostream>

#include "io/hf_model.h"
#include "model/batching.h"
#include "model/logprobs.h"
#include "objectives/closed_form.h"
#include "rl/grpo_trainer.h"
#include "util/common.h"
#include "util/svg_plot.h"

namespace multiref {

namespace {

const std::vector<int64_t> kPrompt = {1, 0};
const int64_t kMaxLen = 2;
const double kGamma = 0.5;

// reward = ((sum_i (t_i + 1) 5^i) mod 7) / 10 of the completion's ids: fixed, arbitrary, known to the sh program.
const char* kRewardProgram =
    "while read -r l; do l=${l#*\\\"completion_ids\\\":\\[}; l=${l%%]*}; h=0; p=1; IFS=,; for t in $l; do "
    "h=$((h + (t + 1) * p)); p=$((p * 5)); done; printf '{\"reward\": 0.%d}\\n' $((h % 7)); done";

std::string fixed_tv(const nlohmann::json& v) {
  char b[32];
  std::snprintf(b, sizeof b, "%.3f", v.get<double>());
  return b;
}

std::string dir_of(const std::string& out) {
  return join_path(out, "exactness");
}

// Every completion: EOS-terminated ones of 1..kMaxLen tokens, and kMaxLen tokens without EOS.
std::vector<std::vector<int64_t>> all_completions(int64_t eos) {
  std::vector<std::vector<int64_t>> out, open = {{}};
  for (int64_t len = 1; len <= kMaxLen; ++len) {
    std::vector<std::vector<int64_t>> next;
    for (auto& p : open) {
      auto done = p;
      done.push_back(eos);
      out.push_back(done);
      for (int64_t v = 0; v < 4; ++v)
        if (v != eos) {
          auto q = p;
          q.push_back(v);
          next.push_back(q);
        }
    }
    open = next;
  }
  out.insert(out.end(), open.begin(), open.end());
  return out;
}

// pi(y | prompt) of every completion, in float64.
std::vector<double> distribution(const std::string& model, const std::vector<std::vector<int64_t>>& ys) {
  auto lm = load_model(model, torch::kFloat64, torch::kCPU);
  torch::NoGradGuard ng;
  std::vector<const TokenRow*> pp, cc;
  for (auto& y : ys) {
    pp.push_back(&kPrompt);
    cc.push_back(&y);
  }
  auto b = pack_aligned(pp, cc, torch::kCPU);
  auto lp = token_logprobs(lm.model, b.ids, b.mask);
  auto P = b.prompt_len;
  auto seq = (lp.narrow(1, P - 1, lp.size(1) - P + 1) * b.completion_mask.to(lp.scalar_type())).sum(1).exp();
  return std::vector<double>(seq.data_ptr<double>(), seq.data_ptr<double>() + seq.numel());
}

double tv(const std::vector<double>& a, const std::vector<double>& b) {
  double s = 0;
  for (size_t i = 0; i < a.size(); ++i) s += std::abs(a[i] - b[i]);
  return s / 2;
}

double reward_of(const std::vector<int64_t>& ids) {
  int64_t h = 0, p = 1;
  for (int64_t t : ids) h += (t + 1) * p, p *= 5;
  return (double)(h % 7) / 10.0;
}

}  // namespace

void run_exactness_stage(const std::string& out, bool quick, uint64_t seed) {
  std::string dir = dir_of(out);
  make_dirs(dir);
  // The references: near-uniform would make every method agree; these are peaked and disagree.
  for (auto [name, s] : {std::pair<const char*, uint64_t>{"ra", 21}, {"rb", 22}}) {
    ModelConfig c = preset_config("qwen2", "tiny");
    c.vocab_size = 4;
    Transformer m(c, torch::TensorOptions().dtype(torch::kFloat32));
    init_weights(m, s, 0.1);
    save_model(m, join_path(dir, name), "");
  }
  int64_t eos = load_model(join_path(dir, "ra"), torch::kFloat32, torch::kCPU).config.eos_token_ids.at(0);
  write_file_atomic(join_path(dir, "prompt.jsonl"), "{\"prompt_ids\": [1, 0]}\n");
  auto ys = all_completions(eos);
  std::vector<double> rewards;
  for (auto& y : ys) rewards.push_back(reward_of(y));
  auto pa = distribution(join_path(dir, "ra"), ys), pb = distribution(join_path(dir, "rb"), ys);
  nlohmann::json res;
  for (std::string kl : {"rkl", "fkl"}) {
    auto opt = kl == "rkl" ? rkl_optimum({pa, pb}, {0.5, 0.5}, rewards, kGamma)
                           : fkl_optimum({pa, pb}, {0.5, 0.5}, rewards, kGamma);
    nlohmann::json row = {{"optimum", opt.policy}, {"reference", pa}, {"tv_reference", tv(pa, opt.policy)}};
    for (std::string how : {"exact", "paper_code"}) {
      GrpoConfig g;
      FlagTable t("multiref grpo", "");
      g.register_flags(t);
      std::string est = how == "exact" ? "exact" : kl == "rkl" ? "mixture_k3" : "fkl_mixture_k3";
      t.parse({"--dataset",
               join_path(dir, "prompt.jsonl"),
               "--ref_a",
               join_path(dir, "ra"),
               "--ref_b",
               join_path(dir, "rb"),
               "--kl_type",
               kl,
               "--alpha",
               "0.5",
               "--beta",
               "0.5",
               "--gamma",
               cat(kGamma),
               "--kl_estimator",
               est,
               "--loss_type",
               "dr_grpo",
               "--scale_rewards",
               "false",
               "--num_generations",
               "64",
               "--per_device_train_batch_size",
               "64",
               "--gradient_accumulation_steps",
               "1",
               "--max_completion_length",
               cat(kMaxLen),
               "--fkl_samples",
               "64",
               "--learning_rate",
               "0.005",
               "--max_steps",
               quick ? "40" : "800",
               "--save_steps",
               "0",
               "--logging_steps",
               "100",
               "--seed",
               cat(seed),
               "--threads",
               "1",
               "--reward_program",
               kRewardProgram,
               "--model_out",
               join_path(dir, kl + "_" + how)});
      g.validate();
      run_grpo(g, t.to_json());
      auto p = distribution(join_path(dir, kl + "_" + how), ys);
      row[how] = p;
      row["tv_" + how] = tv(p, opt.policy);
    }
    std::cerr << "  " << kl << ": total variation to the closed-form optimum: exact " << fixed_tv(row["tv_exact"])
              << ", paper code " << fixed_tv(row["tv_paper_code"])
              << " (the starting policy ref_a: " << fixed_tv(row["tv_reference"]) << ")\n";
    res[kl] = row;
  }
  write_file_atomic(join_path(dir, "exactness.json"), res.dump(2) + "\n");
}

std::string exactness_report(const std::string& out, nlohmann::json& results) {
  std::string path = join_path(dir_of(out), "exactness.json");
  if (!file_exists(path)) return "";
  auto res = nlohmann::json::parse(read_file(path));
  results["exactness"] = {
      {"rkl", {{"tv_exact", res["rkl"]["tv_exact"]}, {"tv_paper_code", res["rkl"]["tv_paper_code"]}}},
      {"fkl", {{"tv_exact", res["fkl"]["tv_exact"]}, {"tv_paper_code", res["fkl"]["tv_paper_code"]}}}};
  std::ostringstream md;
  md << "## Exactness\n\n"
     << "A problem small enough to know the answer: one prompt, the 13 completions of at most 2 tokens of two tiny "
     << "references (4 token ids) that disagree, a fixed reward per completion from a reward program written in sh, "
     << "gamma " << kGamma << ", weights 0.5. `multiref grpo` trained a policy (from ref_a) with the exact estimator "
     << "(`--kl_estimator exact --loss_type dr_grpo --scale_rewards false`) and with the paper code's token-level "
     << "one; each trained policy's distribution over all 13 completions is compared with the closed-form optimum "
     << "(RKL: pi* ∝ prod_i pi_i^alpha_i e^{r/gamma}; FKL: pi* = gamma pibar / (lambda - r)).\n\n"
     << "| objective | total variation to the optimum: exact | paper code | ref_a (the start) |\n|---|---|---|---|\n";
  for (std::string kl : {"rkl", "fkl"})
    md << "| " << kl << " | " << fixed_tv(res[kl]["tv_exact"]) << " | " << fixed_tv(res[kl]["tv_paper_code"]) << " | "
       << fixed_tv(res[kl]["tv_reference"]) << " |\n";
  md << "\n";
  for (std::string kl : {"rkl", "fkl"}) {
    // Completions ordered by their optimal probability, so the curves read as distributions.
    auto opt = res[kl]["optimum"].get<std::vector<double>>();
    std::vector<size_t> order(opt.size());
    for (size_t i = 0; i < order.size(); ++i) order[i] = i;
    std::sort(order.begin(), order.end(), [&](size_t a, size_t b) { return opt[a] > opt[b]; });
    std::vector<PlotSeries> s;
    for (auto [key, name] : std::vector<std::pair<std::string, std::string>>{{"optimum", "closed-form optimum"},
                                                                             {"exact", "exact"},
                                                                             {"paper_code", "paper code"},
                                                                             {"reference", "ref_a"}}) {
      PlotSeries ps;
      ps.name = name;
      auto p = res[kl][key].get<std::vector<double>>();
      for (size_t i = 0; i < order.size(); ++i) {
        ps.x.push_back((double)i + 1);
        ps.y.push_back(p[order[i]]);
      }
      s.push_back(ps);
    }
    PlotOptions o;
    o.title = "Exactness (" + kl + "): pi(y) over all 13 completions";
    o.x_label = "completion (by optimal probability)";
    o.y_label = "probability";
    std::string file = "exactness_" + kl + ".svg";
    make_dirs(join_path(out, "plots"));
    write_file_atomic(join_path(join_path(out, "plots"), file), line_chart_svg(s, o));
    md << "![exactness " << kl << "](plots/" << file << ")\n\n";
  }
  return md.str();
}

}  // namespace multiref
