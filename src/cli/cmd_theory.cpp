// `multiref theory`: closed-form optima of the multi-reference objectives on a finite response set, and
// (--verify) a check that the project's own loss functions, trained on a tabular policy, reach them.
#include <iostream>

#include "cli/commands.h"
#include "objectives/bounds.h"
#include "objectives/closed_form.h"
#include "objectives/losses.h"
#include "objectives/objectives.h"
#include "util/common.h"
#include "util/flags.h"
#include "util/json_text.h"

namespace multiref {

namespace {

struct TheoryConfig {
  std::string input, output;
  bool verify = false;
  int64_t verify_steps = 3000;
  double verify_lr = 0.05;
  bool bounds = false;
  int64_t n = 1000;
  double delta = 0.05, log_cardinality = 10.0, coverage = 1.0, epsilon = 0.0, r_max = 0.0;

  void register_flags(FlagTable& t) {
    t.add("input", &input,
          "problem JSON: {\"kl_type\":\"rkl\"|\"fkl\", \"gamma\":g, \"weights\":[...], \"refs\":[[p(y)...],...], "
          "\"rewards\":[...]}");
    t.add("output", &output, "also write the result JSON here (default: stdout only)");
    t.add("verify", &verify, "train a tabular softmax policy with the project's losses and report its distance");
    t.add("verify_steps", &verify_steps, "Adam steps of --verify");
    t.add("verify_lr", &verify_lr, "Adam learning rate of --verify");
    t.add("bounds", &bounds,
          "also report the paper's sample-complexity bounds (transcribed; see src/objectives/bounds.cpp)");
    t.add("n", &n, "--bounds: number of preference samples");
    t.add("delta", &delta, "--bounds: failure probability");
    t.add("log_cardinality", &log_cardinality, "--bounds: log |R| of the finite reward class");
    t.add("coverage", &coverage, "--bounds: the coverage coefficient C");
    t.add("r_max", &r_max, "--bounds: reward bound R_max (0 = max |reward| of the problem)");
    t.add("epsilon", &epsilon, "--bounds: also report the samples needed for this gap (0 = skip)");
  }
};

struct Problem {
  std::string kl_type;
  double gamma = 0;
  std::vector<double> weights, rewards;
  std::vector<std::vector<double>> refs;
};

Problem read_problem(const std::string& path) {
  nlohmann::json j = parse_json(read_file(path), path);
  Problem p;
  try {
    if (!j.is_object()) fail("the problem must be a JSON object");
    for (auto k : {"kl_type", "gamma", "weights", "refs", "rewards"})
      if (!j.contains(k)) fail("missing \"", k, "\"");
    p.kl_type = j["kl_type"].get<std::string>();
    if (p.kl_type != "rkl" && p.kl_type != "fkl") fail("kl_type must be \"rkl\" or \"fkl\", got \"", p.kl_type, "\"");
    p.gamma = j["gamma"].get<double>();
    p.weights = j["weights"].get<std::vector<double>>();
    p.refs = j["refs"].get<std::vector<std::vector<double>>>();
    p.rewards = j["rewards"].get<std::vector<double>>();
    validate_problem(p.refs, p.weights, p.rewards, p.gamma);
  } catch (const nlohmann::json::exception& e) {
    fail(path, ": a field has the wrong type (", e.what(), ")");
  } catch (const Error& e) {
    fail(path, ": ", e.what());
  }
  return p;
}

// Tabular policy pi = softmax(theta) over the N responses, loss = -E_pi[r] + gamma * penalty, with the exact
// expectation and the full-"vocabulary" penalty of losses.h (a response set is a one-token vocabulary).
nlohmann::json verify(const Problem& p, const Optimum& opt, int64_t steps, double lr) {
  int64_t N = (int64_t)p.rewards.size();
  auto theta = torch::zeros({1, 1, N}, torch::TensorOptions().dtype(torch::kFloat64).requires_grad(true));
  // RKL: a policy with mass where a weighted reference has none has objective -inf, so the tabular policy lives
  // on the optimum's support (zero-probability responses are masked out of the softmax).
  auto support = torch::zeros({1, 1, N}, torch::kFloat64);
  if (p.kl_type == "rkl")
    for (int64_t y = 0; y < N; ++y)
      for (size_t i = 0; i < p.refs.size(); ++i)
        if (p.weights[i] > 0 && p.refs[i][(size_t)y] == 0) support[0][0][y] = -INFINITY;
  auto r = torch::tensor(p.rewards, torch::kFloat64).view({1, 1, N});
  std::vector<torch::Tensor> ref_logp;
  for (auto& ref : p.refs) ref_logp.push_back(torch::tensor(ref, torch::kFloat64).log().view({1, 1, N}));
  torch::optim::Adam opt_(std::vector<torch::Tensor>{theta}, torch::optim::AdamOptions(lr));
  KLPenalty pen = p.kl_type == "rkl" ? KLPenalty::RklFull : KLPenalty::FklFull;
  auto targets = torch::zeros({1, 1}, torch::kLong);
  auto mask = torch::ones({1, 1});
  for (int64_t s = 0; s < steps; ++s) {
    auto lp = torch::log_softmax(theta + support, -1);
    auto terms = vocab_terms(lp, ref_logp, targets, p.weights, p.weights);
    auto ref_lp = torch::stack(ref_logp, 0).select(-1, 0);  // sampled-token log-probs (unused by full penalties)
    auto penalty = token_penalty(pen, lp.select(-1, 0), ref_lp, mask, p.weights, &terms);
    auto loss = -(lp.exp() * r).sum() + p.gamma * penalty.per_token.sum();
    opt_.zero_grad();
    loss.backward();
    opt_.step();
  }
  auto pi = torch::softmax(theta.detach() + support, -1).view({N});
  std::vector<double> trained(pi.data_ptr<double>(), pi.data_ptr<double>() + N);
  double tv = 0, max_abs = 0;
  for (int64_t y = 0; y < N; ++y) {
    double d = std::fabs(trained[(size_t)y] - opt.policy[(size_t)y]);
    tv += 0.5 * d;
    max_abs = std::max(max_abs, d);
  }
  return {
      {"policy", trained},     {"value", objective_value(p.kl_type, trained, p.refs, p.weights, p.rewards, p.gamma)},
      {"total_variation", tv}, {"max_abs_diff", max_abs},
      {"steps", steps},        {"penalty", kl_penalty_name(pen)}};
}

}  // namespace

int cmd_theory(int argc, char** argv) {
  TheoryConfig cfg;
  FlagTable flags("multiref theory",
                  "Closed-form optimum of multi-reference RKL / FKL regularized reward maximization.");
  cfg.register_flags(flags);
  flags.parse(argc, argv, 2);
  if (flags.help_requested()) {
    std::cout << flags.help();
    return 0;
  }
  if (cfg.input.empty()) fail("--input is required (a problem JSON file)");
  if (cfg.verify_steps < 1 || !(cfg.verify_lr > 0)) fail("--verify_steps must be >= 1 and --verify_lr > 0");
  Problem p = read_problem(cfg.input);
  Optimum o = p.kl_type == "rkl" ? rkl_optimum(p.refs, p.weights, p.rewards, p.gamma)
                                 : fkl_optimum(p.refs, p.weights, p.rewards, p.gamma);
  nlohmann::json out = {{"policy", o.policy}, {"value", o.value}, {"kl", o.kl}};
  if (p.kl_type == "fkl") out["lambda"] = o.lambda;
  if (p.kl_type == "rkl") out["log_F"] = o.log_F;
  if (cfg.verify) out["verify"] = verify(p, o, cfg.verify_steps, cfg.verify_lr);
  if (cfg.bounds) {
    BoundInputs in;
    in.kl_type = p.kl_type;
    in.gamma = p.gamma;
    in.weights = p.weights;
    in.n = cfg.n;
    in.delta = cfg.delta;
    in.log_cardinality = cfg.log_cardinality;
    in.coverage = cfg.coverage;
    in.r_max = cfg.r_max;
    if (in.r_max <= 0)
      for (double r : p.rewards) in.r_max = std::max(in.r_max, std::fabs(r));
    out["bounds"] = sample_complexity_bounds(in);
    if (cfg.epsilon > 0)
      for (auto& b : out["bounds"]["bounds"])
        b["samples_needed"] = samples_needed(in, cfg.epsilon, b["name"].get<std::string>());
  }
  std::string text = out.dump(2) + "\n";
  if (!cfg.output.empty()) write_file_atomic(cfg.output, text);
  std::cout << text;
  return 0;
}

}  // namespace multiref
