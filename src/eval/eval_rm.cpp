#include "eval/eval_rm.h"

#include <algorithm>
#include <iomanip>
#include <iostream>
#include <set>

#include "data/gsm8k.h"
#include "generation/generation.h"
#include "io/hf_model.h"
#include "io/hub.h"
#include "model/reward_model.h"
#include "tokenizer/tokenizer.h"
#include "util/common.h"
#include "util/dtype_flag.h"
#include "util/keep_last.h"

namespace multiref {

std::vector<RmComparison> parse_rm_comparisons(const std::vector<std::string>& entries) {
  std::vector<RmComparison> out;
  std::set<std::string> names;
  for (const auto& raw : entries) {
    auto e = trim(raw);
    RmComparison c;
    if (e == "chosen") {
      c.name = "chosen";
    } else {
      // Split at the first '=': a model path may itself contain one, a name may not.
      auto eq = e.find('=');
      c.name = eq == std::string::npos ? e : trim(e.substr(0, eq));
      c.model = eq == std::string::npos ? e : trim(e.substr(eq + 1));
      if (c.name.empty() || c.model.empty())
        fail("--compare '", raw, "': expected chosen, NAME=MODEL or MODEL (a directory or hub id)");
    }
    if (c.name == "policy") fail("--compare '", raw, "': the name 'policy' is the evaluated model's; pick another");
    if (!names.insert(c.name).second)
      fail("--compare: the name '", c.name, "' appears twice; name the entries apart (NAME=MODEL)");
    out.push_back(std::move(c));
  }
  return out;
}

void EvalRmConfig::register_flags(FlagTable& t) {
  t.add("model", &model, "the policy: a causal LM directory or hub id (with its tokenizer)");
  t.add("rm_name", &rm_name, "the reward model: a *ForSequenceClassification directory or hub id (num_labels = 1)");
  t.add("dataset", &dataset, "ultrafeedback (jsonl files under DATA_DIR/ultrafeedback) or a preference jsonl file");
  t.add("data_dir", &data_dir, "data directory (empty: $MULTIREF_DATA, else ./data)");
  t.add("split", &split, "train or test (held-out prompts: test)");
  t.add("num_prompts", &num_prompts, "evaluate the first N prompts of the split (0 = all)");
  t.add("max_new_tokens", &max_new_tokens, "tokens per response at most");
  t.add("max_prompt_length", &max_prompt_length,
        "prompts longer than this keep their last N tokens, as DPO training truncates them (0 = whole prompts)");
  t.add("temperature", &temperature, "sampling temperature of every generating model (0 = greedy)");
  t.add("top_p", &top_p, "nucleus sampling, in (0, 1] (1 = off)");
  t.add("compare", &compare,
        "comparisons, comma-separated: chosen (the dataset's chosen response), NAME=MODEL or MODEL (another model "
        "generating the same way; named by its path)");
  t.add("seed", &seed, "sampling seed, the same for every generating model");
  t.add("batch_size", &batch_size, "sequences generated / scored together");
  register_dtype_flags(t, &dtype, &bf16);
  t.add_enum("device", &device, device_choices(), "where to run");
  t.add("chat_template", &chat_template,
        "of the generating models: auto (each its own), chatml, llama3, llama3.1, plain");
  t.add("rm_chat_template", &rm_chat_template, "of the reward model: auto, chatml, llama3, llama3.1, plain");
  t.add("threads", &threads, "CPU threads (0 = one per core)");
  t.add("output", &output, "also write the JSON result here");
  t.add("responses_output", &responses_output,
        "jsonl: per prompt, its line, messages, and each system's response and reward");
}

void EvalRmConfig::validate() const {
  DTypeChoice dt = dtype;
  resolve_bf16_alias(dt, bf16);
  if (model.empty()) fail("--model is required: the policy (a causal LM directory or hub id) to evaluate");
  if (rm_name.empty())
    fail(
        "--rm_name is required: the reward model (a *ForSequenceClassification directory or hub id) that scores "
        "the responses");
  if (num_prompts < 0) fail("--num_prompts must be >= 0 (0 = all), got ", num_prompts);
  if (max_new_tokens < 1) fail("--max_new_tokens must be >= 1, got ", max_new_tokens);
  if (max_prompt_length < 0) fail("--max_prompt_length must be >= 0 (0 = whole prompts), got ", max_prompt_length);
  if (batch_size < 1) fail("--batch_size must be >= 1, got ", batch_size);
  if (seed < 0) fail("--seed must be >= 0, got ", seed);
  SamplingParams{temperature, 0, top_p, 0.0}.validate();
  if (chat_template != "auto") parse_chat_template_name(chat_template);
  if (rm_chat_template != "auto") parse_chat_template_name(rm_chat_template);
  parse_rm_comparisons(compare);
}

namespace {

// The config-level checks of a generating model, so a wrong path fails before any generation runs.
void check_generator(const std::string& id, const std::string& flag) {
  auto dir = resolve_model_dir(id);
  auto c = load_model_config(dir);
  if (c.head != ModelHead::CausalLM)
    fail(flag, " ", id, ": is a ", c.architecture, "; generating responses needs a causal LM");
  resolve_tokenizer_dir(dir);  // its own tokenizer renders the prompts and reads the responses
}

// One response per prompt from model `id`: its tokenizer and chat format (with the generation prompt), its eos
// ids, cfg's sampling and seed. The model is freed on return.
std::vector<std::string> generate_responses(const std::string& id, const std::vector<PreferenceExample>& rows,
                                            const EvalRmConfig& cfg, torch::ScalarType dtype, torch::Device dev) {
  auto lm = load_model(id, dtype, dev);
  auto tok = Tokenizer::load(resolve_tokenizer_dir(lm.dir));
  auto chat = resolve_chat_format(tok->chat_template, tok->bos_token, cfg.chat_template, lm.dir);
  std::vector<std::vector<int64_t>> prompts;
  int64_t truncated = 0;
  for (size_t i = 0; i < rows.size(); ++i) {
    prompts.push_back(tok->encode(chat.render(rows[i].prompt, /*add_generation_prompt=*/true)));
    auto& p = prompts.back();
    if (cfg.max_prompt_length > 0) truncated += keep_last(p, cfg.max_prompt_length);
    if ((int64_t)prompts.back().size() >= lm.config.max_position_embeddings)
      fail("prompt ", i, " (line ", rows[i].line, "): ", prompts.back().size(), " tokens under ", id,
           "'s chat template leave no room for a response in its context of ", lm.config.max_position_embeddings,
           " tokens; evaluate a model with a longer context, or on data whose prompts fit");
  }
  if (truncated && cfg.progress)
    std::cerr << "eval rm: " << id << ": " << truncated << " of " << rows.size() << " prompts truncated to their last "
              << cfg.max_prompt_length << " tokens (--max_prompt_length)\n";
  GenerationConfig g;
  g.max_new_tokens = cfg.max_new_tokens;
  g.sampling.temperature = cfg.temperature;
  g.sampling.top_p = cfg.top_p;
  g.eos_ids = generation_eos_ids(lm.dir, lm.config, tok.get());
  g.seed = (uint64_t)cfg.seed;
  g.batch_size = cfg.batch_size;
  g.validate();
  double t0 = now_seconds();
  auto res = generate(lm.model, prompts, g);
  std::vector<std::string> out;
  for (auto& c : res.sequences) out.push_back(tok->decode(c.ids, /*skip_special_tokens=*/true));  // eos dropped
  if (cfg.progress)
    std::cerr << "eval rm: " << id << " generated " << res.stats.generated_tokens << " tokens for " << rows.size()
              << " prompts in " << std::fixed << std::setprecision(1) << now_seconds() - t0 << " s\n"
              << std::defaultfloat;
  return out;
}

double mean(const std::vector<double>& v) {
  double s = 0;
  for (double x : v) s += x;
  return v.empty() ? 0.0 : s / (double)v.size();
}

}  // namespace

nlohmann::json evaluate_rm(const EvalRmConfig& cfg, const std::vector<PreferenceExample>& rows) {
  cfg.validate();
  if (rows.empty()) fail("eval rm: no prompts to evaluate");
  auto comparisons = parse_rm_comparisons(cfg.compare);
  // Every model is checked before the first one generates: a typo must not cost a whole generation pass.
  reward_model_config(cfg.rm_name);
  auto rm_dir = resolve_model_dir(cfg.rm_name);
  if (!file_exists(join_path(rm_dir, "tokenizer.json")) && !file_exists(join_path(rm_dir, "vocab.json")) &&
      !file_exists(join_path(rm_dir, "tokenizer.model")))
    fail("--rm_name ", cfg.rm_name,
         ": has no tokenizer files (tokenizer.json, vocab.json or tokenizer.model); the "
         "reward model reads the conversations with its own tokenizer, so copy it into the model directory");
  check_generator(cfg.model, "--model");
  for (auto& c : comparisons)
    if (!c.chosen()) check_generator(c.model, "--compare " + c.name + "=");
  auto dev = resolve_device(cfg.device);
  DTypeChoice dt = cfg.dtype;
  resolve_bf16_alias(dt, cfg.bf16);
  auto dtype = resolve_dtype(dt, dev);
  double t0 = now_seconds();

  // names[0] = "policy", then the comparisons in --compare order; responses[s][i] for system s, prompt i.
  std::vector<std::string> names = {"policy"};
  std::vector<std::vector<std::string>> responses;
  responses.push_back(generate_responses(cfg.model, rows, cfg, dtype, dev));
  for (auto& c : comparisons) {
    names.push_back(c.name);
    if (c.chosen()) {
      std::vector<std::string> r;
      for (auto& row : rows) r.push_back(row.chosen);
      responses.push_back(std::move(r));
    } else {
      responses.push_back(generate_responses(c.model, rows, cfg, dtype, dev));
    }
  }

  // One scoring call per system: identical responses then run in identical batches and get bitwise-equal
  // rewards, so a system compared with itself ties on every prompt.
  auto rm = load_reward_model(cfg.rm_name, dtype, dev, cfg.rm_chat_template);
  std::vector<std::vector<double>> rewards;
  int64_t rm_ctx = rm.lm.config.max_position_embeddings, cut = 0;
  for (size_t s = 0; s < names.size(); ++s) {
    std::vector<std::vector<int64_t>> seqs;
    std::vector<std::string> where;
    for (size_t i = 0; i < rows.size(); ++i) {
      auto conv = rows[i].prompt;
      conv.push_back({"assistant", responses[s][i]});
      seqs.push_back(conversation_ids(rm, conv));
      // With prompt truncation on (as in training), a conversation longer than the reward model's context keeps
      // its end: the response and the prompt's last turns, which is what the reward reads at the last token.
      if (cfg.max_prompt_length > 0) cut += keep_last(seqs.back(), rm_ctx);
      where.push_back(cat("prompt ", i, " (line ", rows[i].line, ") with the response of ", names[s]));
    }
    rewards.push_back(score_ids(rm, seqs, cfg.batch_size, where));
  }
  if (cut && cfg.progress)
    std::cerr << "eval rm: " << cut << " conversations cut to the reward model's context of " << rm_ctx
              << " tokens (their end kept)\n";

  nlohmann::json out = {{"num_prompts", rows.size()}};
  for (size_t s = 0; s < names.size(); ++s) out["reward/" + names[s]] = mean(rewards[s]);
  for (size_t s = 1; s < names.size(); ++s) {
    double wins = 0;
    for (size_t i = 0; i < rows.size(); ++i)
      wins += rewards[0][i] > rewards[s][i] ? 1.0 : rewards[0][i] == rewards[s][i] ? 0.5 : 0.0;
    out["win_rate/" + names[s]] = wins / (double)rows.size();
  }
  out["seconds"] = now_seconds() - t0;

  if (!cfg.responses_output.empty()) {
    std::string text;
    for (size_t i = 0; i < rows.size(); ++i) {
      nlohmann::json msgs = nlohmann::json::array(), resp, rew;
      for (auto& m : rows[i].prompt) msgs.push_back({{"role", m.role}, {"content", m.content}});
      for (size_t s = 0; s < names.size(); ++s) {
        resp[names[s]] = responses[s][i];
        rew[names[s]] = rewards[s][i];
      }
      text +=
          nlohmann::json{{"line", rows[i].line}, {"prompt", msgs}, {"responses", resp}, {"rewards", rew}}.dump() + "\n";
    }
    write_file_atomic(cfg.responses_output, text);
  }
  if (!cfg.output.empty()) write_file_atomic(cfg.output, out.dump(2) + "\n");
  return out;
}

nlohmann::json evaluate_rm(const EvalRmConfig& cfg) {
  cfg.validate();
  auto data = load_preferences(
      preference_files(cfg.dataset, cfg.data_dir.empty() ? default_data_dir() : cfg.data_dir, cfg.split));
  auto rows = std::move(data.rows);
  if (cfg.num_prompts > 0 && (size_t)cfg.num_prompts < rows.size()) rows.resize((size_t)cfg.num_prompts);
  if (cfg.progress && cfg.num_prompts > 0 && (size_t)cfg.num_prompts > rows.size())
    std::cerr << "eval rm: the " << cfg.split << " split has only " << rows.size() << " usable prompts (asked for "
              << cfg.num_prompts << ")\n";
  return evaluate_rm(cfg, rows);
}

std::string rm_eval_table(const nlohmann::json& result) {
  std::ostringstream os;
  os << "| system | mean reward | policy win rate |\n|---|---|---|\n";
  auto line = [&](const std::string& name) {
    os << "| " << name << " | " << std::fixed << std::setprecision(4) << result["reward/" + name].get<double>()
       << " | ";
    if (result.contains("win_rate/" + name))
      os << std::setprecision(3) << result["win_rate/" + name].get<double>();
    else
      os << "-";
    os << " |\n";
  };
  line("policy");
  for (auto& [k, v] : result.items())
    if (k.rfind("reward/", 0) == 0 && k != "reward/policy") line(k.substr(7));
  os << "(" << result["num_prompts"].get<int64_t>() << " prompts)\n";
  return os.str();
}

}  // namespace multiref
