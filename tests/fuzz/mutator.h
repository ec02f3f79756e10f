// Deterministic input mutation for the fuzz driver (tests/fuzz/fuzz_driver.cpp): the same (seed, execution) always
// gives the same input, so any finding is reproduced by its number. Byte-level edits (bit flips, splices,
// truncation) find parser slips; the dictionary edits aim at what breaks parsers and loaders that trust sizes:
// huge or non-finite numbers, deep nesting, long strings, bad UTF-8, structural characters.
#pragma once
#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

namespace multiref::fuzz {

// splitmix64: small, seedable, the same on every platform (std::uniform_int_distribution is not).
struct Rng {
  uint64_t s;
  explicit Rng(uint64_t seed) : s(seed) {}
  uint64_t next() {
    uint64_t z = (s += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
  }
  size_t below(size_t n) { return n == 0 ? 0 : (size_t)(next() % n); }
  bool chance(int percent) { return (int)below(100) < percent; }
};

// Values that size things, overflow conversions or poison arithmetic.
inline const std::vector<std::string>& interesting_numbers() {
  static const std::vector<std::string> v = {"0",
                                             "-1",
                                             "1",
                                             "2",
                                             "-2147483649",
                                             "2147483647",
                                             "2147483648",
                                             "4294967296",
                                             "1000000",
                                             "1000000000",
                                             "9223372036854775807",
                                             "9223372036854775808",
                                             "-9223372036854775808",
                                             "18446744073709551616",
                                             "1e308",
                                             "-1e308",
                                             "1e309",
                                             "1e-400",
                                             "0.5",
                                             "-0.0",
                                             "150000000",
                                             "65536",
                                             "3.5",
                                             "1e18",
                                             "99999999999999999999999999999"};
  return v;
}

// Structural and textual tokens.
inline const std::vector<std::string>& dictionary() {
  static const std::vector<std::string> v = {"[",
                                             "]",
                                             "{",
                                             "}",
                                             "\"",
                                             ",",
                                             ":",
                                             "null",
                                             "true",
                                             "false",
                                             "NaN",
                                             "Infinity",
                                             "-inf",
                                             "\\u0000",
                                             "\\ud800",
                                             "\\uDFFF",
                                             "\xff",
                                             "\xc3",
                                             "\xe2\x82",
                                             "\xf0\x9f\x98",
                                             "\n",
                                             "\r\n",
                                             "\t",
                                             "\\",
                                             "{}",
                                             "[]",
                                             "\"\"",
                                             "[[]]",
                                             "{\"\":{}}",
                                             "<|im_end|>",
                                             "<|endoftext|>",
                                             "####",
                                             "\x00",
                                             "\"role\"",
                                             "\"content\"",
                                             "\"input_ids\"",
                                             "\"messages\"",
                                             "\"text\"",
                                             "\"ids\"",
                                             "\"prompt\""};
  return v;
}

// A value nested `depth` levels deep: the inputs that overflowed the stack of recursive dumps.
inline std::string deep_nesting(size_t depth, bool objects) {
  std::string s;
  s.reserve(depth * (objects ? 6 : 2) + 1);
  for (size_t i = 0; i < depth; ++i) s += objects ? "{\"a\":" : "[";
  s += "1";
  for (size_t i = 0; i < depth; ++i) s += objects ? "}" : "]";
  return s;
}

// The byte ranges of decimal numbers in `s` (a sign, digits, optional fraction and exponent).
inline std::vector<std::pair<size_t, size_t>> number_spans(const std::string& s, size_t limit = 4096) {
  std::vector<std::pair<size_t, size_t>> out;
  for (size_t i = 0; i < s.size() && out.size() < limit;) {
    if ((s[i] >= '0' && s[i] <= '9') || (s[i] == '-' && i + 1 < s.size() && s[i + 1] >= '0' && s[i + 1] <= '9')) {
      size_t j = i + 1;
      while (j < s.size() && ((s[j] >= '0' && s[j] <= '9') || s[j] == '.' || s[j] == 'e' || s[j] == 'E' ||
                              ((s[j] == '-' || s[j] == '+') && (s[j - 1] == 'e' || s[j - 1] == 'E'))))
        ++j;
      out.emplace_back(i, j - i);
      i = j;
    } else {
      ++i;
    }
  }
  return out;
}

// One mutation of `s`. `binary_header` > 0: the first so many bytes (a safetensors length and JSON header) get
// most of the edits, since the rest is raw tensor data any bytes of which are valid.
inline void mutate_once(std::string& s, Rng& rng, size_t binary_header = 0) {
  size_t n = s.size();
  size_t focus = binary_header > 0 ? std::min(n, binary_header) : n;
  auto pos = [&](bool in_focus) { return rng.below((in_focus ? focus : n) + 1); };
  switch (rng.below(binary_header > 0 ? 11 : 10)) {
    case 0:  // flip a bit
      if (n) s[std::min(pos(true), n - 1)] ^= (char)(1u << rng.below(8));
      break;
    case 1: {  // replace a number with an interesting one
      auto spans = number_spans(s.substr(0, focus));
      if (spans.empty()) break;
      auto [at, len] = spans[rng.below(spans.size())];
      s.replace(at, len, interesting_numbers()[rng.below(interesting_numbers().size())]);
      break;
    }
    case 2:  // insert a dictionary token
      s.insert(pos(true), dictionary()[rng.below(dictionary().size())]);
      break;
    case 3: {  // delete a range
      if (!n) break;
      size_t at = std::min(pos(true), n - 1), len = 1 + rng.below(std::min<size_t>(n - at, 64));
      s.erase(at, len);
      break;
    }
    case 4: {  // duplicate a range somewhere else (repeats keys, lines, array elements)
      if (!n) break;
      size_t at = rng.below(focus ? focus : n), len = 1 + rng.below(std::min<size_t>(n - at, 256));
      std::string piece = s.substr(at, len);
      s.insert(pos(true), piece);
      break;
    }
    case 5:  // truncate
      s.resize(pos(true));
      break;
    case 6: {  // a number becomes a deeply nested value
      auto spans = number_spans(s.substr(0, focus), 64);
      size_t depth = rng.chance(50) ? 100000 : 300;
      std::string deep = deep_nesting(depth, rng.chance(30));
      if (spans.empty())
        s.insert(pos(true), deep);
      else {
        auto [at, len] = spans[rng.below(spans.size())];
        s.replace(at, len, deep);
      }
      break;
    }
    case 7: {  // a long string inside a string value
      size_t q = s.find('"', rng.below(focus ? focus : 1));
      s.insert(q == std::string::npos ? pos(true) : q + 1, std::string(rng.chance(50) ? 100000 : 3000, 'x'));
      break;
    }
    case 8:  // random bytes
      for (size_t i = 0, k = 1 + rng.below(8); i < k; ++i) s.insert(pos(true), 1, (char)rng.below(256));
      break;
    case 9: {  // swap a structural character for another
      static const std::string kStruct = "[]{}\",:";
      if (!n) break;
      size_t at = std::min(pos(true), n - 1);
      for (size_t i = at; i < std::min(n, at + 512); ++i)
        if (kStruct.find(s[i]) != std::string::npos) {
          s[i] = kStruct[rng.below(7)];
          break;
        }
      break;
    }
    case 10: {  // binary: rewrite the 8-byte little-endian header length
      if (n < 8) break;
      static const uint64_t kLens[] = {0, 1, 2, 7, 8, 0xffffffffULL, 0x7fffffffffffffffULL, ~0ULL, 100000000ULL};
      uint64_t v = rng.chance(50) ? kLens[rng.below(9)] : rng.below(n + 64);
      for (int b = 0; b < 8; ++b) s[b] = (char)((v >> (8 * b)) & 0xff);
      break;
    }
  }
}

// Structure-aware mutation of a JSON document: one node gets a hostile value of the right or the wrong type
// (huge, negative or fractional numbers, long or empty strings, nulls, deep nesting, a repeated or dropped
// element, a dropped key). The result still parses, so it reaches the checks behind the parser — sizes, types,
// ranges — where byte edits rarely get. Returns false when `text` is not JSON.
inline bool mutate_json_value(nlohmann::json& doc, Rng& rng) {
  std::vector<nlohmann::json*> nodes;
  std::vector<nlohmann::json*> stack{&doc};
  while (!stack.empty() && nodes.size() < 20000) {
    nlohmann::json* n = stack.back();
    stack.pop_back();
    nodes.push_back(n);
    if (n->is_structured())
      for (auto& c : *n) stack.push_back(&c);
  }
  nlohmann::json& v = *nodes[rng.below(nodes.size())];
  switch (rng.below(8)) {
    case 0:
    case 1: {  // a number: interesting, or derived from the old one
      static const std::vector<double> kNums = {
          0, -1, 1, 2, 3.5, -0.5, 65536, 1e6, 1e9, 2147483648.0, 150000000, 4294967296.0, 1e18, 1e300, -1e300};
      if (v.is_number() && rng.chance(50)) {
        double x = v.get<double>();
        double opts[] = {-x, x * 1000, x + 1, x - 1, x / 7};
        v = opts[rng.below(5)];
      } else if (rng.chance(50)) {
        v = (int64_t)kNums[rng.below(kNums.size())];
      } else {
        v = kNums[rng.below(kNums.size())];
      }
      break;
    }
    case 2: {  // another type
      switch (rng.below(7)) {
        case 0:
          v = nullptr;
          break;
        case 1:
          v = true;
          break;
        case 2:
          v = "";
          break;
        case 3:
          v = nlohmann::json::array();
          break;
        case 4:
          v = nlohmann::json::object();
          break;
        case 5:
          v = "\x01"
              "DEEP"
              "\x01";
          break;  // replaced by deep nesting after dump (dump() itself recurses)
        case 6:
          v = nlohmann::json::array({v, v});
          break;
      }
      break;
    }
    case 3:  // a long or odd string
      v = std::string(rng.chance(50) ? 100000 : 3000, 'x') + (rng.chance(50) ? "\xc3\xa9<|im_end|>" : "");
      break;
    case 4:  // an array element repeated, or an array emptied
      if (v.is_array() && !v.empty()) {
        if (rng.chance(70)) {
          nlohmann::json e = v[rng.below(v.size())];
          for (size_t i = 0, k = rng.chance(50) ? 1000 : 2; i < k; ++i) v.push_back(e);
        } else {
          v = nlohmann::json::array();
        }
      } else if (v.is_string()) {
        v = v.get<std::string>() + v.get<std::string>();
      }
      break;
    case 5:  // a key dropped
      if (v.is_object() && !v.empty()) {
        auto it = v.begin();
        std::advance(it, (long)rng.below(v.size()));
        v.erase(it);
      }
      break;
    case 6:  // a key added, or a string emptied
      if (v.is_object())
        v[rng.chance(50) ? "unexpected_key" : ""] = rng.chance(50) ? nlohmann::json(1) : nlohmann::json("x");
      else if (v.is_string())
        v = "";
      break;
    case 7:  // an element dropped from an array
      if (v.is_array() && !v.empty()) v.erase(v.begin() + (long)rng.below(v.size()));
      break;
  }
  return true;
}

// mutate_json_value on a JSON document, or on one line of a JSONL file; false when that is not JSON.
inline bool mutate_json(std::string& text, Rng& rng) {
  auto apply = [&](std::string& doc) {
    nlohmann::json j = nlohmann::json::parse(doc, nullptr, /*allow_exceptions=*/false);
    if (j.is_discarded()) return false;
    for (size_t i = 0, k = 1 + rng.below(3); i < k; ++i) mutate_json_value(j, rng);
    doc = j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
    static const std::string kMarker = "\"\\u0001DEEP\\u0001\"";
    size_t at = doc.find(kMarker);
    if (at != std::string::npos)
      doc.replace(at, kMarker.size(), deep_nesting(rng.chance(50) ? 100000 : 300, rng.chance(30)));
    return true;
  };
  if (apply(text)) return true;
  // JSONL: one line.
  std::vector<std::string> lines;
  size_t start = 0;
  while (start < text.size()) {
    size_t end = text.find('\n', start);
    if (end == std::string::npos) end = text.size();
    lines.push_back(text.substr(start, end - start));
    start = end + 1;
  }
  if (lines.empty()) return false;
  size_t i = rng.below(lines.size());
  if (!apply(lines[i])) return false;
  text.clear();
  for (auto& l : lines) text += l + "\n";
  return true;
}

// 1 to 4 mutations, more rarely up to 12.
inline std::string mutate(const std::string& seed, Rng& rng, size_t binary_header = 0) {
  std::string s = seed;
  if (binary_header == 0 && rng.chance(50) && mutate_json(s, rng)) return s;
  if (binary_header > 0 && s.size() >= 8 && rng.chance(50)) {
    // safetensors: the JSON header mutated as JSON, its length field rewritten to match, the data untouched.
    uint64_t len = 0;
    for (int b = 0; b < 8; ++b) len |= (uint64_t)(unsigned char)s[b] << (8 * b);
    if (len <= s.size() - 8) {
      std::string header = s.substr(8, len);
      if (mutate_json(header, rng)) {
        while (header.size() % 8) header += ' ';
        std::string out(8, '\0');
        for (int b = 0; b < 8; ++b) out[b] = (char)((header.size() >> (8 * b)) & 0xff);
        return out + header + s.substr(8 + len);
      }
    }
  }
  size_t k = rng.chance(85) ? 1 + rng.below(4) : 1 + rng.below(12);
  for (size_t i = 0; i < k; ++i) mutate_once(s, rng, binary_header);
  return s;
}

// A command line's flags mutated: values replaced by hostile ones, flags dropped, repeated, joined as
// --flag=value, unknown flags and stray words added.
inline std::vector<std::string> mutate_args(std::vector<std::string> a, Rng& rng) {
  static const std::vector<std::string> kValues = {
      "",     "-1",         "0",     "1e309", "inf",        "-inf",     "nan",   "99999999999999999999",
      "abc",  "true",       "=",     "--",    "1000000000", "0.0",      "-0",    "1e-320",
      "\xff", "2147483648", "1,2",   "0x10",  " 1",         "1 ",       "maybe", "rkl",
      "fkl",  "both",       "exact", "gsm8k", "/",          "/dev/null"};
  size_t k = 1 + rng.below(3);
  for (size_t i = 0; i < k && !a.empty(); ++i) {
    size_t at = rng.below(a.size());
    switch (rng.below(7)) {
      case 0:
      case 1:
        if (a[at].rfind("--", 0) != 0)
          a[at] = kValues[rng.below(kValues.size())];
        else if (at + 1 < a.size())
          a[at + 1] = kValues[rng.below(kValues.size())];
        break;
      case 2:
        a.erase(a.begin() + (long)at);
        break;
      case 3:
        a.insert(a.begin() + (long)at, a[at]);
        break;
      case 4:
        if (a[at].rfind("--", 0) == 0 && at + 1 < a.size()) {
          a[at] += "=" + a[at + 1];
          a.erase(a.begin() + (long)at + 1);
        }
        break;
      case 5:
        a.insert(a.begin() + (long)rng.below(a.size() + 1), rng.chance(50) ? "--no_such_flag" : "stray");
        break;
      case 6:
        if (a[at].rfind("--", 0) == 0) a[at] += rng.chance(50) ? "=" : "x";
        break;
    }
  }
  return a;
}

}  // namespace multiref::fuzz
