// AdamW against LibTorch's own torch::optim::AdamW, HF's schedule formulas by hand, exact resume.
#include "test_util.h"
#include "train/optimizer.h"

using namespace multiref;
using namespace multiref::testing;

TEST(Optimizer, AdamWMatchesLibTorch) {
  torch::manual_seed(0);
  auto a = torch::randn({5, 3}).requires_grad_(true), b = a.detach().clone().requires_grad_(true);
  AdamWConfig cfg;
  cfg.lr = 0.01;
  cfg.weight_decay = 0.1;
  cfg.beta2 = 0.98;
  AdamW ours({{"w", a}}, cfg);
  torch::optim::AdamW ref({b}, torch::optim::AdamWOptions(0.01).betas({0.9, 0.98}).eps(1e-8).weight_decay(0.1));
  for (int s = 0; s < 20; ++s) {
    auto x = torch::randn({3});
    ours.zero_grad();
    ref.zero_grad();
    torch::matmul(a, x).pow(2).sum().backward();
    torch::matmul(b, x).pow(2).sum().backward();
    ours.step(0.01);
    ref.step();
  }
  EXPECT_LT(max_abs_diff(a, b), 1e-6);
}

TEST(Optimizer, ScheduleByHand) {
  // warmup 10 of 110 steps: step 5 -> 0.5; after warmup linear decays (110 - s) / 100; cosine 0.5(1 + cos(pi p)).
  EXPECT_DOUBLE_EQ(lr_multiplier(LrSchedule::Linear, 5, 110, 10), 0.5);
  EXPECT_DOUBLE_EQ(lr_multiplier(LrSchedule::Linear, 10, 110, 10), 1.0);
  EXPECT_DOUBLE_EQ(lr_multiplier(LrSchedule::Linear, 60, 110, 10), 0.5);
  EXPECT_NEAR(lr_multiplier(LrSchedule::Cosine, 60, 110, 10), 0.5, 1e-12);
  EXPECT_NEAR(lr_multiplier(LrSchedule::Cosine, 35, 110, 10), 0.5 * (1 + std::cos(M_PI * 0.25)), 1e-12);
  EXPECT_DOUBLE_EQ(lr_multiplier(LrSchedule::Constant, 3, 110, 10), 1.0);
  EXPECT_DOUBLE_EQ(lr_multiplier(LrSchedule::ConstantWithWarmup, 3, 110, 10), 0.3);
}

TEST(Optimizer, ClipGradNorm) {
  auto w = torch::zeros({2}).requires_grad_(true);
  AdamW opt({{"w", w}}, {});
  (w * torch::tensor({3.0f, 4.0f})).sum().backward();  // grad (3, 4), norm 5
  EXPECT_NEAR(opt.clip_grad_norm(1.0), 5.0, 1e-6);
  EXPECT_NEAR(w.grad().norm().item<double>(), 1.0, 1e-5);
}

TEST(Optimizer, SaveLoadResumesExactly) {
  TempDir tmp;
  torch::manual_seed(1);
  auto init = torch::randn({4, 4}).to(torch::kBFloat16);
  auto run = [&](bool resume) {
    auto w = init.clone().requires_grad_(true);
    AdamW opt({{"w", w}}, AdamWConfig{0.05});
    auto step = [&](int s) {
      opt.zero_grad();
      (w.to(torch::kFloat32) * (float)(s + 1)).pow(2).sum().backward();
      opt.step(0.05);
    };
    for (int s = 0; s < 3; ++s) step(s);
    if (resume) {
      opt.save(tmp / "opt.safetensors");
      auto w2 = w.detach().clone().requires_grad_(true);
      AdamW opt2({{"w", w2}}, AdamWConfig{0.05});
      opt2.load(tmp / "opt.safetensors");
      EXPECT_EQ(opt2.steps(), 3);
      for (int s = 3; s < 6; ++s) {
        opt2.zero_grad();
        (w2.to(torch::kFloat32) * (float)(s + 1)).pow(2).sum().backward();
        opt2.step(0.05);
      }
      return w2.detach();
    }
    for (int s = 3; s < 6; ++s) step(s);
    return w.detach();
  };
  EXPECT_TRUE(torch::equal(run(false), run(true)));
  auto v = torch::zeros({3}).requires_grad_(true);
  AdamW other({{"v", v}}, {});
  expect_error([&] { other.load(tmp / "opt.safetensors"); }, {"lacks 'v.exp_avg'"});
}
