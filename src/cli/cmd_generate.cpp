// `multiref generate`: sample completions for prompts from a jsonl file, or stream one prompt's completion
// to the terminal.
#include <iostream>

#include "cli/commands.h"
#include "generation/decode_flags.h"
#include "generation/generation.h"
#include "io/hf_model.h"
#include "io/hub.h"
#include "tokenizer/chat_template.h"
#include "tokenizer/tokenizer.h"
#include "util/common.h"
#include "util/dtype_flag.h"
#include "util/flags.h"
#include "util/json_text.h"
#include "util/jsonl.h"
#include "util/runtime.h"
#include "util/unicode.h"

namespace multiref {

namespace {

struct GenerateConfig {
  std::string model, input, output, prompt, tokenizer, stop;
  int64_t max_new_tokens = 256;
  double temperature = 1.0, top_p = 1.0, min_p = 0.0;
  int64_t top_k = 0;
  int64_t num_return_sequences = 1;
  int64_t seed = 0;
  int64_t batch_size = 64;
  std::string chat_template = "auto";
  bool chat = false;
  bool add_special_tokens = true;
  bool use_cache = true;
  DecodeFlags decode;
  DTypeChoice dtype = DTypeChoice::Auto;
  DeviceChoice device = DeviceChoice::Auto;
  int threads = 0;

  void register_flags(FlagTable& t) {
    t.add("model", &model, "model directory or hub id (resolved in the local HF cache)");
    t.add("input", &input,
          "jsonl: {\"prompt_ids\":[...]} (used as-is), {\"prompt\": s} (tokenized) or {\"messages\": [...]} "
          "(chat template + generation prompt) per line");
    t.add("output", &output,
          "jsonl: per returned sequence {\"completion_ids\", \"completion_logprobs\", \"text\", "
          "\"finish_reason\"}, num_return_sequences consecutive lines per prompt, in input order");
    t.add("prompt", &prompt, "instead of --input/--output: one prompt whose completion streams to stdout");
    t.add("chat", &chat, "with --prompt: send it as one user message through the chat template");
    t.add("max_new_tokens", &max_new_tokens, "new tokens per sequence at most (fewer where the model's context ends)");
    t.add("temperature", &temperature, "softmax temperature; 0 = greedy decoding");
    t.add("top_k", &top_k, "sample among the k most likely tokens (0 = off)");
    t.add("top_p", &top_p, "nucleus sampling: the smallest set holding this much probability, in (0, 1] (1 = off)");
    t.add("min_p", &min_p, "drop tokens below min_p x the top token's probability, in [0, 1] (0 = off)");
    t.add("num_return_sequences", &num_return_sequences, "samples per prompt (they share one prefill)");
    t.add("seed", &seed, "random seed: the same seed and inputs give the same output, whatever --batch_size");
    t.add("batch_size", &batch_size, "sequences decoded together (whole prompts with all their samples)");
    t.add("stop", &stop,
          "stop strings, comma-separated (\\, for a comma, \\n newline, \\t tab, \\\\ backslash): a "
          "sequence ends once its text contains one");
    t.add("tokenizer", &tokenizer, "tokenizer directory or hub id (default: the model's own, if it has one)");
    t.add("chat_template", &chat_template,
          "for messages: auto (from tokenizer_config.json), chatml, llama3, llama3.1, plain");
    t.add("add_special_tokens", &add_special_tokens,
          "for {\"prompt\"} lines and --prompt: add BOS where the tokenizer asks for it");
    t.add("use_cache", &use_cache, "KV cache; false recomputes the whole sequence per token (the slow reference path)");
    decode.register_flags(t);
    register_dtype_flags(t, &dtype, nullptr);
    t.add_enum("device", &device, device_choices(), "where to run");
    t.add("threads", &threads, "CPU threads (0 = one per core)");
  }
  void validate() const {
    if (model.empty()) fail("--model is required (a directory or hub id)");
    if (prompt.empty()) {
      if (input.empty()) fail("--input is required (a jsonl file), or pass --prompt \"text\" to stream one completion");
      if (output.empty()) fail("--output is required (a jsonl file to write)");
    } else if (!input.empty() || !output.empty()) {
      fail("--prompt streams to the terminal: drop --input/--output, or put the prompt in an --input file");
    }
    if (chat && prompt.empty())
      fail("--chat applies to --prompt; in an --input file write {\"messages\": [...]} lines");
    if (chat_template != "auto") parse_chat_template_name(chat_template);
    decode.validate();
    if (seed < 0) fail("--seed must be >= 0, got ", seed);
  }
  GenerationConfig generation() const {
    GenerationConfig g;
    g.max_new_tokens = max_new_tokens;
    g.sampling = {temperature, top_k, top_p, min_p};
    g.num_return_sequences = num_return_sequences;
    g.seed = (uint64_t)seed;
    g.batch_size = batch_size;
    g.use_cache = use_cache;
    return g;
  }
};

// "a,b\,c\n" -> {"a", "b,c\n"}.
std::vector<std::string> parse_stop_strings(const std::string& s) {
  std::vector<std::string> out;
  if (s.empty()) return out;
  std::string cur;
  for (size_t i = 0; i < s.size(); ++i) {
    char c = s[i];
    if (c == '\\' && i + 1 < s.size()) {
      char n = s[++i];
      if (n == 'n')
        cur += '\n';
      else if (n == 't')
        cur += '\t';
      else if (n == ',' || n == '\\')
        cur += n;
      else
        fail("--stop: unknown escape '\\", n, "' (use \\n, \\t, \\, or \\\\)");
    } else if (c == ',') {
      out.push_back(cur);
      cur.clear();
    } else {
      cur += c;
    }
  }
  out.push_back(cur);
  return out;
}

// Prints a completion as it grows. Text is re-decoded from all ids (byte-level BPE decoding is
// prefix-stable), and a trailing U+FFFD is held back: it is a UTF-8 character whose bytes are still coming.
class TextStreamer {
 public:
  explicit TextStreamer(const Tokenizer& tok) : tok_(tok) {}
  void push(int64_t id) {
    ids_.push_back(id);
    emit(false);
  }
  void finish() { emit(true); }

