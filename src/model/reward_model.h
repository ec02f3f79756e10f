// Reward models: a Hugging Face *ForSequenceClassification checkpoint with one output (num_labels == 1),
// its own tokenizer and its own chat format. The reward of a sequence is the score head's output at its last
// token, as HF's reward models (and TRL's RewardTrainer) define it. Used by `multiref reward`, by
// `multiref eval rm` and by the trainers' end-of-training evaluation.
#pragma once
#include <torch/torch.h>

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "io/hf_model.h"
#include "tokenizer/chat_template.h"
#include "tokenizer/tokenizer.h"

namespace multiref {

struct RewardModel {
  std::string id;  // as given (directory or hub id), for messages
  LoadedModel lm;  // head == SequenceClassification, num_labels == 1
  // Null when the directory carries no tokenizer: such a model scores token ids only (score_ids).
  std::shared_ptr<const Tokenizer> tok;
  std::string chat_template = "auto";  // --chat_template override, or "auto" (from tokenizer_config.json)
  // Resolved on first use, so a model whose tokenizer has no chat template still scores token ids.
  std::optional<ChatFormat> chat;
};

// Reads and checks only config.json of `id` (cheap): the errors of load_reward_model below, before any
// weights are read. Returns the resolved config.
ModelConfig reward_model_config(const std::string& id);

// Loads the checkpoint `id` in `dtype` on `dev`, with the tokenizer of its directory when it has one.
// Errors: a causal LM or any other head (saying what a reward model is), num_labels != 1, an unknown
// chat_template name.
RewardModel load_reward_model(const std::string& id, torch::ScalarType dtype, torch::Device dev,
                              const std::string& chat_template = "auto");

// Rewards of token sequences, in input order. Each sequence must be non-empty, hold ids of the model's
// vocabulary and fit its context (max_position_embeddings); else an Error naming the row: `names[i]` when
// given (e.g. "in.jsonl:3"), else "sequence i". Sequences are sorted by length and run batch_size at a time,
// right-padded with an attention mask (results do not depend on the batching beyond float rounding).
std::vector<double> score_ids(RewardModel& rm, const std::vector<std::vector<int64_t>>& seqs, int64_t batch_size,
                              const std::vector<std::string>& names = {});

// The token ids the reward model sees for a conversation: rendered with its chat format
// (add_generation_prompt = false: the conversation ends with the assistant's response), then tokenized
// without adding special tokens (the template writes BOS itself where the model has one).
std::vector<int64_t> conversation_ids(RewardModel& rm, const std::vector<ChatMessage>& conv);

// Rewards of whole conversations (typically [prompt turns..., {assistant: response}]), in input order.
std::vector<double> score_conversations(RewardModel& rm, const std::vector<std::vector<ChatMessage>>& convs,
                                        int64_t batch_size, const std::vector<std::string>& names = {});

}  // namespace multiref
