#include "data/rewards.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdlib>

#include "util/common.h"
#include "util/unicode.h"

namespace multiref {

// ============================================================================================
// Python string semantics. The paper's rewards run on Python str, so lengths count code points,
// strip()/isdigit()/\s use Python's Unicode tables (those of Python 3.11 = Unicode 14.0 below).
// ============================================================================================
namespace {

// Valid UTF-8 for code-point counting: each maximal invalid subsequence becomes one U+FFFD, as Python's
// bytes.decode("utf-8", "replace") (and HF's lossy decode) does. The policy's text normally arrives valid (the
// tokenizer decodes lossily), so this is a safety net.
std::string sanitize_utf8(const std::string& s) {
  return utf8_valid(s) ? s : utf8_lossy(s);
}

// str.isspace(): bidi class WS/B/S or category Zs (Python's _PyUnicode_IsWhitespace).
bool py_isspace_cp(uint32_t c) {
  return (c >= 0x09 && c <= 0x0D) || (c >= 0x1C && c <= 0x20) || c == 0x85 || c == 0xA0 || c == 0x1680 ||
         (c >= 0x2000 && c <= 0x200A) || c == 0x2028 || c == 0x2029 || c == 0x202F || c == 0x205F || c == 0x3000;
}

// str.isdigit(): Numeric_Type Digit or Decimal, as ranges generated from Python 3.11's unicodedata
// ([c for c in range(0x110000) if chr(c).isdigit()]). Superscripts and circled digits are digits too.
const uint32_t kDigitRanges[][2] = {
    {0x30, 0x39},       {0xB2, 0xB3},       {0xB9, 0xB9},       {0x660, 0x669},     {0x6F0, 0x6F9},
    {0x7C0, 0x7C9},     {0x966, 0x96F},     {0x9E6, 0x9EF},     {0xA66, 0xA6F},     {0xAE6, 0xAEF},
    {0xB66, 0xB6F},     {0xBE6, 0xBEF},     {0xC66, 0xC6F},     {0xCE6, 0xCEF},     {0xD66, 0xD6F},
    {0xDE6, 0xDEF},     {0xE50, 0xE59},     {0xED0, 0xED9},     {0xF20, 0xF29},     {0x1040, 0x1049},
    {0x1090, 0x1099},   {0x1369, 0x1371},   {0x17E0, 0x17E9},   {0x1810, 0x1819},   {0x1946, 0x194F},
    {0x19D0, 0x19DA},   {0x1A80, 0x1A89},   {0x1A90, 0x1A99},   {0x1B50, 0x1B59},   {0x1BB0, 0x1BB9},
    {0x1C40, 0x1C49},   {0x1C50, 0x1C59},   {0x2070, 0x2070},   {0x2074, 0x2079},   {0x2080, 0x2089},
    {0x2460, 0x2468},   {0x2474, 0x247C},   {0x2488, 0x2490},   {0x24EA, 0x24EA},   {0x24F5, 0x24FD},
    {0x24FF, 0x24FF},   {0x2776, 0x277E},   {0x2780, 0x2788},   {0x278A, 0x2792},   {0xA620, 0xA629},
    {0xA8D0, 0xA8D9},   {0xA900, 0xA909},   {0xA9D0, 0xA9D9},   {0xA9F0, 0xA9F9},   {0xAA50, 0xAA59},
    {0xABF0, 0xABF9},   {0xFF10, 0xFF19},   {0x104A0, 0x104A9}, {0x10A40, 0x10A43}, {0x10D30, 0x10D39},
    {0x10E60, 0x10E68}, {0x11052, 0x1105A}, {0x11066, 0x1106F}, {0x110F0, 0x110F9}, {0x11136, 0x1113F},
    {0x111D0, 0x111D9}, {0x112F0, 0x112F9}, {0x11450, 0x11459}, {0x114D0, 0x114D9}, {0x11650, 0x11659},
    {0x116C0, 0x116C9}, {0x11730, 0x11739}, {0x118E0, 0x118E9}, {0x11950, 0x11959}, {0x11C50, 0x11C59},
    {0x11D50, 0x11D59}, {0x11DA0, 0x11DA9}, {0x16A60, 0x16A69}, {0x16AC0, 0x16AC9}, {0x16B50, 0x16B59},
    {0x1D7CE, 0x1D7FF}, {0x1E140, 0x1E149}, {0x1E2F0, 0x1E2F9}, {0x1E950, 0x1E959}, {0x1F100, 0x1F10A},
    {0x1FBF0, 0x1FBF9},
};

bool py_isdigit_cp(uint32_t c) {
  for (const auto& r : kDigitRanges) {
    if (c < r[0]) return false;  // sorted
    if (c <= r[1]) return true;
  }
  return false;
}

// text.split(sep)[-1]: what follows the last match of a left-to-right, non-overlapping scan, or all of
// text. Not rfind: in "\n</answer>\n</answer>\n" Python's split on "\n</answer>\n" matches only at 0
// (the next candidate overlaps it), so the tail is "</answer>\n", where rfind would give "".
std::string after_last(const std::string& text, const std::string& sep) {
  size_t tail = 0;
  for (size_t p = text.find(sep); p != std::string::npos; p = text.find(sep, tail)) tail = p + sep.size();
  return text.substr(tail);
}

}  // namespace

size_t py_len(const std::string& utf8) {
  std::string s = sanitize_utf8(utf8);
  size_t n = 0;
  for (unsigned char c : s) n += (c & 0xC0) != 0x80;
  return n;
}

std::string py_strip(const std::string& utf8) {
  std::string s = sanitize_utf8(utf8);
  size_t begin = s.size(), end = 0;
  for (size_t i = 0; i < s.size();) {
    size_t at = i;
    if (!py_isspace_cp(next_code_point(s, i))) {
      if (begin == s.size()) begin = at;
      end = i;
    }
  }
  return begin < end ? s.substr(begin, end - begin) : std::string();
}

bool py_isdigit(const std::string& utf8) {
  std::string s = sanitize_utf8(utf8);
  if (s.empty()) return false;
  for (size_t i = 0; i < s.size();)
    if (!py_isdigit_cp(next_code_point(s, i))) return false;
  return true;
}

size_t py_count(const std::string& text, const std::string& sub) {
  if (sub.empty()) return py_len(text) + 1;
  size_t n = 0;
  for (size_t p = text.find(sub); p != std::string::npos; p = text.find(sub, p + sub.size())) ++n;
  return n;
}

// ============================================================================================
// gsm8k_xml: the paper code's reward functions. Source: willccbb's "GRPO Llama-1B" gist
// (grpo_demo.py, 2025), as copied into many repos, e.g. SiliangZeng/R1-Experiment grpo_demo.py:
//   extract_xml_answer(text) = text.split("<answer>")[-1].split("</answer>")[0].strip()
//   correctness 2.0 if r == a;  int 0.5 if r.isdigit()
//   strict  re.match(r"^<reasoning>\n.*?\n</reasoning>\n<answer>\n.*?\n</answer>\n$", r)
//   soft    re.match(r"<reasoning>.*?</reasoning>\s*<answer>.*?</answer>", r)
//   count_xml: the four +0.125 tag checks with the trailing-text penalties.
// Neither regex passes re.DOTALL, so '.' stops at '\n': the strict one only accepts a one-line
// reasoning and a one-line answer, and the soft one never matches the multi-line format the prompt
// asks for (the two are mutually exclusive; a completion scores at most 3.5, not 4.0). We keep that.
// ============================================================================================
const char* const kGsm8kXmlSystemPrompt =
    "\nRespond in the following format:\n<reasoning>\n...\n</reasoning>\n<answer>\n...\n</answer>\n";

namespace {

// Both regexes are decided by direct scans rather than a regex engine: without DOTALL they have a
// fixed shape, and a backtracking engine takes quadratic time on adversarial text (PCRE2 hits its match
// limit on a 120 kB line of repeated "</reasoning> <answer>"). Checked against Python's re on 100k
// random completions (tags, newlines, Unicode spaces and digits); the tests pin the edge cases.

// re.match(r"^<reasoning>\n.*?\n</reasoning>\n<answer>\n.*?\n</answer>\n$", text). '.' excludes only
// '\n', so each ".*?" is the rest of its line; '$' matches at the end or before one final '\n'.
bool strict_format_matches(const std::string& t) {
  const std::string head = "<reasoning>\n", mid = "\n</reasoning>\n<answer>\n", tail = "\n</answer>\n";
  if (t.compare(0, head.size(), head) != 0) return false;
  size_t nl = t.find('\n', head.size());  // the reasoning line ends here
  if (nl == std::string::npos || t.compare(nl, mid.size(), mid) != 0) return false;
  nl = t.find('\n', nl + mid.size());  // the answer line ends here
  if (nl == std::string::npos || t.compare(nl, tail.size(), tail) != 0) return false;
  size_t end = nl + tail.size();
  return end == t.size() || (end + 1 == t.size() && t[end] == '\n');
}

// Index past the run of Python whitespace (\s in a str pattern = str.isspace()) starting at t[i].
size_t skip_py_space(const std::string& t, size_t i) {
  while (i < t.size()) {
    size_t next = i;
    if (!py_isspace_cp(next_code_point(t, next))) break;
    i = next;
  }
  return i;
}

// re.match(r"<reasoning>.*?</reasoning>\s*<answer>.*?</answer>", text): anchored at the start only.
// "</reasoning>" must close on the first line; \s* may cross lines and, as '<' is not a space, takes
// the whole whitespace run; then "</answer>" must follow "<answer>" on that same line.
bool soft_format_matches(const std::string& t) {
  const std::string open = "<reasoning>", close = "</reasoning>", a_open = "<answer>", a_close = "</answer>";
  if (t.compare(0, open.size(), open) != 0) return false;
  size_t first_nl = t.find('\n', open.size());
  if (first_nl == std::string::npos) first_nl = t.size();
  // First occurrence of `what` at or after `from`, for non-decreasing `from` (each candidate below starts
  // further right), re-searching only when the cached hit falls behind: linear time overall.
  struct ForwardFind {
    const std::string& t;
    std::string what;
    size_t hit = 0;
    bool valid = false;
    size_t operator()(size_t from) {
      if (!valid || (hit != std::string::npos && hit < from)) hit = t.find(what, from), valid = true;
      return hit;
    }
  } next_a_close{t, a_close}, next_nl{t, "\n"};
  for (size_t i = t.find(close, open.size()); i != std::string::npos && i < first_nl; i = t.find(close, i + 1)) {
    size_t k = skip_py_space(t, i + close.size());
    if (t.compare(k, a_open.size(), a_open) != 0) continue;
    size_t from = k + a_open.size();
    size_t q = next_a_close(from);
    if (q == std::string::npos) return false;  // no "</answer>" after any later start either
    if (q < next_nl(from)) return true;        // npos (no newline) compares greater than any q
  }
  return false;
}

// len(...) * 0.001 subtracted as Python does: product rounded, then difference rounded. The volatile
// keeps a compiler from fusing the two into one FMA (-ffp-contract), which would change the last bit.
void subtract_penalty(double& count, long long chars) {
  volatile double penalty = static_cast<double>(chars) * 0.001;
  count -= penalty;
}

}  // namespace

std::string extract_xml_answer(const std::string& text) {
  std::string answer = after_last(text, "<answer>");
  size_t close = answer.find("</answer>");
  if (close != std::string::npos) answer.resize(close);
  return py_strip(answer);
}

double correctness_reward(const std::string& completion, const std::string& gold) {
  return extract_xml_answer(completion) == gold ? 2.0 : 0.0;
}

double int_reward(const std::string& completion) {
  return py_isdigit(extract_xml_answer(completion)) ? 0.5 : 0.0;
}

double strict_format_reward(const std::string& completion) {
  return strict_format_matches(sanitize_utf8(completion)) ? 0.5 : 0.0;
}

double soft_format_reward(const std::string& completion) {
  return soft_format_matches(sanitize_utf8(completion)) ? 0.5 : 0.0;
}

double xmlcount_reward(const std::string& completion) {
  std::string text = sanitize_utf8(completion);
  double count = 0.0;
  if (py_count(text, "<reasoning>\n") == 1) count += 0.125;
  if (py_count(text, "\n</reasoning>\n") == 1) count += 0.125;
  if (py_count(text, "\n<answer>\n") == 1) {
    count += 0.125;
    subtract_penalty(count, static_cast<long long>(py_len(after_last(text, "\n</answer>\n"))));
  }
  if (py_count(text, "\n</answer>") == 1) {
    count += 0.125;
    // len(...) - 1: the "\n" the format puts after </answer> is free; nothing after it earns +0.001.
    subtract_penalty(count, static_cast<long long>(py_len(after_last(text, "\n</answer>"))) - 1);
  }
  return count;
}

// ============================================================================================
// gsm8k_answer: the final answer compared as a number.
// ============================================================================================
namespace {

bool is_digit(char c) {
  return c >= '0' && c <= '9';
}
bool is_alnum(char c) {
  return is_digit(c) || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

struct NumberSpan {
  double value;
  size_t begin, end;  // byte span in the scanned text, sign included
};

// Every number in `s`, left to right: "-1,234.5", "$-5", "−7" (U+2212), ".5", "3/4" (one number, 0.75).
// Commas group thousands only in runs of exactly three digits, so "1,2,3" is three numbers. A '-' is a
// sign only after a non-alphanumeric, so "18-3" is 18 and 3.
std::vector<NumberSpan> find_numbers(const std::string& s) {
  std::vector<NumberSpan> out;
  const size_t n = s.size();
  auto digits_at = [&](size_t k, size_t count) {
    for (size_t d = 0; d < count; ++d)
      if (k + d >= n || !is_digit(s[k + d])) return false;
    return true;
  };
  for (size_t i = 0; i < n;) {
    bool starts = is_digit(s[i]) || (s[i] == '.' && digits_at(i + 1, 1) && (i == 0 || !is_digit(s[i - 1])));
    if (!starts) {
      ++i;
      continue;
    }
    size_t j = i;
    std::string num;
    while (j < n && is_digit(s[j])) num += s[j++];
    bool plain_int = true;
    if (!num.empty() && num.size() <= 3) {
      while (j < n && s[j] == ',' && digits_at(j + 1, 3) && !digits_at(j + 4, 1)) {
        num.append(s, j + 1, 3);
        j += 4;
        plain_int = false;
      }
    }
    if (j < n && s[j] == '.' && digits_at(j + 1, 1)) {
      num += s[j++];
      while (j < n && is_digit(s[j])) num += s[j++];
      plain_int = false;
    }
    double value = std::strtod(num.c_str(), nullptr);
    if (plain_int) {  // a fraction "a/b" or "a / b" of plain integers
      size_t k = j;
      while (k < n && s[k] == ' ') ++k;
      if (k < n && s[k] == '/') {
        ++k;
        while (k < n && s[k] == ' ') ++k;
        size_t d0 = k;
        while (k < n && is_digit(s[k])) ++k;
        bool decimal_follows = k < n && (s[k] == '.' || s[k] == ',') && digits_at(k + 1, 1);
        if (k > d0 && !decimal_follows) {
          double den = std::strtod(s.substr(d0, k - d0).c_str(), nullptr);
          if (den != 0) {
            value /= den;
            j = k;
          }
        }
      }
    }
    size_t begin = i, p = i;
    if (p > 0 && s[p - 1] == '$') --p;
    size_t minus = std::string::npos;
    if (p >= 1 && s[p - 1] == '-')
      minus = p - 1;
    else if (p >= 3 && s.compare(p - 3, 3, "\xE2\x88\x92") == 0)
      minus = p - 3;  // U+2212 MINUS SIGN
    if (minus != std::string::npos && (minus == 0 || (!is_alnum(s[minus - 1]) && s[minus - 1] != ')'))) {
      value = -value;
      begin = minus;
    }
    out.push_back({value, begin, j});
    i = j;
  }
  return out;
}

// Contents of the balanced {...} opening at s[open] (s[open] == '{'); npos in *end when unbalanced.
std::string brace_group(const std::string& s, size_t open, size_t* end) {
  int depth = 0;
  for (size_t k = open; k < s.size(); ++k) {
    if (s[k] == '{') ++depth;
    if (s[k] == '}' && --depth == 0) {
      *end = k + 1;
      return s.substr(open + 1, k - open - 1);
    }
  }
  *end = std::string::npos;
  return "";
}

void replace_all(std::string& s, const std::string& from, const std::string& to) {
  for (size_t p = s.find(from); p != std::string::npos; p = s.find(from, p + to.size())) s.replace(p, from.size(), to);
}

// Just enough LaTeX for final answers: \frac{a}{b} -> a/b, {,} and \, inside numbers, \$ and \%.
std::string simplify_latex(std::string s) {
  for (const char* cmd : {"\\dfrac", "\\tfrac", "\\frac"}) {
    for (size_t p = s.find(cmd); p != std::string::npos; p = s.find(cmd, p + 1)) {
      size_t a_open = p + std::string(cmd).size(), a_end = 0, b_end = 0;
      if (a_open >= s.size() || s[a_open] != '{') continue;
      std::string a = brace_group(s, a_open, &a_end);
      if (a_end == std::string::npos || a_end >= s.size() || s[a_end] != '{') continue;
      std::string b = brace_group(s, a_end, &b_end);
      if (b_end == std::string::npos) continue;
      s.replace(p, b_end - p, a + "/" + b);
    }
  }
  replace_all(s, "{,}", ",");
  for (const char* thin : {"\\,", "\\!", "\\;", "\\:"}) replace_all(s, thin, "");
  replace_all(s, "\\$", "$");
  replace_all(s, "\\%", "%");
  return s;
}

}  // namespace

std::string extract_final_answer(const std::string& text_in) {
  std::string text = sanitize_utf8(text_in);
  size_t hash = text.rfind("####");
  if (hash != std::string::npos) {
    size_t eol = text.find('\n', hash);
    std::string line = py_strip(text.substr(hash + 4, eol == std::string::npos ? std::string::npos : eol - hash - 4));
    if (!line.empty()) return line;
  }
  // The last \boxed{...} whose braces close (a truncated last one falls back to an earlier one).
  for (size_t p = text.rfind("\\boxed"); p != std::string::npos;
       p = p == 0 ? std::string::npos : text.rfind("\\boxed", p - 1)) {
    size_t open = p + 6, end = 0;
    while (open < text.size() && text[open] == ' ') ++open;
    if (open >= text.size() || text[open] != '{') continue;
    std::string inner = py_strip(brace_group(text, open, &end));
    if (end != std::string::npos && !inner.empty()) return inner;
  }
  if (text.find("<answer>") != std::string::npos) {
    std::string a = extract_xml_answer(text);
    if (!a.empty()) return a;
  }
  auto nums = find_numbers(text);
  if (!nums.empty()) return text.substr(nums.back().begin, nums.back().end - nums.back().begin);
  return "";
}

std::optional<double> parse_answer_number(const std::string& answer) {
  auto nums = find_numbers(simplify_latex(sanitize_utf8(answer)));
  if (nums.empty()) return std::nullopt;
  return nums.back().value;
}

bool numbers_match(double a, double b) {
  if (a == b) return true;
  return std::fabs(a - b) <= 1e-6 * std::max(std::fabs(a), std::fabs(b));
}

double answer_reward(const std::string& completion, const std::string& gold) {
  auto got = parse_answer_number(extract_final_answer(completion));
  auto want = parse_answer_number(gold);
  return got && want && numbers_match(*got, *want) ? 1.0 : 0.0;
}

// ============================================================================================
// --reward
// ============================================================================================
const std::vector<std::pair<std::string, RewardKind>>& reward_kind_choices() {
  static const std::vector<std::pair<std::string, RewardKind>> choices = {{"gsm8k_xml", RewardKind::Gsm8kXml},
                                                                          {"gsm8k_answer", RewardKind::Gsm8kAnswer}};
  return choices;
}

RewardKind parse_reward_kind(const std::string& name) {
  std::string list;
  for (auto& c : reward_kind_choices()) {
    if (c.first == name) return c.second;
    list += (list.empty() ? "" : ", ") + c.first;
  }
  fail("--reward: '", name, "' is not a known reward; choose one of: ", list,
       " (gsm8k_xml = the paper's five XML-format rewards, gsm8k_answer = 1 if the final answer is numerically right)");
}

std::string reward_kind_name(RewardKind kind) {
  for (auto& c : reward_kind_choices())
    if (c.second == kind) return c.first;
  fail("reward_kind_name: unknown RewardKind ", static_cast<int>(kind));
}

RewardBreakdown score_completion(RewardKind kind, const std::string& completion_in, const std::string& gold) {
  std::string completion = sanitize_utf8(completion_in);
  RewardBreakdown r;
  if (kind == RewardKind::Gsm8kXml) {
    r.parts = {{"rewards/xmlcount", xmlcount_reward(completion)},
               {"rewards/soft_format", soft_format_reward(completion)},
               {"rewards/strict_format", strict_format_reward(completion)},
               {"rewards/int", int_reward(completion)},
               {"rewards/correctness", correctness_reward(completion, gold)}};
  } else {
    r.parts = {{"rewards/answer", answer_reward(completion, gold)}};
  }
  for (auto& p : r.parts) r.total += p.second;
  return r;
}

}  // namespace multiref