 private:
  void emit(bool all) {
    std::string text = tok_.decode(ids_, /*skip_special_tokens=*/true, /*clean_up_tokenization_spaces=*/false, false);
    size_t end = text.size();
    static const std::string kReplacement = "\xEF\xBF\xBD";
    while (!all && end >= 3 && text.compare(end - 3, 3, kReplacement) == 0) end -= 3;
    if (end > printed_) {
      std::cout << text.substr(printed_, end - printed_) << std::flush;
      printed_ = end;
    }
  }
  const Tokenizer& tok_;
  std::vector<int64_t> ids_;
  size_t printed_ = 0;
};

}  // namespace

int cmd_generate(int argc, char** argv) {
  GenerateConfig cfg;
  FlagTable flags("multiref generate", "Sample completions from a causal LM (KV-cached, batched, seeded).");
  if (!parse_config(flags, cfg, argc, argv, 2)) return 0;
  auto gen = cfg.generation();
  gen.validate();  // bad sampling values fail before the model loads
  gen.stop_strings = parse_stop_strings(cfg.stop);
  set_threads(cfg.threads);
  auto device = resolve_device(cfg.device);
  cfg.decode.apply(gen, device);
  auto dtype = resolve_dtype(cfg.dtype, device);
  auto lm = load_model(cfg.model, dtype, device);
  if (lm.config.head != ModelHead::CausalLM)
    fail(cfg.model, ": is a ", lm.config.architecture, "; generate needs a causal LM");
  std::shared_ptr<const Tokenizer> tok;
  if (!cfg.tokenizer.empty())
    tok = Tokenizer::load(resolve_tokenizer_dir(cfg.tokenizer));
  else if (has_tokenizer(lm.dir))
    tok = Tokenizer::load(lm.dir);
  gen.eos_ids = generation_eos_ids(lm.dir, lm.config, tok.get());
  if (tok) gen.decode = [tok](const std::vector<int64_t>& ids) { return tok->decode(ids, false, false, false); };
  gen.validate();
  auto need_tok = [&](const std::string& where, const std::string& what) {
    if (!tok)
      fail(where, ": ", what, " needs a tokenizer, and ", lm.dir, " has none: pass --tokenizer (or give prompt_ids)");
  };
  std::optional<ChatFormat> chat;
  auto render = [&](const std::vector<ChatMessage>& messages) {
    if (!chat) chat = resolve_chat_format(tok->chat_template, tok->bos_token, cfg.chat_template, tok->source);
    return tok->encode(chat->render(messages, /*add_generation_prompt=*/true), /*add_special_tokens=*/false);
  };
  auto encode_text = [&](const std::string& text, const std::string& where) {
    size_t bad = 0;
    if (!utf8_valid(text, &bad)) fail(where, ": the prompt is not valid UTF-8 at byte ", bad);
    return tok->encode(text, cfg.add_special_tokens);
  };
  int64_t ctx = lm.config.max_position_embeddings, vocab = lm.config.vocab_size;
  auto check_prompt = [&](const std::vector<int64_t>& ids, const std::string& where) {
    if (ids.empty())
      fail(where, ": the prompt is empty (no tokens); generation needs at least one token to condition on");
    if ((int64_t)ids.size() >= ctx)
      fail(where, ": the prompt has ", ids.size(), " tokens, but the model's context is ", ctx,
           " (max_position_embeddings) and must leave room for a new token: shorten it");
    for (int64_t id : ids)
      if (id < 0 || id >= vocab) fail(where, ": token id ", id, " is outside the model's vocabulary [0, ", vocab, ")");
  };

  std::vector<std::vector<int64_t>> prompts;
  if (!cfg.prompt.empty()) {
    need_tok("--prompt", "a text prompt");
    prompts.push_back(cfg.chat ? render({{"user", cfg.prompt}}) : encode_text(cfg.prompt, "--prompt"));
    check_prompt(prompts.back(), "--prompt");
  } else {
    for (auto& [j, where] : read_jsonl(cfg.input)) {
      std::vector<int64_t> ids;
      if (j.contains("prompt_ids")) {
        if (!j["prompt_ids"].is_array()) fail(where, ": prompt_ids must be an array of token ids");
        for (auto& v : j["prompt_ids"]) {
          if (!v.is_number_integer()) fail(where, ": prompt_ids must hold integers, got ", json_excerpt(v));
          ids.push_back(v.get<int64_t>());
        }
      } else if (j.contains("prompt")) {
        if (!j["prompt"].is_string()) fail(where, ": prompt must be a string");
        need_tok(where, "a text prompt");
        ids = encode_text(j["prompt"].get<std::string>(), where);
      } else if (j.contains("messages")) {
        need_tok(where, "a messages prompt");
        ids = render(parse_messages(j["messages"], where));
      } else {
        fail(where, ": expected {\"prompt_ids\": [...]}, {\"prompt\": \"...\"} or {\"messages\": [...]}");
      }
      check_prompt(ids, where);
      prompts.push_back(std::move(ids));
    }
  }

  double t0 = now_seconds();
  if (!cfg.prompt.empty()) {
    std::unique_ptr<TextStreamer> streamer;
    if (gen.num_return_sequences == 1) {
      streamer = std::make_unique<TextStreamer>(*tok);
      gen.on_token = [&](int64_t, int64_t id) { streamer->push(id); };
    }
    auto res = generate(lm.model, prompts, gen);
    for (size_t i = 0; i < res.sequences.size(); ++i) {
      const auto& c = res.sequences[i];
      if (streamer) {
        streamer->finish();
      } else {
        std::cout << (i ? "\n" : "") << "=== sample " << i << " ===\n"
                  << tok->decode(c.ids, true, false, false) << std::flush;
      }
      std::cout << "\n";
      std::cerr << "[" << c.ids.size() << " tokens, finish_reason " << finish_reason_name(c.finish) << "]\n";
    }
    std::cerr << "generate: " << res.stats.generated_tokens << " tokens in " << now_seconds() - t0 << " s ("
              << (int64_t)res.stats.decode_tokens_per_second() << " tok/s decoding)\n";
    return 0;
  }

  gen.on_progress = [&](const GenerationProgress& p) {
    std::cerr << "\rgenerate: " << p.sequences_done << "/" << p.sequences_total << " sequences, "
              << (int64_t)(p.generated_tokens / std::max(p.seconds, 1e-9)) << " tok/s" << std::flush;
  };
  auto res = generate(lm.model, prompts, gen);
  std::cerr << "\n";
  std::string out;
  for (const auto& c : res.sequences) {
    nlohmann::json j = {{"completion_ids", c.ids}, {"completion_logprobs", c.logprobs}};
    if (tok) j["text"] = tok->decode(c.ids, /*skip_special_tokens=*/true, std::nullopt, false);
    j["finish_reason"] = finish_reason_name(c.finish);
    out += j.dump() + "\n";
  }
  write_file_atomic(cfg.output, out);
  const auto& s = res.stats;
  std::cerr << "generate: " << s.sequences << " sequences, " << s.generated_tokens << " tokens in "
            << now_seconds() - t0 << " s (prefill " << s.prefill_seconds << " s, decode " << s.decode_seconds << " s, "
            << (int64_t)s.decode_tokens_per_second() << " tok/s)\n";
  return 0;
}

}  // namespace multiref
