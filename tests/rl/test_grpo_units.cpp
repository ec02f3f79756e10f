// GRPO's own parts as units, in-process (no binary, no training loop): the rollout (prompts at the data position,
// aligned batch, rewards and group advantages, reference log-probs) and the micro-step (gradient accumulation of
// two micro-batches of 2 gives the gradient of one batch of 4).
#include "io/hf_model.h"
#include "rl/grpo_trainer.h"
#include "test_util.h"

using namespace multiref;
using namespace multiref::testing;

namespace {

struct Units {
  TempDir tmp;
  std::string data;
  Units() { data = make_gsm8k_world(tmp.path); }
  GrpoConfig config(int batch, int accumulation) const {
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
