// GRPO's own parts as units, in-process (no binary, no training loop): the rollout (prompts at the data position,
// aligned batch, rewards and group advantages, reference log-probs) and the micro-step (gradient accumulation of
// two micro-batches of 2 gives the gradient of one batch of 4).
#include "io/hf_model.h"
#include "rl/grpo_trainer.h"
#include "rl/update_slices.h"
#include "test_util.h"

using namespace multiref;
using namespace multiref::testing;

namespace {

struct Units {
  TempDir tmp;
  std::string data;
  Units() { data = make_gsm8k_world(tmp.path); }
  GrpoConfig config(int batch, int accumulation, const std::function<void(GrpoConfig&)>& set = nullptr) const {
    GrpoConfig c;
    c.data_dir = data;
    c.ref_a = tmp / "ra";
    c.ref_b = tmp / "rb";
    c.model_out = tmp / "out";
    c.per_device_train_batch_size = batch;
    c.gradient_accumulation_steps = accumulation;
    c.num_generations = 2;
    c.max_completion_length = 8;
    c.max_prompt_length = 128;
    c.threads = 1;
    if (set) set(c);
    c.validate();
    return c;
  }
};

std::map<std::string, torch::Tensor> grads(Transformer& m) {
  std::map<std::string, torch::Tensor> out;
  for (auto& [name, p] : state_dict(m))
    if (p.grad().defined()) out[name] = p.grad().clone();
  return out;
}

}  // namespace

TEST(GrpoUnits, RolloutIsAnAlignedGroupedBatchWithCenteredAdvantages) {
  Units u;
  GrpoTrainer t(u.config(2, 2));
  auto r = t.rollout(0);
  const int64_t N = 4, G = 2, K = 2;
  EXPECT_EQ(t.data_position(), N / G) << "two prompts consumed";
  ASSERT_EQ(r.ids.size(0), N);
  int64_t P = r.prompt_len, C = r.completion_mask.size(1);
  EXPECT_EQ(r.ids.size(1), P + C);
  ASSERT_EQ(r.completion_lengths.size(), (size_t)N);
  for (int64_t n = 0; n < N; ++n) {
    EXPECT_EQ(r.completion_mask[n].sum().item<double>(), (double)r.completion_lengths[(size_t)n]);
    EXPECT_LE(r.completion_lengths[(size_t)n], 8);
    // Rows of one group share their prompt.
    EXPECT_TRUE(torch::equal(r.ids[n].narrow(0, 0, P), r.ids[n - n % G].narrow(0, 0, P))) << n;
  }
  EXPECT_EQ(r.ref_lp.sizes().vec(), (std::vector<int64_t>{K, N, C}));
  // Log-probs of sampled tokens are <= 0, and 0 on padding.
  EXPECT_LE(r.ref_lp.max().item<double>(), 0.0);
  EXPECT_EQ((r.ref_lp * (1 - r.completion_mask).unsqueeze(0)).abs().sum().item<double>(), 0.0);
  // Advantages: centred within each group (scaled by the group std, so each group sums to 0).
  auto groups = r.advantages.view({N / G, G}).sum(1);
  EXPECT_LT(groups.abs().max().item<double>(), 1e-5);
  for (auto key : {"reward", "reward_std", "completion_length", "time/generate", "time/score"})
    EXPECT_TRUE(r.metrics.count(key)) << key;
  // The next round continues at the data position.
  (void)t.rollout(1);
  EXPECT_EQ(t.data_position(), 2 * N / G);
}

TEST(GrpoUnits, TwoMicroBatchesOfTwoGiveTheGradientOfOneBatchOfFour) {
  Units u;
  GrpoTrainer a(u.config(2, 2)), b(u.config(4, 1));
  auto r = a.rollout(0);
  StepStats sa, sb;
  a.micro_step(r, 0, 2, 0, sa);
  a.micro_step(r, 2, 2, 0, sa);
  b.micro_step(r, 0, 4, 0, sb);
  auto ga = grads(a.policy()), gb = grads(b.policy());
  ASSERT_EQ(ga.size(), gb.size());
  ASSERT_FALSE(ga.empty());
  double norm = 0;
  for (auto& [name, g] : gb) {
    norm = std::max(norm, g.abs().max().item<double>());
    EXPECT_LT(max_abs_diff(ga[name], g), 1e-6 + 1e-5 * g.abs().max().item<double>()) << name;
  }
  EXPECT_GT(norm, 0.0);
  auto ma = sa.read(), mb = sb.read();
  for (auto key : {"loss", "kl", "kl/ref_a", "kl/ref_b", "clip_ratio/region_mean"}) {
    EXPECT_TRUE(ma.count(key)) << key;
    EXPECT_TRUE(mb.count(key)) << key;
  }
  // The initial policy is ref_a: its exact KL is 0; ref_b differs.
  EXPECT_NEAR(mb.at("kl/ref_a"), 0.0, 1e-6);
  EXPECT_GT(mb.at("kl/ref_b"), 0.0);
  EXPECT_NEAR(mb.at("kl"), 0.5 * mb.at("kl/ref_b"), 1e-9);
}

