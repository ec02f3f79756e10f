// `multiref tokenize` and `multiref train-tokenizer`.
#include <iostream>

#include "cli/commands.h"
#include "io/hub.h"
#include "tokenizer/bpe_trainer.h"
#include "tokenizer/chat_template.h"
#include "tokenizer/tokenizer.h"
#include "util/common.h"
#include "util/flags.h"
#include "util/json_text.h"
#include "util/jsonl.h"
#include "util/unicode.h"

namespace multiref {

namespace {

struct TokenizeConfig {
  std::string tokenizer, input, output;
  bool decode = false;
  bool add_special_tokens = false;
  bool skip_special_tokens = false;
  std::string chat_template = "auto";
  int threads = 0;

  void register_flags(FlagTable& t) {
    t.add("tokenizer", &tokenizer,
          "tokenizer directory or hub id (tokenizer.json, vocab.json+merges.txt or tokenizer.model)");
    t.add("input", &input, "jsonl: {\"text\": s}, {\"messages\": [...]}, or with --decode {\"ids\": [...]}");
    t.add("output", &output, "jsonl, one line per input line: {\"ids\"}, {\"text\",\"ids\"}, or {\"text\"}");
    t.add("decode", &decode, "decode ids to text instead of encoding");
    t.add("add_special_tokens", &add_special_tokens,
          "add BOS/EOS where the tokenizer's config asks for them (text lines)");
    t.add("skip_special_tokens", &skip_special_tokens, "with --decode: drop special tokens from the text");
    t.add("chat_template", &chat_template,
          "for messages lines: auto (from tokenizer_config.json), chatml, llama3, llama3.1, plain");
    t.add("threads", &threads, "encoding threads (0 = one per core)");
  }
  void validate() const {
    if (tokenizer.empty()) fail("--tokenizer is required");
    if (input.empty() || output.empty()) fail("--input and --output are required (jsonl files)");
    if (chat_template != "auto") parse_chat_template_name(chat_template);
  }
};

}  // namespace

int cmd_tokenize(int argc, char** argv) {
  TokenizeConfig cfg;
  FlagTable flags("multiref tokenize",
                  "Encode text or chat messages to token ids, or decode ids, exactly as Hugging Face does.");
  if (!parse_config(flags, cfg, argc, argv, 2)) return 0;
  auto tok = Tokenizer::load(resolve_tokenizer_dir(cfg.tokenizer));
  auto rows = read_jsonl(cfg.input);
  std::vector<nlohmann::json> out(rows.size());
  std::vector<std::string> texts;
  std::vector<size_t> text_rows;
  std::optional<ChatFormat> chat;
  for (size_t i = 0; i < rows.size(); ++i) {
    const auto& [j, where] = rows[i];
    if (cfg.decode) {
      if (!j.contains("ids") || !j["ids"].is_array()) fail(where, ": with --decode each line needs \"ids\": [...]");
      std::vector<int64_t> ids;
      for (auto& v : j["ids"]) {
        if (!v.is_number_integer()) fail(where, ": ids must be integers, got ", json_excerpt(v));
        ids.push_back(v.get<int64_t>());
      }
      try {
        out[i] = {{"text", tok->decode(ids, cfg.skip_special_tokens)}};
      } catch (const Error& e) {
        fail(where, ": ", e.what());
      }
    } else if (j.contains("messages")) {
      if (!chat) chat = resolve_chat_format(tok->chat_template, tok->bos_token, cfg.chat_template, tok->source);
      std::string rendered = chat->render(parse_messages(j["messages"], where), /*add_generation_prompt=*/true);
      out[i] = {{"text", rendered}};
      texts.push_back(rendered);
      text_rows.push_back(i);
    } else if (j.contains("text") && j["text"].is_string()) {
      texts.push_back(j["text"].get<std::string>());
      text_rows.push_back(i);
    } else {
      fail(where, ": expected {\"text\": \"...\"} or {\"messages\": [...]} (or {\"ids\": [...]} with --decode)");
    }
  }
  for (size_t k = 0; k < texts.size(); ++k) {
    size_t bad = 0;
    if (!utf8_valid(texts[k], &bad)) fail(rows[text_rows[k]].where, ": text is not valid UTF-8 at byte ", bad);
  }
  double t0 = now_seconds();
  auto ids = tok->encode_batch(texts, cfg.add_special_tokens, cfg.threads);
  size_t bytes = 0;
  for (size_t k = 0; k < texts.size(); ++k) {
    // Chat renderings carry their own special tokens as text; they are encoded as HF's apply_chat_template
    // does (add_special_tokens=False), so re-encode those without BOS.
    if (rows[text_rows[k]].value.contains("messages") && cfg.add_special_tokens) ids[k] = tok->encode(texts[k], false);
    out[text_rows[k]]["ids"] = ids[k];
    bytes += texts[k].size();
  }
  std::string data;
  for (auto& o : out) data += o.dump() + "\n";
  write_file_atomic(cfg.output, data);
  double dt = now_seconds() - t0;
  std::cerr << "tokenize: " << rows.size() << " lines, " << (int64_t)(bytes / std::max(dt, 1e-9) / 1e6 * 100) / 100.0
            << " MB/s\n";
  return 0;
}

namespace {
struct TrainTokenizerConfig {
  std::string input, output;
  int64_t vocab_size = 1024;
  int64_t min_frequency = 2;
  std::vector<std::string> special_tokens = {"<|endoftext|>", "<|im_start|>", "<|im_end|>"};

