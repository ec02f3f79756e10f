// `multiref eval gsm8k`: accuracy of a model on GSM8K; `multiref eval rm`: a policy's mean reward and win rates
// under a reward model; `multiref eval task`: the mean of each reward on any prompt dataset. All print JSON on
// stdout and a table on stderr.
#include <iostream>

#include "cli/commands.h"
#include "eval/eval_gsm8k.h"
#include "eval/eval_rm.h"
#include "eval/eval_task.h"
#include "generation/generation.h"
#include "io/hf_model.h"
#include "io/hub.h"
#include "util/common.h"
#include "util/dtype_flag.h"
#include "util/flags.h"
#include "util/runtime.h"

namespace multiref {

namespace {

int eval_rm_main(int argc, char** argv) {
  EvalRmConfig cfg;
  FlagTable t("multiref eval rm",
              "A policy's mean reward under a reward model on held-out preference prompts, and its win rate against "
              "other models' responses or the dataset's chosen ones.");
  if (!parse_config(t, cfg, argc, argv, 3)) return 0;
  set_threads(cfg.threads);
  auto res = evaluate_rm(cfg);  // writes --output itself
  std::cerr << rm_eval_table(res);
  std::cout << res.dump(2) << "\n";
  return 0;
}

// How an evaluation decodes: greedy, or k samples per prompt.
void register_decoding_flags(FlagTable& t, Gsm8kEvalConfig& ec, int64_t* seed, const std::string& num_samples_help) {
  t.add("num_samples", &ec.num_samples, num_samples_help);
  t.add("temperature", &ec.temperature, "0 = greedy");
  t.add("top_p", &ec.top_p, "nucleus sampling (1 = off)");
  t.add("max_new_tokens", &ec.max_new_tokens, "tokens per completion");
  t.add("max_prompt_length", &ec.max_prompt_length, "prompts are left-truncated to this many tokens");
  t.add("batch_size", &ec.batch_size, "sequences decoded together");
  t.add("seed", seed, "sampling seed");
}

// The JSON result as a table on stderr, then on stdout, and atomically to `output` when given.
void report(const nlohmann::json& res, const std::string& output) {
  std::cerr << "| metric | value |\n|---|---|\n";
  for (auto& [k, v] : res.items())
    if (v.is_number()) std::cerr << "| " << k << " | " << v.dump() << " |\n";
  std::string text = res.dump(2) + "\n";
  if (!output.empty()) write_file_atomic(output, text);
  std::cout << text;
}

struct EvalTaskConfig : RewardFlags {
  std::string model, dataset, data_dir, split = "test", output, chat_template = "auto", system_prompt = "auto";
  int64_t limit = 0, seed = 0;
  int threads = 0;
  DTypeChoice dtype = DTypeChoice::Auto;
  DeviceChoice device = DeviceChoice::Auto;
  TaskEvalConfig ec;

