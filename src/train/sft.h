// Supervised fine-tuning: next-token cross-entropy on completion tokens. The demo pretrains its references from
// scratch with it (issue 8); it is the plain maximum-likelihood counterpart of the RLHF trainers.
#pragma once
#include <functional>
#include <vector>

#include "model/transformer.h"
#include "train/optimizer.h"

namespace multiref {

struct SftExample {
  std::vector<int64_t> prompt, completion;  // the loss covers the completion tokens only
};

struct SftConfig {
  int64_t steps = 1000;
  int64_t batch_size = 16;  // examples per step, drawn with replacement from (seed, step)
  double learning_rate = 3e-3;
  double warmup_ratio = 0.05;
  LrSchedule schedule = LrSchedule::Cosine;
  double weight_decay = 0.0;
  double max_grad_norm = 1.0;
  uint64_t seed = 0;
};

// Trains `model` in place; returns the loss of every step (mean negative log-likelihood per completion token).
// `on_step(step, loss)` runs after each step (progress display).
std::vector<double> sft_train(Transformer& model, const std::vector<SftExample>& data, const SftConfig& cfg,
                              const std::function<void(int64_t, double)>& on_step = {});

// Mean negative log-likelihood per completion token of `data` under `model` (no grad), in batches.
double sft_loss(Transformer& model, const std::vector<SftExample>& data, int64_t batch_size = 32);

}  // namespace multiref
