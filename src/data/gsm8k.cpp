#include "data/gsm8k.h"

#include <cstdlib>

#include "util/common.h"
#include "util/jsonl.h"

namespace multiref {

namespace {

const char* kGsm8kUrl = "https://raw.githubusercontent.com/openai/grade-school-math/master/grade_school_math/data/";

bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

// Python's str.strip() on the ASCII whitespace it removes (GSM8K's final answers are ASCII, so the
// Unicode spaces str.strip() also removes never occur there).
std::string strip_ascii(const std::string& s) {
  const char* ws = " \t\n\r\v\f";
  size_t b = s.find_first_not_of(ws);
  if (b == std::string::npos) return "";
  return s.substr(b, s.find_last_not_of(ws) - b + 1);
}

std::string shell_quote(const std::string& s) {
  if (s.find_first_not_of("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-./") == std::string::npos)
    return s;
  std::string out = "'";
  for (char c : s) out += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return out + "'";
}

}  // namespace

std::string default_data_dir() {
  const char* env = std::getenv("MULTIREF_DATA");
  return env && *env ? std::string(env) : std::string("./data");
}

std::string gsm8k_fetch_command(const std::string& dest, const std::string& split) {
  std::string file = (split == "test" ? "test" : "train") + std::string(".jsonl");
  std::string cmd;
  size_t slash = dest.rfind('/');
  if (slash != std::string::npos && slash > 0) cmd = "mkdir -p " + shell_quote(dest.substr(0, slash)) + " && ";
  return cmd + "curl -L -o " + shell_quote(dest) + " " + kGsm8kUrl + file;
}

std::string resolve_gsm8k_path(const std::string& dataset_or_path, const std::string& data_dir,
                               const std::string& split) {
  std::string path;
  if (ends_with(dataset_or_path, ".jsonl")) {
    path = dataset_or_path;
  } else if (dataset_or_path == "gsm8k") {
    if (split != "train" && split != "test")
      fail("--dataset gsm8k: split '", split, "' does not exist; GSM8K has 'train' (7473 problems) and 'test' (1319)");
    path = join_path(join_path(data_dir, "gsm8k"), split + ".jsonl");
  } else {
    fail("--dataset '", dataset_or_path,
         "' is not a known dataset: use 'gsm8k' (reads <data_dir>/gsm8k/{train,test}.jsonl) or a path to a "
         ".jsonl file of {\"question\", \"answer\"} lines");
  }
  if (!file_exists(path)) {
    // Say where we looked and how to get the file there, so the fix is one copy-paste.
    std::string msg = cat(path, ": GSM8K file not found");
    if (dataset_or_path == "gsm8k")
      msg += cat(" (looked under the data dir '", data_dir, "'; set it with --data_dir or $MULTIREF_DATA)");
    fail(msg, ". Fetch the official release with:\n  ", gsm8k_fetch_command(path, split));
  }
  return path;
}

std::string gsm8k_gold_raw(const std::string& solution, const std::string& where) {
  size_t p = solution.find("####");
  if (p == std::string::npos)
    fail(where,
         ": the \"answer\" field has no '#### <final answer>' line (GSM8K solutions end with one, "
         "e.g. \"... so she makes $18.\\n#### 18\")");
  // text.split("####")[1]: up to a second "####" if there is one.
  size_t start = p + 4, end = solution.find("####", start);
  std::string gold = strip_ascii(solution.substr(start, end == std::string::npos ? std::string::npos : end - start));
  if (gold.empty()) fail(where, ": nothing after '####' in the \"answer\" field; write the final answer there");
  return gold;
}

std::string gsm8k_gold(const std::string& solution, const std::string& where) {
  std::string out;
  for (char c : gsm8k_gold_raw(solution, where))
    if (c != ',') out += c;
  if (out.empty()) fail(where, ": the final answer after '####' is only commas");
  return out;
}

std::vector<MathProblem> load_gsm8k(const std::string& dataset_or_path, const std::string& data_dir,
                                    const std::string& split) {
  std::string path = resolve_gsm8k_path(dataset_or_path, data_dir, split);
  std::vector<MathProblem> out;
  for (auto& row : read_jsonl(path)) {
    MathProblem p;
    p.where = row.where;
    for (const char* key : {"question", "answer"}) {
      auto it = row.value.find(key);
      if (it == row.value.end())
        fail(row.where, ": missing field \"", key, "\" (each GSM8K line is {\"question\": ..., \"answer\": ...})");
      if (!it->is_string()) fail(row.where, ": field \"", key, "\" must be a string, got ", it->type_name());
    }
    p.question = row.value["question"].get<std::string>();
    p.solution = row.value["answer"].get<std::string>();
    if (trim(p.question).empty()) fail(row.where, ": \"question\" is empty");
    p.gold_raw = gsm8k_gold_raw(p.solution, row.where);
    p.gold = gsm8k_gold(p.solution, row.where);
    out.push_back(std::move(p));
  }
  if (out.empty()) fail(path, ": no problems in the file (it is empty or blank)");
  return out;
}

}  // namespace multiref
