// `multiref reward`: the scalar reward of each token sequence or conversation under a reward model.
#include <iostream>

#include "cli/commands.h"
#include "model/reward_model.h"
#include "tokenizer/chat_template.h"
#include "util/common.h"
#include "util/dtype_flag.h"
#include "util/flags.h"
#include "util/json_text.h"
#include "util/jsonl.h"
#include "util/runtime.h"

namespace multiref {

namespace {

struct RewardConfig {
  std::string model, input, output;
  int64_t batch_size = 8;
  std::string chat_template = "auto";
  DTypeChoice dtype = DTypeChoice::Auto;
  DeviceChoice device = DeviceChoice::Auto;
  int threads = 0;

  void register_flags(FlagTable& t) {
    t.add("model", &model, "reward model: a *ForSequenceClassification directory or hub id (num_labels = 1)");
    t.add("input", &input,
          "jsonl: {\"input_ids\": [...]} (scored as-is) or {\"messages\": [...]} (the reward model's "
          "chat template, no generation prompt, and its tokenizer) per line");
    t.add("output", &output, "jsonl: {\"reward\": r} per input line, in input order (written only when all succeed)");
    t.add("batch_size", &batch_size, "sequences per forward pass (batched by length; results do not depend on it)");
    t.add("chat_template", &chat_template,
          "for messages: auto (from tokenizer_config.json), chatml, llama3, llama3.1, plain");
    register_dtype_flags(t, &dtype, nullptr);
    t.add_enum("device", &device, device_choices(), "where to run");
    t.add("threads", &threads, "CPU threads (0 = one per core)");
  }
  void validate() const {
    if (model.empty()) fail("--model is required (a reward model directory or hub id)");
    if (input.empty()) fail("--input is required (a jsonl file of {\"input_ids\"} or {\"messages\"} lines)");
    if (output.empty()) fail("--output is required (a jsonl file to write)");
    if (batch_size < 1) fail("--batch_size must be >= 1, got ", batch_size);
    if (chat_template != "auto") parse_chat_template_name(chat_template);
  }
};

}  // namespace

int cmd_reward(int argc, char** argv) {
  RewardConfig cfg;
  FlagTable flags("multiref reward", "The scalar reward of each sequence or conversation under a reward model.");
  if (!parse_config(flags, cfg, argc, argv, 2)) return 0;
  set_threads(cfg.threads);
  // The input is read before the model loads, so a malformed file fails at once.
  auto rows = read_jsonl(cfg.input);
  auto device = resolve_device(cfg.device);
  auto rm = load_reward_model(cfg.model, resolve_dtype(cfg.dtype, device), device, cfg.chat_template);
  std::vector<std::vector<int64_t>> seqs;
  std::vector<std::string> names;
  for (auto& [j, where] : rows) {
    bool has_ids = j.contains("input_ids"), has_messages = j.contains("messages");
    if (has_ids == has_messages)
      fail(where, ": expected exactly one of {\"input_ids\": [...]} or {\"messages\": [{\"role\", \"content\"}, ...]}");
    std::vector<int64_t> ids;
    if (has_ids) {
      if (!j["input_ids"].is_array()) fail(where, ": input_ids must be an array of token ids");
      for (auto& v : j["input_ids"]) {
        if (!v.is_number_integer()) fail(where, ": input_ids must hold integers, got ", json_excerpt(v));
        ids.push_back(v.get<int64_t>());
      }
    } else {
      ids = conversation_ids(rm, parse_messages(j["messages"], where));
    }
    seqs.push_back(std::move(ids));
    names.push_back(where);
  }
  double t0 = now_seconds();
  auto rewards = score_ids(rm, seqs, cfg.batch_size, names);
  std::string out;
  for (double r : rewards) out += nlohmann::json{{"reward", r}}.dump() + "\n";
  write_file_atomic(cfg.output, out);
  std::cerr << "reward: " << rewards.size() << " sequences in " << now_seconds() - t0 << " s\n";
  return 0;
}

}  // namespace multiref