  void register_flags(FlagTable& t) {
    t.add("input", &input, "plain UTF-8 text to train on");
    t.add("vocab_size", &vocab_size, "total vocabulary: 256 bytes + merges + special tokens");
    t.add("min_frequency", &min_frequency, "pairs seen fewer times are not merged (training may stop early)");
    t.add("special_tokens", &special_tokens, "special tokens, given ids after the BPE tokens");
    t.add("output", &output, "directory for tokenizer.json and tokenizer_config.json (replaced atomically)");
  }
  void validate() const {
    if (input.empty()) fail("--input is required (a text file)");
    if (output.empty()) fail("--output is required (a directory)");
    if (min_frequency < 1) fail("--min_frequency must be >= 1");
    if (special_tokens.empty()) fail("--special_tokens must not be empty");
  }
};
}  // namespace

int cmd_train_tokenizer(int argc, char** argv) {
  TrainTokenizerConfig cfg;
  FlagTable flags("multiref train-tokenizer",
                  "Train a byte-level BPE tokenizer (Qwen2-style pre-tokenizer, ChatML template) on plain text.");
  if (!parse_config(flags, cfg, argc, argv, 2)) return 0;
  BpeTrainOptions opts;
  opts.vocab_size = cfg.vocab_size;
  opts.min_frequency = cfg.min_frequency;
  opts.special_tokens = cfg.special_tokens;
  double t0 = now_seconds();
  auto bpe = train_bpe(read_file(cfg.input), opts);
  StagedDir staged(cfg.output);
  write_trained_tokenizer(bpe, opts, staged.path());
  Tokenizer::load(staged.path());  // what we wrote must load before it replaces anything
  staged.commit();
  std::cerr << "train-tokenizer: " << bpe.tokens.size() << " BPE tokens (" << bpe.merges.size() << " merges) + "
            << opts.special_tokens.size() << " special tokens in " << now_seconds() - t0 << " s -> " << cfg.output
            << "\n";
  if ((int64_t)(bpe.tokens.size() + opts.special_tokens.size()) < cfg.vocab_size)
    std::cerr << "train-tokenizer: note: stopped below --vocab_size: no pair occurs --min_frequency times\n";
  return 0;
}

}  // namespace multiref
