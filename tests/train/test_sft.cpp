// Supervised fine-tuning on a tiny random model: it must learn a small fixed mapping (the loss falls far and
// greedy decoding reproduces the completions), and its loss must be the mean completion-token NLL by hand.
#include <cmath>
#include <random>

#include "generation/generation.h"
#include "io/hf_model.h"
#include "model/logprobs.h"
#include "test_util.h"
#include "train/sft.h"

using namespace multiref;
using namespace multiref::testing;

TEST(Sft, LossIsTheMeanCompletionNllAndTrainingLearnsAMapping) {
  auto lm = load_model(golden_dir("qwen2_tied"), torch::kFloat32, torch::kCPU);
  std::vector<SftExample> data;
  for (int64_t i = 0; i < 6; ++i) data.push_back({{1, 10 + i}, {40 + 3 * i, 41 + 3 * i, 2}});
  // By hand: the NLL of each completion token from the full log-softmax, averaged over the 18 tokens.
  double want = 0;
  {
    torch::NoGradGuard ng;
    for (auto& e : data) {
      std::vector<int64_t> seq(e.prompt);
      seq.insert(seq.end(), e.completion.begin(), e.completion.end());
      auto ids = torch::tensor(seq, torch::kLong).unsqueeze(0);
      auto logp = torch::log_softmax(lm.model->forward(ids, torch::ones_like(ids)).to(torch::kFloat64), -1)[0];
      for (size_t t = e.prompt.size(); t < seq.size(); ++t) want -= logp[(int64_t)t - 1][seq[t]].item<double>();
    }
    want /= 18;
  }
  double before = sft_loss(lm.model, data, 4);
  EXPECT_NEAR(before, want, 1e-5);
  SftConfig cfg;
  cfg.steps = 150;
  cfg.batch_size = 6;
  cfg.learning_rate = 1e-2;
  auto losses = sft_train(lm.model, data, cfg);
  ASSERT_EQ(losses.size(), 150u);
  double after = sft_loss(lm.model, data, 4);
  EXPECT_LT(after, 0.05 * before) << before << " -> " << after;
  GenerationConfig g;
  g.max_new_tokens = 3;
  g.sampling.temperature = 0;
  std::vector<std::vector<int64_t>> prompts;
  for (auto& e : data) prompts.push_back(e.prompt);
  auto res = generate(lm.model, prompts, g);
  for (size_t i = 0; i < data.size(); ++i) EXPECT_EQ(res.sequences[i].ids, data[i].completion) << i;
}

// sft_train runs on the shared training loop; the loop must do exactly what SFT's own loop did: this is that loop,
// written out (zero_grad, the batch of (seed, step), NLL, backward, clip, AdamW at the scheduled rate).
TEST(Sft, TheSharedLoopIsBitForBitTheOptimizerLoopWrittenOut) {
  std::vector<SftExample> data;
  for (int64_t i = 0; i < 5; ++i) data.push_back({{1, 20 + i}, {50 + i, 2}});
  SftConfig cfg;
  cfg.steps = 6;
  cfg.batch_size = 3;
  cfg.learning_rate = 5e-3;
  cfg.warmup_ratio = 0.34;  // ceil(0.34 * 6) = 3 warmup steps
  cfg.seed = 9;
  auto a = load_model(golden_dir("qwen2_tied"), torch::kFloat32, torch::kCPU);
  auto losses = sft_train(a.model, data, cfg);

  auto b = load_model(golden_dir("qwen2_tied"), torch::kFloat32, torch::kCPU);
  b.model->train();
  AdamW opt(state_dict(b.model), AdamWConfig{cfg.learning_rate, 0.9, 0.95, 1e-8, cfg.weight_decay});
  std::vector<double> want;
  for (int64_t s = 0; s < cfg.steps; ++s) {
    std::mt19937_64 rng(stream_seed(cfg.seed, s, 3));
    std::vector<std::pair<const TokenRow*, const TokenRow*>> rows;
    for (int64_t i = 0; i < cfg.batch_size; ++i) {
      const auto& e = data[rng() % data.size()];
      rows.push_back({&e.prompt, &e.completion});
    }
    opt.zero_grad();
    auto batch = make_completion_batch(rows, torch::kCPU);
    auto lp = token_logprobs(b.model, batch.ids, batch.mask);
    auto m = batch.completion_mask.to(lp.scalar_type());
    auto loss = -(lp * m).sum() / m.sum().clamp_min(1);
    loss.backward();
    opt.clip_grad_norm(cfg.max_grad_norm);
    opt.step(cfg.learning_rate * lr_multiplier(cfg.schedule, s, cfg.steps, 3));
    want.push_back(loss.item<double>());
  }
  EXPECT_EQ(losses, want);
  auto pa = state_dict(a.model), pb = state_dict(b.model);
  ASSERT_EQ(pa.size(), pb.size());
  for (size_t i = 0; i < pa.size(); ++i) EXPECT_TRUE(torch::equal(pa[i].second, pb[i].second)) << pa[i].first;
}
