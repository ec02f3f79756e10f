// Online multi-reference GRPO (the paper's GSM8K pipeline). GRPO brings only what is its own to the shared
// training loop (train/loop.h): the rollout (prompt choice, generation, rewards, reference scoring, advantages)
// and the micro-step (policy log-probs, the KL penalty and the clipped loss, backward). Every formula comes from
// objectives/ (losses.h); AdamW, resume, logging, checkpoints and signals from the loop.
#pragma once
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "rl/grpo_config.h"
#include "rl/update_slices.h"
#include "train/loop.h"
#include "train/step_stats.h"

namespace multiref {

// Exact FKL: one completion drawn from reference `ref` at `prompt`.
struct RefSample {
  std::vector<int64_t> prompt, completion;
  std::vector<float> lp;  // log pi_ref(completion tokens) from the sampler (statistics only; may be empty)
  int64_t ref = 0;
  double weight = 0;  // beta_ref / (samples of ref): the weights of a step add up to 1
  double coef = 0;    // weight times the loss's per-sequence scale (filled by score_rollout)
};

// One generation round: G completions of P prompts as one aligned batch, and everything computed before the
// update (rewards, advantages, reference terms). N = P * G rows; C = longest completion.
struct Rollout {
  torch::Tensor ids, mask;                  // [N, Pmax + C] prompt left-padded, completion right-padded
  torch::Tensor completion_mask;            // [N, C]
  int64_t prompt_len = 0;                   // Pmax
  std::vector<int64_t> completion_lengths;  // [N] (host copy of completion_mask's row sums)
  std::vector<int64_t> prompt_lengths;      // [N] prompt tokens of each row (host)
  torch::Tensor rewards, advantages;        // [N]
  torch::Tensor ref_lp;                     // [K, N, C] log pi_i of the sampled tokens
  std::vector<torch::Tensor> ref_hidden;    // K x [N, C, H] (full-vocabulary penalties only)
  torch::Tensor old_lp;                     // [N, C] (num_iterations > 1, the KL in the reward, exact RKL)
  std::vector<RefSample> ref_samples;       // exact FKL: this step's samples from the references
  Metrics metrics;                          // reward, its parts, lengths, timings
  int64_t tokens = 0;                       // generated tokens
  // Data parallel: this rank holds completions [row_first, row_first + N) of the step's row_total, and reference
  // samples [sample_first, sample_first + ref_samples.size()) of its sample_total; completion tokens of all ranks.
  // One rank: row_first = sample_first = 0, the totals its own.
  int64_t row_first = 0, row_total = 0, sample_first = 0, sample_total = 0, tokens_all_ranks = 0;
};

class GrpoTrainer : public TrainerTask {
 public:
  // Loads the policy, the references, the tokenizer and the data (everything but the optimizer).
  explicit GrpoTrainer(GrpoConfig cfg);
  ~GrpoTrainer() override;

  // The next generation round at optimizer step `step`: the prompts at the data position (which advances), their
  // G completions each from the policy, rewards and group advantages, and the references' (and old policy's)
  // log-probs of the completions.
  Rollout rollout(int64_t step);
  // Everything a round computes after sampling: prompts [P], completions [P * G] (groups contiguous), the task's
  // rewards [P * G], the reference samples (exact FKL; score_rollout fills their coef). Reference scoring, the
  // KL-to-go (exact RKL) or the KL in the reward, advantages. rollout() = sampling + this; the exactness tests
  // call it on enumerated completions.
  // `shard`: a data-parallel rank's place in the step (its row_first, row_total, sample_first, sample_total and
  // tokens_all_ranks are copied into the result); null: the rollout is the whole step.
  Rollout score_rollout(const std::vector<std::vector<int64_t>>& prompts,
                        const std::vector<std::vector<int64_t>>& completions, const std::vector<double>& rewards,
                        std::vector<RefSample> ref_samples, const Rollout* shard = nullptr);
  // One micro-batch, rows [from, from + n) of `r`: the loss of optimizer step `step`, backward (scaled so the
  // micro-batches of a step add up to the whole batch's loss), its statistics into `stats`.
  // On a CPU the micro-batch runs as slices of rows (--update_batch_tokens, rl/update_slices.h): the same gradient.
  void micro_step(Rollout& r, int64_t from, int64_t n, int64_t step, StepStats& stats);

  Transformer& policy();
  int64_t data_position() const;

  // TrainerTask.
  Metrics prepare(int64_t step) override;
  Metrics accumulate(int64_t step) override;
  void finish(int64_t step, double seconds, Metrics& m) override;
  std::pair<Metrics, std::string> evaluate(int64_t step) override;
  nlohmann::json state() const override;
  void restore(const nlohmann::json& trainer_state) override;

  // The loop's settings for this run (output directory, schedule, cadence, resume).
  LoopSettings loop_settings(const nlohmann::json& run_config) const;

 private:
  // One slice of a micro-batch (rl/update_slices.h): its loss scaled by its share of the micro-batch's rows
  // (sequence mean, Dr. GRPO) or of the step's tokens (token mean), backward, statistics by its share of tokens.
  void slice_step(Rollout& r, const RowSlice& s, double row_share, double token_share, int64_t step, StepStats& stats);
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// Runs training to cfg.max_steps (or until SIGINT/SIGTERM, which saves a checkpoint first). `run_config` is
// the resolved flag table, saved with the run and every checkpoint.
void run_grpo(GrpoConfig cfg, const nlohmann::json& run_config);

}  // namespace multiref