TEST(UpdateSlices, RowsGoTogetherWhileTheirTrimmedRectangleFitsTheBudget) {
  // Four rows padded to P = 10, C = 6: prompts of 4, 4, 9, 2 tokens, completions of 3, 6, 0, 2.
  std::vector<int64_t> p = {4, 4, 9, 2}, c = {3, 6, 0, 2};
  // Budget 20: rows 0-1 take 2 x (4 + 6) = 20; row 2 alone 1 x (9 + 1) = 10 (an empty completion keeps one
  // column), with row 3 it would be 2 x (9 + 2) = 22 > 20, so row 3 alone: 1 x (2 + 2).
  auto s = plan_update_slices(p, c, 10, 6, 0, 4, 20);
  auto is = [](const RowSlice& x, int64_t from, int64_t n, int64_t left, int64_t completion) {
    return x.from == from && x.n == n && x.left == left && x.completion == completion;
  };
  ASSERT_EQ(s.size(), 3u);
  EXPECT_TRUE(is(s[0], 0, 2, 6, 6));
  EXPECT_EQ(s[0].width(10), 10);
  EXPECT_TRUE(is(s[1], 2, 1, 1, 1));
  EXPECT_TRUE(is(s[2], 3, 1, 8, 2));
  // No budget: one slice of the rows asked for, trimmed to their longest prompt and completion.
  auto all = plan_update_slices(p, c, 10, 6, 1, 3, 0);
  ASSERT_EQ(all.size(), 1u);
  EXPECT_TRUE(is(all[0], 1, 3, 1, 6));
  // A row wider than the budget still runs, alone.
  auto tiny = plan_update_slices(p, c, 10, 6, 0, 4, 1);
  EXPECT_EQ(tiny.size(), 4u);
  EXPECT_THROW(plan_update_slices(p, c, 10, 6, 2, 3, 0), std::exception);
}

TEST(GrpoUnits, SlicesOfRowsGiveTheMicroBatchesGradientAndStatistics) {
  Units u;
  std::vector<std::pair<std::string, std::function<void(GrpoConfig&)>>> variants = {
      {"token mean, exact RKL", [](GrpoConfig&) {}},
      {"sequence mean, k3, mu 2",
       [](GrpoConfig& c) {
         c.loss_type = LossAggregation::SequenceMean;
         c.kl_estimator = "k3";
         c.num_iterations = 2;
       }},
      {"dr_grpo, k3",
       [](GrpoConfig& c) {
         c.loss_type = LossAggregation::DrGrpo;
         c.kl_estimator = "k3";
       }},
      {"exact FKL (reference samples)", [](GrpoConfig& c) { c.kl_type = KLType::Fkl; }},
  };
  for (auto& [name, set] : variants) {
    auto sliced = [&](int tokens) {
      return u.config(4, 1, [&, tokens](GrpoConfig& c) {
        set(c);
        c.gamma = 0.3;
        c.update_batch_tokens = tokens;
      });
    };
    GrpoTrainer a(sliced(1)), b(sliced(1 << 20));  // every row alone / the micro-batch in one slice
    // Rows of unequal lengths, from the rollout's own tokens: the second prompt 3 tokens shorter than the first,
    // completions of up to 8, 3, 5 and 1 tokens.
    auto base = a.rollout(0);
    const int64_t P0 = base.prompt_len;
    std::vector<std::vector<int64_t>> prompts, comps;
    for (int64_t g = 0; g < 2; ++g) {
      int64_t len = base.prompt_lengths[(size_t)(2 * g)] - 3 * g;
      auto row = base.ids[2 * g].narrow(0, P0 - len, len).contiguous();
      prompts.emplace_back(row.data_ptr<int64_t>(), row.data_ptr<int64_t>() + len);
    }
    const int64_t keep[4] = {8, 3, 5, 1};
    for (int64_t i = 0; i < 4; ++i) {
      int64_t len = std::min(keep[i], base.completion_lengths[(size_t)i]);
      auto row = base.ids[i].narrow(0, P0, len).contiguous();
      comps.emplace_back(row.data_ptr<int64_t>(), row.data_ptr<int64_t>() + len);
    }
    auto r = a.score_rollout(prompts, comps, {1.0, 0.0, 0.5, 0.2}, base.ref_samples);
    // The slices really split and trim: four of one row, and some drop padding columns.
    const int64_t P = r.prompt_len, C = r.completion_mask.size(1);
    auto plan = plan_update_slices(r.prompt_lengths, r.completion_lengths, P, C, 0, 4, 1);
    ASSERT_EQ(plan.size(), 4u) << name;
    EXPECT_LT(plan[1].width(P), P + C) << name;
    EXPECT_LT(plan[2].width(P), P + C) << name;
    StepStats sa, sb;
    a.micro_step(r, 0, 4, 0, sa);
    b.micro_step(r, 0, 4, 0, sb);
    auto ga = grads(a.policy()), gb = grads(b.policy());
    ASSERT_EQ(ga.size(), gb.size()) << name;
    double norm = 0;
    for (auto& [key, g] : gb) {
      norm = std::max(norm, g.abs().max().item<double>());
      EXPECT_LT(max_abs_diff(ga[key], g), 1e-6 + 1e-5 * g.abs().max().item<double>()) << name << ": " << key;
    }
    EXPECT_GT(norm, 0.0) << name;
    auto ma = sa.read(), mb = sb.read();
    EXPECT_EQ(ma.size(), mb.size()) << name;
    for (auto& [key, v] : mb) {
      ASSERT_TRUE(ma.count(key)) << name << ": " << key;
      // Absolute 2e-5: a KL is a difference of sequence log-probs of ~30 in float32.
      EXPECT_NEAR(ma.at(key), v, 2e-5 + 1e-6 * std::abs(v)) << name << ": " << key;
    }
    EXPECT_GT(std::abs(mb.at("kl")), 0.0) << name;
  }
}
