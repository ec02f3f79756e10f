// Prompt datasets of online training (`multiref grpo --dataset PATH`): a .jsonl file (the train split), or a
// directory holding train.jsonl and optionally test.jsonl. Each row is one of
//   {"prompt": "text"}     a user turn, wrapped in the policy's chat template (after an optional system prompt)
//   {"messages": [...]}    a conversation, rendered with the chat template and the generation prompt
//   {"prompt_ids": [...]}  pre-tokenized, used as-is: no tokenizer needed
// and every other field of the row is kept and handed to the rewards (e.g. "answer" for exact_match). A bad row
// is an error naming its file and line.
#pragma once
#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "tokenizer/chat_template.h"

namespace multiref {

class Tokenizer;

enum class PromptKind { Text, Messages, Ids };

struct PromptRow {
  PromptKind kind = PromptKind::Text;
  std::string text;                                  // Text
  std::vector<ChatMessage> messages;                 // Messages
  std::vector<int64_t> ids;                          // Ids
  nlohmann::json fields = nlohmann::json::object();  // the row's other fields
  std::string where;                                 // "file:line"
};

// The rows of `split` ("train" or "test"). A .jsonl path is the train split (its test split is empty); a directory
// holds train.jsonl and optionally test.jsonl (a missing test.jsonl is an empty split, a missing train.jsonl an
// error saying what the directory must hold).
std::vector<PromptRow> load_prompt_rows(const std::string& path, const std::string& split);

// The row's prompt as token ids, left-truncated to `max_len` (the generation prompt at the end must survive):
// Ids as they are; Text as [system_prompt,] user turn and Messages as given, both through `chat` and `tok` with the
// generation prompt. Text and Messages without a tokenizer are an error naming the row.
std::vector<int64_t> prompt_row_ids(const PromptRow& row, const Tokenizer* tok, const ChatFormat* chat,
                                    const std::string& system_prompt, int64_t max_len);

}  // namespace multiref
