#include "sft.h"

#include <random>

#include "checkpoint.h"
#include "checkpointing.h"
#include "common.h"
#include "logprobs.h"

namespace multiref {

namespace {

CompletionBatch make_batch(const std::vector<const SftExample*>& ex, const torch::Device& device) {
  std::vector<std::pair<const std::vector<int64_t>*, const std::vector<int64_t>*>> rows;
  for (auto* e : ex) {
    if (e->prompt.empty())
      fail("sft: an example needs at least one prompt token (a BOS or the chat prompt) before its completion");
    rows.push_back({&e->prompt, &e->completion});
  }
  return make_completion_batch(rows, device);
}

torch::Tensor batch_nll(Transformer& model, const CompletionBatch& b) {
  auto lp = token_logprobs(model, b.ids, b.mask);  // [B, T-1]
  auto m = b.completion_mask.to(lp.scalar_type());
  return -(lp * m).sum() / m.sum().clamp_min(1);
}

}  // namespace

std::vector<double> sft_train(Transformer& model, const std::vector<SftExample>& data, const SftConfig& cfg,
                              const std::function<void(int64_t, double)>& on_step) {
  if (data.empty()) fail("sft: no examples");
  if (cfg.steps < 1 || cfg.batch_size < 1) fail("sft: steps and batch_size must be >= 1");
  auto device = model->parameters()[0].device();
  model->train();
  AdamW opt(state_dict(model), AdamWConfig{cfg.learning_rate, 0.9, 0.95, 1e-8, cfg.weight_decay});
  int64_t warmup = (int64_t)std::ceil(cfg.warmup_ratio * (double)cfg.steps);
  std::vector<double> losses;
  for (int64_t s = 0; s < cfg.steps; ++s) {
    std::mt19937_64 rng(stream_seed(cfg.seed, s, 3));
    std::vector<const SftExample*> ex;
    for (int64_t i = 0; i < cfg.batch_size; ++i) ex.push_back(&data[rng() % data.size()]);
    opt.zero_grad();
    auto loss = batch_nll(model, make_batch(ex, device));
    loss.backward();
    opt.clip_grad_norm(cfg.max_grad_norm);
    opt.step(cfg.learning_rate * lr_multiplier(cfg.schedule, s, cfg.steps, warmup));
    losses.push_back(loss.item<double>());
    if (on_step) on_step(s + 1, losses.back());
  }
  model->eval();
  return losses;
}

double sft_loss(Transformer& model, const std::vector<SftExample>& data, int64_t batch_size) {
  torch::NoGradGuard no_grad;
  auto device = model->parameters()[0].device();
  double total = 0, tokens = 0;
  for (size_t s = 0; s < data.size(); s += (size_t)batch_size) {
    std::vector<const SftExample*> ex;
    for (size_t i = s; i < std::min(data.size(), s + (size_t)batch_size); ++i) ex.push_back(&data[i]);
    auto b = make_batch(ex, device);
    double n = b.completion_mask.sum().item<double>();
    total += batch_nll(model, b).item<double>() * n;
    tokens += n;
  }
  return tokens > 0 ? total / tokens : 0.0;
}

}  // namespace multiref
