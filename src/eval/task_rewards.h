// The rewards of online training and task evaluation (`--reward`, `--reward_model`, `--reward_program`), combined
// with `--reward_weights` into one reward per completion, as TRL's GRPOTrainer combines its reward_funcs:
//   built-ins   gsm8k_xml, gsm8k_answer (data/rewards.h; gold from the row's "answer"), exact_match (the completion,
//               stripped as Python's str.strip, equals the row's "answer", stripped), regex:PATTERN (1 when PCRE2
//               finds PATTERN in the completion, else 0), length_penalty (-completion tokens / max tokens);
//   models      *ForSequenceClassification checkpoints: the prompt's turns plus the completion as the assistant's
//               turn, through the reward model's own tokenizer and chat template (model/reward_model.h);
//   a program   data/reward_program.h: one JSON line per completion, one {"reward": r} line back.
// Each reward is named (rewards/NAME in the metrics); the total is the weighted sum.
#pragma once
#include <torch/torch.h>

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "data/prompt_data.h"
#include "tokenizer/tokenizer.h"
#include "util/flags.h"

namespace multiref {

// The reward flags, shared by `multiref grpo` and `multiref eval task`.
struct RewardFlags {
  std::string reward;                     // --reward NAME[,NAME...] (split by split_reward_names)
  std::vector<double> reward_weights;     // one per reward: --reward names, then --reward_model, then the program
  std::vector<std::string> reward_model;  // repeatable
  std::string reward_program;             // a shell command
  double reward_timeout = 600;            // seconds the program may take for one answer
  int reward_batch_size = 16;             // sequences per reward-model forward pass

  void register_reward_flags(FlagTable& t);
  // Checks the flags without loading anything: names, weights' count, timeout.
  void validate_reward_flags() const;
  bool any() const { return !reward.empty() || !reward_model.empty() || !reward_program.empty(); }
};

// "a,regex:x{1,2},b" -> {"a", "regex:x{1,2}", "b"}: commas split names, except inside a regex, where a comma
// belongs to the pattern unless what follows it is a built-in's name (or another regex:).
std::vector<std::string> split_reward_names(const std::string& flag);

// One completion as the rewards see it.
struct TaskCompletion {
  const TaskPrompt* prompt = nullptr;
  const std::vector<int64_t>* ids = nullptr;  // the completion's tokens as generated (with the EOS if it stopped)
  std::optional<std::string> text;            // decoded, special tokens skipped (only with a tokenizer)
};

struct RewardScores {
  std::vector<std::string> names;           // one per reward, in flag order
  std::vector<std::vector<double>> values;  // [R][N] unweighted
  std::vector<double> total;                // [N] sum_r weight_r * values[r][n]
  // "rewards/NAME" -> mean of values[r], and the parts of gsm8k_xml (rewards/xmlcount, ...) as before.
  std::map<std::string, double> means;
};

class TaskRewards {
 public:
  // Loads the reward models (in `dtype` on `dev`) and starts the reward program. `has_text`: whether the policy has
  // a tokenizer (without one, the text rewards and reward models are errors saying so). `max_completion_length`
  // scales length_penalty.
  TaskRewards(const RewardFlags& flags, bool has_text, int64_t max_completion_length, torch::ScalarType dtype,
              torch::Device dev);
  ~TaskRewards();
  TaskRewards(const TaskRewards&) = delete;
  TaskRewards& operator=(const TaskRewards&) = delete;

  RewardScores score(const std::vector<TaskCompletion>& completions);
  const std::vector<std::string>& names() const;
  const std::vector<double>& weights() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace multiref
