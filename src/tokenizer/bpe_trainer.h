// Trains a byte-level BPE tokenizer (Qwen2-style pre-tokenizer, NFC) on plain text and writes it as Hugging
// Face files: tokenizer.json and tokenizer_config.json (ChatML template, <|endoftext|> / <|im_start|> /
// <|im_end|> specials), loadable by HF tokenizers and by multiref's Tokenizer.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace multiref {

struct BpeTrainOptions {
  int64_t vocab_size = 1024;  // including the 256 byte tokens and the special tokens
  int64_t min_frequency = 2;  // a pair seen fewer times is never merged
  std::vector<std::string> special_tokens = {"<|endoftext|>", "<|im_start|>", "<|im_end|>"};
};

struct TrainedBpe {
  std::vector<std::string> tokens;                  // id -> raw bytes: 256 bytes, then one per merge
  std::vector<std::pair<int32_t, int32_t>> merges;  // in rank order
};

// Deterministic: ties between equally frequent pairs go to the pair whose merged bytes sort first.
TrainedBpe train_bpe(const std::string& corpus, const BpeTrainOptions& opts);

// Writes tokenizer.json and tokenizer_config.json into `dir` (which must exist). Special tokens get the ids
// after the BPE tokens.
void write_trained_tokenizer(const TrainedBpe& bpe, const BpeTrainOptions& opts, const std::string& dir);

// The generic ChatML template written into tokenizer_config.json (HF's canonical ChatML Jinja).
extern const char* const kChatMLTemplate;

}  // namespace multiref
