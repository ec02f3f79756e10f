#include "train/sft.h"

#include <random>

#include "io/hf_model.h"
#include "model/logprobs.h"
#include "train/loop.h"
#include "util/common.h"

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

namespace {

// SFT's part of the training loop: batches drawn with replacement from (seed, step), the mean completion NLL.
struct SftTask : TrainerTask {
  Transformer& model;
  const std::vector<SftExample>& data;
  const SftConfig& cfg;
  torch::Device device;
  SftTask(Transformer& m, const std::vector<SftExample>& d, const SftConfig& c)
      : model(m), data(d), cfg(c), device(m->parameters()[0].device()) {}
  Metrics accumulate(int64_t step) override {
    std::mt19937_64 rng(stream_seed(cfg.seed, step, 3));
    std::vector<const SftExample*> ex;
    for (int64_t i = 0; i < cfg.batch_size; ++i) ex.push_back(&data[rng() % data.size()]);
    auto loss = batch_nll(model, make_batch(ex, device));
    loss.backward();
    return {{"loss", loss.item<double>()}};
  }
};

}  // namespace

std::vector<double> sft_train(Transformer& model, const std::vector<SftExample>& data, const SftConfig& cfg,
                              const std::function<void(int64_t, double)>& on_step) {
  if (data.empty()) fail("sft: no examples");
  if (cfg.steps < 1 || cfg.batch_size < 1) fail("sft: steps and batch_size must be >= 1");
  model->train();
  SftTask task(model, data, cfg);
  LoopSettings s;
  s.program = "sft";
  s.total_steps = cfg.steps;
  s.adamw = AdamWConfig{cfg.learning_rate, 0.9, 0.95, 1e-8, cfg.weight_decay};
  s.schedule = cfg.schedule;
  s.warmup_ratio = cfg.warmup_ratio;
  s.max_grad_norm = cfg.max_grad_norm;
  s.stop_on_signal = false;  // in-memory: the caller (the demo) owns interruption
  if (on_step) s.on_step = [&](int64_t step, const Metrics& m) { on_step(step, m.at("loss")); };
  auto res = run_training_loop(model, task, s);
  model->eval();
  std::vector<double> losses;
  for (auto& row : res.rows) losses.push_back(row.at("loss"));
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
