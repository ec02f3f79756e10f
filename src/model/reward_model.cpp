#include "model/reward_model.h"

#include <algorithm>
#include <numeric>

#include "io/hub.h"
#include "model/batching.h"
#include "util/common.h"

namespace multiref {

namespace {

std::string row_name(const std::vector<std::string>& names, size_t i) {
  return i < names.size() ? names[i] : cat("sequence ", i);
}

const ChatFormat& chat_format(RewardModel& rm) {
  if (!rm.chat) {
    if (!rm.tok)
      fail(rm.id,
           ": this reward model has no tokenizer files (tokenizer.json, vocab.json or tokenizer.model), so "
           "conversations cannot be tokenized: give token ids ({\"input_ids\": [...]}) or copy its tokenizer "
           "into the model directory");
    rm.chat = resolve_chat_format(rm.tok->chat_template, rm.tok->bos_token, rm.chat_template, rm.tok->source);
  }
  return *rm.chat;
}

}  // namespace

ModelConfig reward_model_config(const std::string& id) {
  auto config = load_model_config(resolve_model_dir(id));
  if (config.head != ModelHead::SequenceClassification)
    fail(id, ": is a ", config.architecture,
         ", not a reward model; a reward model is a *ForSequenceClassification checkpoint (Qwen2 or Llama) whose "
         "score head rates the last token (`multiref init --head seq_cls` writes a random one)");
  if (config.num_labels != 1)
    fail(id, ": the score head has ", config.num_labels,
         " outputs (num_labels); a reward model has exactly one, the scalar reward");
  return config;
}

RewardModel load_reward_model(const std::string& id, torch::ScalarType dtype, torch::Device dev,
                              const std::string& chat_template) {
  if (!chat_template.empty() && chat_template != "auto") parse_chat_template_name(chat_template);
  reward_model_config(id);  // a wrong model fails before gigabytes of weights are read
  RewardModel rm;
  rm.id = id;
  rm.chat_template = chat_template.empty() ? "auto" : chat_template;
  rm.lm = load_model(id, dtype, dev);
  rm.lm.model->eval();
  if (has_tokenizer(rm.lm.dir)) rm.tok = Tokenizer::load(rm.lm.dir);
  return rm;
}

std::vector<double> score_ids(RewardModel& rm, const std::vector<std::vector<int64_t>>& seqs, int64_t batch_size,
                              const std::vector<std::string>& names) {
  if (batch_size < 1) fail("reward model batch size must be >= 1, got ", batch_size);
  const auto& c = rm.lm.config;
  for (size_t i = 0; i < seqs.size(); ++i) {
    if (seqs[i].empty()) fail(row_name(names, i), ": the sequence is empty; a reward needs at least one token");
    if ((int64_t)seqs[i].size() > c.max_position_embeddings)
      fail(row_name(names, i), ": ", seqs[i].size(), " tokens exceed the reward model's context of ",
           c.max_position_embeddings, " (max_position_embeddings of ", rm.id, "); shorten the conversation");
    for (int64_t id : seqs[i])
      if (id < 0 || id >= c.vocab_size)
        fail(row_name(names, i), ": token id ", id, " is outside the reward model's vocabulary [0, ", c.vocab_size,
             ")");
  }
  // Batches of similar lengths (longest first); rewards return to input order.
  std::vector<size_t> lengths;
  for (auto& s : seqs) lengths.push_back(s.size());
  // The pad value is irrelevant (the mask hides it from attention and sequence_scores reads the last masked-in
  // position); the config's pad id keeps the padded batch what HF would build.
  int64_t pad = c.pad_token_id.value_or(0);
  auto device = rm.lm.model->score->weight.device();
  std::vector<double> out(seqs.size());
  torch::NoGradGuard no_grad;
  for (const auto& batch : longest_first_batches(lengths, (size_t)batch_size)) {
    std::vector<const TokenRow*> rows;
    for (size_t i : batch) rows.push_back(&seqs[i]);
    auto padded = pad_right(rows, pad);                                                         // [n, T]
    auto scores = rm.lm.model->sequence_scores(padded.ids.to(device), padded.mask.to(device));  // [n, 1] fp32
    auto cpu = scores.to(torch::kCPU, torch::kFloat64).contiguous();
    const double* p = cpu.data_ptr<double>();
    for (size_t i = 0; i < batch.size(); ++i) out[batch[i]] = p[i];
  }
  return out;
}

std::vector<int64_t> conversation_ids(RewardModel& rm, const std::vector<ChatMessage>& conv) {
  const auto& chat = chat_format(rm);
  return rm.tok->encode(chat.render(conv, /*add_generation_prompt=*/false), /*add_special_tokens=*/false);
}

std::vector<double> score_conversations(RewardModel& rm, const std::vector<std::vector<ChatMessage>>& convs,
                                        int64_t batch_size, const std::vector<std::string>& names) {
  std::vector<std::vector<int64_t>> seqs;
  seqs.reserve(convs.size());
  for (size_t i = 0; i < convs.size(); ++i) {
    if (convs[i].empty()) fail(row_name(names, i), ": the conversation has no messages");
    seqs.push_back(conversation_ids(rm, convs[i]));
  }
  return score_ids(rm, seqs, batch_size, names);
}

}  // namespace multiref
