// Supervised fine-tuning on a tiny random model: it must learn a small fixed mapping (the loss falls far and
// greedy decoding reproduces the completions), and its loss must be the mean completion-token NLL by hand.
#include "sft.h"

#include <cmath>

#include "checkpoint.h"
#include "generation.h"
#include "logprobs.h"
#include "test_util.h"

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
