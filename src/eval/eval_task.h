// Evaluation of any prompt task: the mean of each reward (and of their weighted total) over a model's completions,
// greedy or k samples per prompt, the way the policy was trained (`multiref eval task`, and GRPO's in-loop
// evaluation on data other than GSM8K).
#pragma once
#include <nlohmann/json.hpp>
#include <vector>

#include "data/prompt_data.h"
#include "eval/eval_gsm8k.h"
#include "eval/task_rewards.h"
#include "model/transformer.h"

namespace multiref {

// Gsm8kEvalConfig's decoding; max_prompt_length is applied where the TaskPrompts are made.
using TaskEvalConfig = Gsm8kEvalConfig;

// Returns {"reward" (mean weighted total), "rewards/NAME" (each reward's mean, and the GSM8K rewards' parts),
// "reward_max@k" (k > 1: the mean over prompts of the best sample's total), "mean_completion_length",
// "num_prompts", "num_samples", "seconds", "tokens_per_second"}. `tok` may be null (prompt_ids data).
nlohmann::json evaluate_task(Transformer& model, const Tokenizer* tok, const std::vector<TaskPrompt>& prompts,
                             TaskRewards& rewards, const TaskEvalConfig& cfg);

}  // namespace multiref
