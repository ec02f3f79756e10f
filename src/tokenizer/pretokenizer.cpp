#include "tokenizer/pretokenizer.h"

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include "util/common.h"
#include "util/unicode.h"

namespace multiref {

const char* const kQwen2Pattern =
    R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";
const char* const kLlama3Pattern =
    R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";
// GPT-2's ByteLevel(use_regex=true) pattern.
const char* const kGpt2Pattern = R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)";

namespace {
// HF's Oniguruma defines \s as the Unicode White_Space property; PCRE2's UCP \s also matches U+180E (Mongolian
// vowel separator, whitespace before Unicode 6.3). Spell the property out so both engines agree (found by the
// differential test against HF's tokenizers.js, tests/test_tokenizer_oracle.cpp).
std::string oniguruma_whitespace(const std::string& p) {
  std::string out;
  for (size_t i = 0; i < p.size(); ++i) {
    if (p[i] == '\\' && i + 1 < p.size()) {
      char c = p[++i];
      if (c == 's')
        out += "\\p{White_Space}";
      else if (c == 'S')
        out += "\\P{White_Space}";
      else
        out += {'\\', c};
    } else {
      out += p[i];
    }
  }
  return out;
}
}  // namespace

PreTokenizer::PreTokenizer(const std::string& pattern_text, const std::string& source) {
  int err = 0;
  PCRE2_SIZE off = 0;
  std::string pattern = oniguruma_whitespace(pattern_text);
  pcre2_code* code =
      pcre2_compile((PCRE2_SPTR)pattern.c_str(), pattern.size(), PCRE2_UTF | PCRE2_UCP, &err, &off, nullptr);
  if (!code) {
    PCRE2_UCHAR buf[256];
    pcre2_get_error_message(err, buf, sizeof buf);
    fail(source, ": pre-tokenizer regex does not compile at offset ", off, ": ", (const char*)buf);
  }
  pcre2_jit_compile(code, PCRE2_JIT_COMPLETE);  // falls back to the interpreter if JIT is unavailable
  code_ = code;
}

PreTokenizer::~PreTokenizer() {
  pcre2_code_free((pcre2_code*)code_);
}

void PreTokenizer::split(const std::string& s, const std::function<void(size_t, size_t)>& piece) const {
  auto* code = (pcre2_code*)code_;
  pcre2_match_data* md = pcre2_match_data_create_from_pattern(code, nullptr);
  size_t pos = 0, last = 0;
  while (pos < s.size()) {
    // The text was validated once up front; skip PCRE2's per-call UTF check (it is O(n) each time).
    int rc = pcre2_match(code, (PCRE2_SPTR)s.data(), s.size(), pos, PCRE2_NO_UTF_CHECK, md, nullptr);
    if (rc < 0) break;
    PCRE2_SIZE* ov = pcre2_get_ovector_pointer(md);
    size_t b = ov[0], e = ov[1];
    if (b > last) piece(last, b);
    if (e > b) piece(b, e);
    last = e;
    if (e == b) {  // an empty match: step one code point
      size_t i = e;
      if (i < s.size()) next_code_point(s, i);
      pos = i;
    } else {
      pos = e;
    }
  }
  if (last < s.size()) piece(last, s.size());
  pcre2_match_data_free(md);
}

}  // namespace multiref
