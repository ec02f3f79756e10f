// GSM8K (grade-school math word problems) as the gsm8k_grpo pipeline reads it: one JSON object per line,
// {"question": str, "answer": str}, where "answer" is the worked solution ending in a line "#### <final>".
// Pure standard library + nlohmann/json, so data code builds and tests without torch.
#pragma once
#include <string>
#include <vector>

namespace multiref {

struct MathProblem {
  std::string question;
  std::string solution;  // the whole "answer" field: worked solution with <<calc>> notes and "#### <final>"
  // The final answer compared numerically: text after "####", trimmed, thousands commas removed
  // ("1,080" -> "1080"), because 93 of the 8792 GSM8K golds are written with commas.
  std::string gold;
  // The paper code's extract_hash_answer(): text.split("####")[1].strip(), commas kept ("1,080"). Its
  // correctness reward compares strings exactly, so pass this one to score_completion(Gsm8kXml, ...) to
  // reproduce the paper's reward bit for bit (there a model answering "1080" to a "1,080" gold scores 0).
  std::string gold_raw;
  std::string where;  // "path:line", for messages about this problem
};

// $MULTIREF_DATA when set and non-empty, else "./data".
std::string default_data_dir();

// Which file `--dataset X` names:
//   X ends with ".jsonl"  -> X itself (split is ignored);
//   X == "gsm8k"          -> data_dir/gsm8k/<split>.jsonl, split being "train" or "test".
// Anything else is an Error listing the accepted forms. A missing file is an Error that says where it
// looked and gives the one command that fetches the official release to that place.
std::string resolve_gsm8k_path(const std::string& dataset_or_path, const std::string& data_dir,
                               const std::string& split);

// Loads every problem of the resolved file, in file order. Malformed lines (not JSON, "question" or
// "answer" missing or not a string, no "####", empty final answer) are Errors naming file:line; an
// empty file is an Error too.
std::vector<MathProblem> load_gsm8k(const std::string& dataset_or_path, const std::string& data_dir,
                                    const std::string& split);

// The two gold forms of one solution text (see MathProblem); `where` prefixes the error when the
// solution has no "####" or nothing after it.
std::string gsm8k_gold_raw(const std::string& solution, const std::string& where);
std::string gsm8k_gold(const std::string& solution, const std::string& where);

// The command that downloads GSM8K's `split` file from the official repository to `dest`.
std::string gsm8k_fetch_command(const std::string& dest, const std::string& split);

}  // namespace multiref
