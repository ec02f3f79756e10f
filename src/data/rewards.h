// Rule-based rewards for GSM8K completions (`--reward`), standard C++ only:
//   gsm8k_xml    the paper code's five reward functions: the "GRPO on GSM8K" recipe of willccbb's
//                grpo_demo.py, reproduced with Python semantics (re.match without DOTALL, str.strip,
//                str.isdigit, len() in code points);
//   gsm8k_answer 1.0 when the completion's final answer equals the gold numerically, else 0.0.
#pragma once
#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace multiref {

enum class RewardKind { Gsm8kXml, Gsm8kAnswer };

// {"gsm8k_xml", "gsm8k_answer"}, for FlagTable::add_enum.
const std::vector<std::pair<std::string, RewardKind>>& reward_kind_choices();
// Unknown names are an Error listing the choices.
RewardKind parse_reward_kind(const std::string& name);
std::string reward_kind_name(RewardKind kind);

// grpo_demo.py's SYSTEM_PROMPT verbatim. It is a Python triple-quoted string that opens and closes
// with a newline, so those two newlines are part of it (and of the tokens the policy was trained on).
extern const char* const kGsm8kXmlSystemPrompt;

struct RewardBreakdown {
  double total = 0;
  // Metric key -> value, e.g. {"rewards/correctness", 2.0}; total is their sum in this order.
  std::vector<std::pair<std::string, double>> parts;
};

// Scores one completion. Gsm8kXml parts, in the paper's reward_funcs order: rewards/xmlcount,
// rewards/soft_format, rewards/strict_format, rewards/int, rewards/correctness. Gsm8kAnswer: rewards/answer.
// Invalid UTF-8 in `completion` is read as U+FFFD per bad byte (Python only ever sees decoded text).
RewardBreakdown score_completion(RewardKind kind, const std::string& completion, const std::string& gold);

// ---- gsm8k_xml: the paper code's functions, one completion at a time ----------------------------
// text.split("<answer>")[-1].split("</answer>")[0].strip()
std::string extract_xml_answer(const std::string& text);
double correctness_reward(const std::string& completion, const std::string& gold);  // 2.0 if extracted == gold
double int_reward(const std::string& completion);                                   // 0.5 if extracted.isdigit()
double strict_format_reward(const std::string& completion);                         // 0.5 if the strict regex matches
double soft_format_reward(const std::string& completion);                           // 0.5 if the soft regex matches
double xmlcount_reward(const std::string& completion);                              // count_xml(completion)

// ---- gsm8k_answer: numeric equivalence ----------------------------------------------------------
// The completion's final answer as written: the rest of the line after the last "####"; else the
// contents of the last balanced \boxed{...}; else what extract_xml_answer gives when "<answer>" occurs;
// else the last number in the text; else "". The first of these that is present and non-empty wins.
std::string extract_final_answer(const std::string& text);
// The value of an answer string: LaTeX \frac{a}{b}, {,}, \, \! \$ \% are simplified (other commands,
// e.g. \text{...}, are skipped over as non-digits), then the last number in it is read:
// "1,000" -> 1000, "$5.00" -> 5, "50%" -> 50, "3/4" -> 0.75, "18." -> 18, "-7" / "−7" -> -7.
// nullopt when it holds no number.
std::optional<double> parse_answer_number(const std::string& answer);
// |a - b| <= 1e-6 * max(|a|, |b|): relative, so 0 only equals 0.
bool numbers_match(double a, double b);
// 1.0 when the final answer of `completion` and `gold` parse and match, else 0.0.
double answer_reward(const std::string& completion, const std::string& gold);

// ---- Python string semantics the paper's rewards depend on ---------------------------------------
size_t py_len(const std::string& utf8);                            // len(): code points, not bytes
std::string py_strip(const std::string& utf8);                     // str.strip(): Unicode whitespace (str.isspace)
bool py_isdigit(const std::string& utf8);                          // str.isdigit(): non-empty, all Unicode digits
size_t py_count(const std::string& text, const std::string& sub);  // str.count(): non-overlapping

}  // namespace multiref
