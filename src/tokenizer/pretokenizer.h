// The regex pre-tokenizer of byte-level BPE tokenizers (HF `Split` with behavior "Isolated"): text is cut into
// the regex's matches and the gaps between them; BPE then runs inside each piece.
#pragma once
#include <functional>
#include <string>

namespace multiref {

// The patterns of the supported families, verbatim from their tokenizer.json files.
extern const char* const kQwen2Pattern;   // Qwen2/2.5/3: digits one at a time
extern const char* const kLlama3Pattern;  // Llama 3: digits in groups of up to three
extern const char* const kGpt2Pattern;    // GPT-2's ByteLevel(use_regex=true)

class PreTokenizer {
 public:
  // PCRE2 in UTF mode with Unicode properties (UCP makes \s, \w and case folding Unicode-aware, as in the
  // Oniguruma engine HF tokenizers uses); JIT-compiled. Errors name `source`.
  PreTokenizer(const std::string& pattern, const std::string& source);
  ~PreTokenizer();
  PreTokenizer(const PreTokenizer&) = delete;
  PreTokenizer& operator=(const PreTokenizer&) = delete;

  // Calls piece(begin, end) for every match and every gap between matches, in order. `s` must be valid
  // UTF-8 (checked by the caller once). Thread-safe.
  void split(const std::string& s, const std::function<void(size_t, size_t)>& piece) const;

 private:
  void* code_;  // pcre2_code*, kept out of the header
};

}  // namespace multiref
