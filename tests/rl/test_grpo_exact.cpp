// Exact means exact, in value and gradient: the enumeration oracle. A tiny autoregressive policy (the real
// Transformer, 4 ids with EOS = 3, at most 3 completion tokens: 40 complete completions), two tiny references that
// disagree, a reward per completion. J(theta) = E_{y~pi}[r] - gamma D(pi) is computed exactly by enumerating every
// completion, and its gradient by autograd. Each configuration's *expected* step gradient is computed exactly too,
// through the trainer's own code (GrpoTrainer::score_rollout + micro_step): the sum over all ordered groups of
// G = 2 weighted by pi(y_a) pi(y_b), plus, for FKL, the reference-sample term over every completion weighted by
// beta_i pi_i(y). Exact configurations must match -grad J / L (dr_grpo's constant normalizer) to 1e-6 (relative);
// the approximate ones must not, and their gaps are printed (the README's exactness table quotes them).
#include <iomanip>

#include "io/hf_model.h"
#include "model/batching.h"
#include "model/logprobs.h"
#include "rl/grpo_trainer.h"
#include "test_util.h"

using namespace multiref;
using namespace multiref::testing;

namespace {

const int64_t kEos = 3, kMaxLen = 3;
const std::vector<int64_t> kPrompt = {1, 2};

// Every completion the sampler can produce: EOS-terminated ones of 1..3 tokens, and 3 tokens without EOS.
std::vector<std::vector<int64_t>> all_completions() {
  std::vector<std::vector<int64_t>> out = {{kEos}};
  std::vector<std::vector<int64_t>> open = {{}};
  for (int64_t len = 1; len <= kMaxLen; ++len) {
    std::vector<std::vector<int64_t>> next;
    for (auto& p : open)
      for (int64_t v = 0; v < 3; ++v) {
        auto q = p;
        q.push_back(v);
        next.push_back(q);
      }
    for (auto& q : next) {
      if (len < kMaxLen) {
        auto done = q;
        done.push_back(kEos);
        out.push_back(done);
      } else {
        out.push_back(q);
      }
    }
    open = next;
  }
  return out;
}

void write_model(const std::string& dir, uint64_t seed, double scale) {
  ModelConfig c = preset_config("qwen2", "tiny");
  c.vocab_size = 4;
  c.eos_token_ids = {kEos};
  c.bos_token_id.reset();
  c.pad_token_id.reset();
  Transformer m(c, torch::TensorOptions().dtype(torch::kFloat32));
  init_weights(m, seed, scale);  // large weights: distributions far from uniform, references that disagree
  save_model(m, dir, "");
}

// log pi(y | prompt) of every completion [40], differentiable in the model's parameters.
torch::Tensor sequence_logps(Transformer& model, const std::vector<std::vector<int64_t>>& ys) {
  std::vector<const TokenRow*> pp, cc;
  for (auto& y : ys) {
    pp.push_back(&kPrompt);
    cc.push_back(&y);
  }
  auto b = pack_aligned(pp, cc, torch::kCPU);
  auto lp = token_logprobs(model, b.ids, b.mask);  // [40, T-1]
  auto P = b.prompt_len;
  return (lp.narrow(1, P - 1, lp.size(1) - P + 1) * b.completion_mask.to(lp.scalar_type())).sum(1);
}

torch::Tensor flat_grad(Transformer& model) {
  std::vector<torch::Tensor> g;
  for (auto& p : model->parameters())
    g.push_back(p.grad().defined() ? p.grad().reshape(-1).clone() : torch::zeros({p.numel()}, p.options()));
  return torch::cat(g);
}

void zero_grad(Transformer& model) {
  for (auto& p : model->parameters())
    if (p.grad().defined()) p.mutable_grad().zero_();
}

struct World {
  TempDir tmp;
  std::vector<std::vector<int64_t>> ys = all_completions();
  std::vector<double> rewards;
  World() {
    write_model(tmp / "policy", 11, 0.6);
    write_model(tmp / "ra", 12, 0.6);
    write_model(tmp / "rb", 13, 0.6);
    tmp.write("p.jsonl", "{\"prompt_ids\": [1, 2]}\n");
    for (size_t i = 0; i < ys.size(); ++i) rewards.push_back(std::fmod(0.37 * (double)(i * i + 3 * i), 1.0));
  }
  GrpoConfig config(const std::string& kl_type, const std::string& estimator, const std::string& kl_in,
                    const std::string& baseline) const {
    GrpoConfig c;
    FlagTable t("test", "");
    c.register_flags(t);
    t.parse({"--dataset",
             tmp / "p.jsonl",
             "--policy",
             tmp / "policy",
             "--ref_a",
             tmp / "ra",
             "--ref_b",
             tmp / "rb",
             "--alpha",
             "0.3",
             "--beta",
             "0.6",
             "--kl_type",
             kl_type,
             "--gamma",
             "0.5",
             "--kl_estimator",
             estimator,
             "--kl_in",
             kl_in,
             "--advantage_baseline",
             baseline,
             "--loss_type",
             "dr_grpo",
             "--scale_rewards",
             "false",
             "--num_generations",
             "2",
             "--per_device_train_batch_size",
             "2",
             "--gradient_accumulation_steps",
             "1",
             "--max_completion_length",
             "3",
             "--dtype",
             "float64",
             "--reward",
             "length_penalty",
             "--threads",
             "1",
             "--model_out",
             tmp / "out"});
    c.validate();
    return c;
  }
};

// grad J(theta) by enumeration and autograd, and the expected step gradient of a configuration through the trainer.
struct Result {
  double gap;  // |-L E[grad loss] - grad J| / |grad J|
  double norm;
};

Result measure(World& w, const GrpoConfig& cfg) {
  GrpoTrainer trainer(cfg);
  auto& pol = trainer.policy();
  std::vector<double> weights = {cfg.kl_type == KLType::Rkl ? cfg.alpha : cfg.beta,
                                 1 - (cfg.kl_type == KLType::Rkl ? cfg.alpha : cfg.beta)};
  // The references' log-probs (constants) and the exact objective.
  std::vector<torch::Tensor> ref_lp;
  for (auto id : {cfg.ref_a, cfg.ref_b}) {
    auto lm = load_model(id, torch::kFloat64, torch::kCPU);
    torch::NoGradGuard ng;
    ref_lp.push_back(sequence_logps(lm.model, w.ys));
  }
  zero_grad(pol);
  auto lp = sequence_logps(pol, w.ys);
  auto p = lp.exp();
  auto r = torch::tensor(w.rewards, torch::kFloat64);
  torch::Tensor D = torch::zeros({}, torch::kFloat64);
  for (size_t i = 0; i < 2; ++i) {
    if (cfg.kl_type == KLType::Rkl)
      D = D + weights[i] * (p * (lp - ref_lp[i])).sum();
    else
      D = D + weights[i] * (ref_lp[i].exp() * (ref_lp[i] - lp)).sum();
  }
  EXPECT_NEAR(p.sum().item<double>(), 1.0, 1e-12) << "the 40 completions are all there is";
  auto J = (p * r).sum() - cfg.gamma * D;
  J.backward();
  auto grad_J = flat_grad(pol);
  zero_grad(pol);
  auto pd = p.detach();
  // All ordered pairs as one rollout (one reference pass); each pair its own micro-step.
  std::vector<std::vector<int64_t>> prompts, comps;
  std::vector<double> rw;
  size_t Y = w.ys.size();
  for (size_t a = 0; a < Y; ++a)
    for (size_t b = 0; b < Y; ++b) {
      prompts.push_back(kPrompt);
      comps.push_back(w.ys[a]);
      comps.push_back(w.ys[b]);
      rw.push_back(w.rewards[a]);
      rw.push_back(w.rewards[b]);
    }
  auto roll = trainer.score_rollout(prompts, comps, rw, {});
  torch::Tensor expected = torch::zeros_like(grad_J);
  for (size_t a = 0; a < Y; ++a)
    for (size_t b = 0; b < Y; ++b) {
      StepStats stats;
      trainer.micro_step(roll, (int64_t)(2 * (a * Y + b)), 2, 0, stats);
      expected += pd[(int64_t)a].item<double>() * pd[(int64_t)b].item<double>() * flat_grad(pol);
      zero_grad(pol);
    }
  if (cfg.penalty == KLPenalty::FklRefSamples) {
    // The reference-sample term in expectation: every completion from every reference, weighted beta_i pi_i(y),
    // beside a group whose advantages are 0 (one completion twice, one reward).
    std::vector<RefSample> samples;
    for (size_t i = 0; i < 2; ++i)
      for (size_t y = 0; y < Y; ++y)
        samples.push_back({kPrompt, w.ys[y], {}, (int64_t)i, weights[i] * ref_lp[i][(int64_t)y].exp().item<double>()});
    auto fk = trainer.score_rollout({kPrompt}, {w.ys[0], w.ys[0]}, {0.5, 0.5}, samples);
    StepStats stats;
    trainer.micro_step(fk, 0, 2, 0, stats);
    expected += flat_grad(pol);
    zero_grad(pol);
  }
  auto step = -(double)kMaxLen * expected;  // -L E[grad loss] should be grad J
  return {(step - grad_J).norm().item<double>() / grad_J.norm().item<double>(), grad_J.norm().item<double>()};
}

}  // namespace

