// GSM8K evaluation: accuracy of the final answer (numeric match, answer_reward), the rate of well-formed
// <reasoning>/<answer> completions and the mean completion length; greedy, or k samples per question with
// mean@k and pass@k. Used by `multiref eval gsm8k` and in-loop by the GRPO trainer.
#pragma once
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "data/gsm8k.h"
#include "generation/generation.h"
#include "model/transformer.h"
#include "tokenizer/chat_template.h"
#include "tokenizer/tokenizer.h"

namespace multiref {

struct Gsm8kEvalConfig {
  int64_t num_samples = 1;  // k; 1 with temperature 0 = greedy
  double temperature = 0.0;
  double top_p = 1.0;
  int64_t max_new_tokens = 256;
  int64_t max_prompt_length = 512;
  uint64_t seed = 0;
  int64_t batch_size = 32;
  std::vector<int64_t> eos_ids;
};

// The decoding of an evaluation (greedy, or k samples), checked: k > 1 needs a temperature.
GenerationConfig eval_generation_config(const Gsm8kEvalConfig& cfg);

// Returns {"accuracy" (greedy or mean@k), "pass@k" (k > 1), "format_rate", "mean_completion_length",
// "num_questions", "num_samples", "seconds", "tokens_per_second"}.
nlohmann::json evaluate_gsm8k(Transformer& model, const Tokenizer& tok, const ChatFormat& chat,
                              const std::vector<MathProblem>& problems, const Gsm8kEvalConfig& cfg);

// The prompt every GSM8K pipeline uses: the paper code's system prompt and the question, chat-templated and
// left-truncated to max_prompt_length tokens.
std::vector<int64_t> gsm8k_prompt_ids(const Tokenizer& tok, const ChatFormat& chat, const MathProblem& p,
                                      int64_t max_prompt_length);

}  // namespace multiref
