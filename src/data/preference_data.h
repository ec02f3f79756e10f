// Preference pairs for DPO and reward-model evaluation: UltraFeedback in both shapes users have, from jsonl.
//   flat:      {"prompt": "...", "chosen": "...", "rejected": "..."}          (../shared/data/ultrafeedback)
//   messages:  {"prompt": "...", "chosen": [{"role":..,"content":..}, ...], "rejected": [...]}
//              (HF ultrafeedback_binarized: chosen/rejected are whole conversations ending with the assistant
//              turn; the prompt turns are the conversation minus that last message)
// Other keys are ignored. A malformed line is an Error naming file:line; rows with an empty side (empty
// prompt, chosen or rejected response) are counted and skipped.
#pragma once
#include <string>
#include <vector>

#include "tokenizer/chat_template.h"
#include "tokenizer/tokenizer.h"

namespace multiref {

struct PreferenceExample {
  std::vector<ChatMessage> prompt;  // the conversation before the response (at least one user turn)
  std::string chosen, rejected;     // the two assistant responses
  int64_t line = 0;                 // 1-based line in its file
};

struct PreferenceData {
  std::vector<std::string> files;  // the jsonl files read, in order
  std::vector<PreferenceExample> rows;
  int64_t skipped_empty = 0;  // rows with an empty prompt, chosen or rejected
};

// The files of a dataset split. `dataset` "ultrafeedback": the *.jsonl files under data_dir/ultrafeedback,
// sorted; split "train" takes those whose name contains neither "eval" nor "test", split "test" those that
// do (an Error listing what is there when none match). Any other `dataset` is a jsonl path, used for both
// splits. Errors say how to fetch the data.
std::vector<std::string> preference_files(const std::string& dataset, const std::string& data_dir,
                                          const std::string& split);

// Reads and validates the files.
PreferenceData load_preferences(const std::vector<std::string>& files);

// One pair in one model's tokens, as TRL's DPO builds it: the prompt rendered with the chat template and its
// generation prompt; each response = the full conversation's rendering minus the prompt's (the answer and the
// template's end-of-turn markup); prompt and responses tokenized separately and concatenated.
struct PairTokens {
  std::vector<int64_t> prompt, chosen, rejected;
  bool truncated = false;
};

struct TruncationSettings {
  int64_t max_length = 1024, max_prompt_length = 512;
  bool keep_end = true;  // of a too-long prompt, keep the end (TRL's default) or the start
};

// TRL's rule: when prompt + the longer response exceed max_length, the prompt is cut to max_prompt_length
// (keeping its end or start); if still too long, both responses are cut to max_length - prompt length.
void truncate_pair(PairTokens& p, const TruncationSettings& t);

PairTokens tokenize_pair(const Tokenizer& tok, const ChatFormat& chat, const PreferenceExample& ex,
                         const TruncationSettings& t);

}  // namespace multiref