TEST(GrpoExactEnumeration, ExpectedStepGradientsAgainstTheObjective) {
  World w;
  ASSERT_EQ(w.ys.size(), 40u);
  struct Case {
    std::string kl_type, estimator, kl_in, baseline;
    bool exact;
  };
  std::vector<Case> cases = {
      {"rkl", "exact", "loss", "auto", true},  // full in the loss + KL-to-go reward, leave-one-out
      {"rkl", "full", "loss", "group_mean", false},
      {"rkl", "k1", "loss", "leave_one_out", false},
      {"rkl", "k2", "loss", "leave_one_out", false},
      {"rkl", "k3", "loss", "leave_one_out", false},
      {"rkl", "mixture_k3", "loss", "leave_one_out", false},
      {"rkl", "exact", "reward", "auto", true},  // k1 in the reward
      {"rkl", "k2", "reward", "leave_one_out", false},
      {"rkl", "k3", "reward", "leave_one_out", false},
      {"fkl", "exact", "loss", "auto", true},  // fresh reference samples
      {"fkl", "ref_samples", "loss", "group_mean", false},
      {"fkl", "fkl_full", "loss", "leave_one_out", false},
      {"fkl", "fkl_mixture_k3", "loss", "leave_one_out", false},
  };
  std::cout << "| kl_type | estimator | kl_in | baseline | relative gradient gap |\n|---|---|---|---|---|\n";
  for (auto& c : cases) {
    auto cfg = w.config(c.kl_type, c.estimator, c.kl_in, c.baseline);
    auto res = measure(w, cfg);
    std::cout << "| " << c.kl_type << " | " << c.estimator << " (" << kl_penalty_name(cfg.penalty) << ") | " << c.kl_in
              << " | " << (cfg.baseline == AdvantageBaseline::LeaveOneOut ? "leave_one_out" : "group_mean") << " | "
              << std::setprecision(3) << res.gap << " |\n";
    ASSERT_GT(res.norm, 1e-3) << "a degenerate problem proves nothing";
    if (c.exact)
      EXPECT_LT(res.gap, 1e-6) << c.kl_type << " " << c.estimator << " " << c.kl_in;
    else
      EXPECT_GT(res.gap, 1e-3) << c.kl_type << " " << c.estimator << " " << c.kl_in << " is labelled approximate";
    EXPECT_EQ(kl_penalty_is_exact(cfg.penalty, cfg.kl_in) && cfg.baseline == AdvantageBaseline::LeaveOneOut, c.exact)
        << "the label (losses.h) says what the enumeration shows";
  }
}
