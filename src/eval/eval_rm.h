// Reward-model evaluation of a policy (`multiref eval rm`, and the DPO trainer's end-of-training report): on
// the first N prompts of held-out preference data, the policy samples one response per prompt, each
// comparison system gives its own (another model sampling the same way, or the dataset's chosen response),
// and a reward model scores every (prompt, response) conversation with its own tokenizer and chat template.
// Reported: the mean reward of every system and the policy's win rate against each comparison (ties count
// 1/2). Models are loaded one at a time and freed once they have generated, so the peak memory is that of the
// largest single model.
#pragma once
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "data/preference_data.h"
#include "util/flags.h"
#include "util/runtime.h"

namespace multiref {

// One entry of --compare: "chosen" (the dataset's chosen response), "NAME=MODEL" or "MODEL" (named by its path).
struct RmComparison {
  std::string name;   // the key suffix: reward/<name>, win_rate/<name>
  std::string model;  // directory or hub id; empty for "chosen"
  bool chosen() const { return model.empty(); }
};

// Parses --compare entries. Errors: an empty name or model, a duplicate name, the reserved name "policy".
std::vector<RmComparison> parse_rm_comparisons(const std::vector<std::string>& entries);

struct EvalRmConfig {
  std::string model;    // the policy evaluated
  std::string rm_name;  // the reward model (*ForSequenceClassification, num_labels = 1)
  std::string dataset = "ultrafeedback", data_dir, split = "test";  // preference_files(); data_dir "" = default
  int64_t num_prompts = 64;                                         // the first N prompts of the split (0 = all)
  int64_t max_new_tokens = 256;
  int64_t max_prompt_length = 0;  // longer prompts keep their last N tokens, as DPO training's keep_end (0 = whole)
  double temperature = 1.0, top_p = 1.0;
  std::vector<std::string> compare;  // see RmComparison
  int64_t seed = 0;                  // every generating model samples with this seed
  int64_t batch_size = 8;            // sequences generated / scored together
  DTypeChoice dtype = DTypeChoice::Auto;
  bool bf16 = false;  // the seed's spelling of --dtype bfloat16
  DeviceChoice device = DeviceChoice::Auto;
  std::string chat_template = "auto";     // of the generating models (auto: each its own tokenizer's)
  std::string rm_chat_template = "auto";  // of the reward model
  int threads = 0;                        // CLI only: evaluate_rm leaves the thread count as it finds it
  std::string output;                     // when set, evaluate_rm also writes the JSON result here (atomically)
  std::string responses_output;           // when set, a jsonl line per prompt: prompt, responses and rewards per system
  bool progress = true;                   // progress lines on stderr

  void register_flags(FlagTable& t);
  void validate() const;
};

// Runs the evaluation on the first num_prompts rows of preference_files(dataset, data_dir, split). Returns
// {"num_prompts": N, "reward/policy": mean, "reward/<name>": mean, "win_rate/<name>": policy's win rate,
//  "seconds": wall time}, all numbers.
nlohmann::json evaluate_rm(const EvalRmConfig& cfg);
// The same on given rows (all of them; num_prompts, dataset, data_dir and split are ignored).
nlohmann::json evaluate_rm(const EvalRmConfig& cfg, const std::vector<PreferenceExample>& rows);

// A small markdown table of a result: one line per system with its mean reward and the policy's win rate.
std::string rm_eval_table(const nlohmann::json& result);

}  // namespace multiref
