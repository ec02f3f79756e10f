// Hugging Face-exact byte-level BPE tokenizers. Loads any of:
//   - tokenizer.json (model BPE, pre_tokenizer Split/ByteLevel/Sequence, normalizer NFC or none, decoder ByteLevel)
//   - vocab.json + merges.txt with tokenizer_config.json naming the class (Qwen2Tokenizer, GPT2Tokenizer)
//   - Llama 3's tiktoken tokenizer.model with its special tokens from tokenizer_config.json
// plus tokenizer_config.json's bos/eos/pad tokens, add_bos/eos_token and chat_template. Anything it does not
// support is an error naming the file and field. Immutable after load: encode/decode are thread-safe.
#pragma once
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include "tokenizer/bpe.h"
#include "tokenizer/pretokenizer.h"

namespace multiref {

struct AddedToken {
  int64_t id = -1;
  std::string content;
  bool special = false, lstrip = false, rstrip = false, normalized = false, single_word = false;
};

class Tokenizer {
 public:
  // `path`: a directory (or hub id resolved by the caller) holding one of the formats above, or a
  // tokenizer.json file.
  static std::shared_ptr<const Tokenizer> load(const std::string& path);
  ~Tokenizer();

  // Special tokens written in the text are recognized (as HF does by default). BOS/EOS are added only
  // with add_special_tokens, and only where the tokenizer's config asks for them. Invalid UTF-8 is an Error.
  std::vector<int64_t> encode(const std::string& text, bool add_special_tokens = false) const;
  std::vector<std::vector<int64_t>> encode_batch(const std::vector<std::string>& texts, bool add_special_tokens,
                                                 int threads) const;
  // Unknown ids are an Error, unless unknown_ids_are_errors is false: then they are skipped, as HF tokenizers'
  // decode does (generated text: a model's embedding has rows beyond the tokenizer's ids — 151936 vs 151665 for
  // Qwen2.5 — which an untrained model can sample). Byte sequences that are not valid UTF-8 decode to U+FFFD
  // as in HF. clean_up_tokenization_spaces defaults to the tokenizer_config.json setting (true for Llama 3), as
  // in transformers' decode(); pass false for an exact inverse of encode.
  std::string decode(const std::vector<int64_t>& ids, bool skip_special_tokens = false,
                     std::optional<bool> clean_up_tokenization_spaces = std::nullopt,
                     bool unknown_ids_are_errors = true) const;

  int64_t vocab_size() const { return vocab_size_; }  // largest id + 1
  std::optional<int64_t> token_to_id(const std::string& token) const;
  const std::vector<AddedToken>& added_tokens() const { return added_; }

  std::optional<int64_t> bos_id, eos_id, pad_id;
  std::string bos_token, eos_token, pad_token;
  bool add_bos = false, add_eos = false;
  std::string chat_template;  // Jinja text from tokenizer_config.json / chat_template.jinja ("" if none)
  std::string source;         // the path it was loaded from
  std::string format;         // "tokenizer.json" | "vocab.json+merges.txt" | "tiktoken"

 private:
  Tokenizer() = default;
  void set_pretokenizer(const std::string& pattern);
  void finish(const std::string& config_path);
  void append_text_ids(const std::string& text, std::vector<int64_t>& out) const;

  std::unique_ptr<BPE> bpe_;
  std::unique_ptr<PreTokenizer> regex_;
  bool nfc_ = false;
  bool clean_up_spaces_ = false;
  std::vector<AddedToken> added_;
  std::unordered_map<int64_t, size_t> added_by_id_;
  std::vector<std::vector<size_t>> added_by_first_byte_;  // candidates per first byte, longest first
  int64_t vocab_size_ = 0;
  friend struct TokenizerLoader;
};

}  // namespace multiref
