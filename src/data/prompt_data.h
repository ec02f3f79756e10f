// Prompt datasets of online training (`multiref grpo --dataset ...`, `multiref eval task`): `gsm8k` (the GSM8K
// release under the data directory), a .jsonl file (the train split), or a directory holding train.jsonl and
// optionally test.jsonl. Each row is one of
//   {"prompt": "text"}      a user turn, wrapped in the policy's chat template (after an optional system prompt)
//   {"messages": [...]}     a conversation, rendered with the chat template and the generation prompt
//   {"prompt_ids": [...]}   pre-tokenized, used as-is: no tokenizer needed
//   {"question": "text"}    GSM8K's own rows ({"question", "answer"}): read like "prompt"
// and the whole row is kept and handed to the rewards (e.g. "answer" for exact_match). A bad row is an error naming
// its file and line.
#pragma once
#include <cstdint>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "data/gsm8k.h"
#include "tokenizer/chat_template.h"

namespace multiref {

class Tokenizer;

enum class PromptKind { Text, Messages, Ids };

struct PromptRow {
  PromptKind kind = PromptKind::Text;
  std::string text;                               // Text
  std::vector<ChatMessage> messages;              // Messages
  std::vector<int64_t> ids;                       // Ids
  nlohmann::json row = nlohmann::json::object();  // the row as written, every field
  bool gsm8k = false;                             // a GSM8K row: the text came from "question"
  std::string where;                              // "file:line"
};

// The rows of `split` ("train" or "test"). A .jsonl path is the train split (its test split is empty); a directory
// holds train.jsonl and optionally test.jsonl (a missing test.jsonl is an empty split, a missing train.jsonl an
// error saying what the directory must hold).
std::vector<PromptRow> load_prompt_rows(const std::string& path, const std::string& split);

// `--dataset`: "gsm8k" reads data_dir/gsm8k/<split>.jsonl as load_gsm8k does (its checks and its fetch hint), as
// GSM8K prompt rows; anything else is load_prompt_rows(dataset, split).
std::vector<PromptRow> load_task_rows(const std::string& dataset, const std::string& data_dir,
                                      const std::string& split);

// True when every row is a GSM8K row (and there is at least one).
bool are_gsm8k_rows(const std::vector<PromptRow>& rows);
// `--system_prompt`: "auto" is the paper code's GSM8K system prompt for GSM8K rows and none for any other data;
// anything else (also "") is used as given.
std::string resolve_system_prompt(const std::string& flag, const std::vector<PromptRow>& rows);

// The GSM8K problem of a row with a string "answer": a worked solution ending in "#### final", or the final
// answer alone. Errors name the row.
MathProblem gsm8k_problem(const PromptRow& row);

// The row's prompt as token ids, left-truncated to `max_len` (the generation prompt at the end must survive):
// Ids as they are; Text as [system_prompt,] user turn and Messages as given, both through `chat` and `tok` with the
// generation prompt. Text and Messages without a tokenizer are an error naming the row.
std::vector<int64_t> prompt_row_ids(const PromptRow& row, const Tokenizer* tok, const ChatFormat* chat,
                                    const std::string& system_prompt, int64_t max_len);

// A prompt as the rewards see it.
struct TaskPrompt {
  const PromptRow* row = nullptr;
  std::vector<int64_t> ids;         // what the policy is given (prompt_row_ids)
  std::optional<std::string> text;  // ids decoded, special tokens kept (only with a tokenizer)
  std::vector<ChatMessage> turns;   // the conversation before the response, for reward models (with a tokenizer):
                                    // Text: [system,] user; Messages: as given; Ids: one user turn, decoded
};
TaskPrompt task_prompt(const PromptRow& row, const Tokenizer* tok, const ChatFormat* chat,
                       const std::string& system_prompt, int64_t max_len);

}  // namespace multiref