  void register_flags(FlagTable& t) {
    t.add("model", &model, "model directory or hub id (a tokenizer is optional with prompt_ids data)");
    t.add("dataset", &dataset,
          "gsm8k, a .jsonl of prompt rows (all of it is evaluated), or a directory holding train.jsonl / test.jsonl; "
          "rows as for multiref grpo --dataset");
    t.add("data_dir", &data_dir, "data directory of --dataset gsm8k (default: $MULTIREF_DATA, else ./data)");
    t.add("split", &split, "train or test (for a directory or gsm8k)");
    t.add("limit", &limit, "evaluate the first N prompts (0 = all)");
    t.add("system_prompt", &system_prompt, "as for multiref grpo: auto = the paper's prompt on GSM8K rows, else none");
    register_reward_flags(t);
    register_decoding_flags(t, ec, &seed, "k samples per prompt: means over all samples, plus reward_max@k");
    register_dtype_flags(t, &dtype, nullptr);
    t.add("threads", &threads, "CPU threads (0 = one per core)");
    t.add_enum("device", &device, device_choices(), "where to run");
    t.add("chat_template", &chat_template, "auto, chatml, llama3, llama3.1 or plain");
    t.add("output", &output, "also write the JSON result here");
  }
  void validate() {
    if (model.empty()) fail("--model is required");
    if (dataset.empty()) fail("--dataset is required (gsm8k, a .jsonl file or a directory)");
    if (limit < 0) fail("--limit must be >= 0");
    if (split != "train" && split != "test") fail("--split '", split, "': expected train or test");
    if (ec.max_new_tokens < 1 || ec.max_prompt_length < 1)
      fail("--max_new_tokens and --max_prompt_length must be >= 1");
    eval_generation_config(ec).validate();
    validate_reward_flags();
  }
};

int eval_task_main(int argc, char** argv) {
  EvalTaskConfig cfg;
  FlagTable t("multiref eval task",
              "The mean of each reward (and of their weighted total) over a model's completions of a prompt dataset: "
              "a policy scored the way it was trained.");
  if (!parse_config(t, cfg, argc, argv, 3)) return 0;
  // The data before any model: a bad row fails at once.
  // A directory (or gsm8k) has splits; a single .jsonl file is evaluated whole.
  bool has_splits = dir_exists(cfg.dataset) || cfg.dataset == "gsm8k";
  auto rows = has_splits
                  ? load_task_rows(cfg.dataset, cfg.data_dir.empty() ? default_data_dir() : cfg.data_dir, cfg.split)
                  : load_prompt_rows(cfg.dataset, "train");
  if (rows.empty())
    fail(cfg.dataset, ": the ", cfg.split, " split has no rows (", cfg.dataset, "/", cfg.split, ".jsonl)");
  if (cfg.limit > 0 && (size_t)cfg.limit < rows.size()) rows.resize((size_t)cfg.limit);
  if (!cfg.any()) {
    if (!are_gsm8k_rows(rows)) fail("no reward: give --reward, --reward_model or --reward_program");
    cfg.reward = "gsm8k_xml";
  }
  set_threads(cfg.threads);
  auto dev = resolve_device(cfg.device);
  auto dtype = resolve_dtype(cfg.dtype, dev);
  auto lm = load_model(cfg.model, dtype, dev);
  std::shared_ptr<const Tokenizer> tok;
  std::optional<ChatFormat> chat;
  if (has_tokenizer(lm.dir)) {
    auto tok_dir = resolve_tokenizer_dir(lm.dir);
    tok = Tokenizer::load(tok_dir);
    chat = resolve_chat_format(tok->chat_template, tok->bos_token, cfg.chat_template, tok_dir);
  }
  std::string system = resolve_system_prompt(cfg.system_prompt, rows);
  std::vector<TaskPrompt> prompts;
  for (auto& row : rows)
    prompts.push_back(task_prompt(row, tok.get(), chat ? &*chat : nullptr, system, cfg.ec.max_prompt_length));
  TaskRewards rewards(cfg, tok != nullptr, cfg.ec.max_new_tokens, dtype, dev);
  cfg.ec.seed = (uint64_t)cfg.seed;
  cfg.ec.eos_ids = generation_eos_ids(lm.dir, lm.config, tok.get());
  auto res = evaluate_task(lm.model, tok.get(), prompts, rewards, cfg.ec);
  res["model"] = cfg.model;
  res["dataset"] = cfg.dataset;
  res["split"] = has_splits ? cfg.split : "all";
  report(res, cfg.output);
  return 0;
}

int eval_gsm8k_main(int argc, char** argv) {
  std::string model, dataset = "gsm8k", data_dir, split = "test", output, chat_template = "auto";
  int64_t limit = 0;
  int threads = 0;
  bool bf16 = false;
  DTypeChoice dtype = DTypeChoice::Auto;
  Gsm8kEvalConfig ec;
  int64_t seed = 0;
  DeviceChoice device = DeviceChoice::Auto;
  FlagTable t("multiref eval gsm8k", "GSM8K accuracy (numeric match of the final answer), format rate, length.");
  t.add("model", &model, "model directory or hub id");
  t.add("dataset", &dataset, "gsm8k or a jsonl file of {question, answer}");
  t.add("data_dir", &data_dir, "data directory (default: $MULTIREF_DATA, else ./data)");
  t.add("split", &split, "train or test");
  t.add("limit", &limit, "evaluate the first N questions (0 = all)");
  register_decoding_flags(t, ec, &seed, "k samples per question: accuracy is mean@k, plus pass@k");
  register_dtype_flags(t, &dtype, &bf16);
  t.add("threads", &threads, "CPU threads (0 = one per core)");
  t.add_enum("device", &device, device_choices(), "where to run");
  t.add("chat_template", &chat_template, "auto, chatml, llama3, llama3.1 or plain");
  t.add("output", &output, "also write the JSON result here");
  t.parse(argc, argv, 3);
  if (t.help_requested()) {
    std::cout << t.help();
    return 0;
  }
  if (model.empty()) fail("--model is required");
  if (limit < 0) fail("--limit must be >= 0");
  resolve_bf16_alias(dtype, bf16);
  set_threads(threads);
  auto dev = resolve_device(device);
  auto lm = load_model(model, resolve_dtype(dtype, dev), dev);
  auto tok = Tokenizer::load(resolve_tokenizer_dir(lm.dir));
  auto chat = resolve_chat_format(tok->chat_template, tok->bos_token, chat_template, lm.dir);
  auto problems = load_gsm8k(dataset, data_dir.empty() ? default_data_dir() : data_dir, split);
  if (limit > 0 && (size_t)limit < problems.size()) problems.resize((size_t)limit);
  ec.seed = (uint64_t)seed;
  ec.eos_ids = generation_eos_ids(lm.dir, lm.config, tok.get());
  auto res = evaluate_gsm8k(lm.model, *tok, chat, problems, ec);
  res["model"] = model;
  res["split"] = split;
  report(res, output);
  return 0;
}

}  // namespace

int cmd_eval(int argc, char** argv) {
  std::string what = argc < 3 ? "" : argv[2];
  if (what == "gsm8k") return eval_gsm8k_main(argc, argv);
  if (what == "rm") return eval_rm_main(argc, argv);
  if (what == "task") return eval_task_main(argc, argv);
  fail(
      "usage: multiref eval gsm8k --model M [flags], multiref eval rm --model M --rm_name RM [flags], or multiref "
      "eval task --model M --dataset D --reward ... [flags] (add --help for the flags)",
      what.empty() ? "" : cat("; unknown evaluation '", what, "'"));
}

}  // namespace multiref
