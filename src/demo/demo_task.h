// The built-in demo's task family (issue 8): short word problems in GSM8K's mould — numeric answers, worked
// solutions with <<a+b=c>> calculator notes and a "#### N" final line — generated from a seed, so the demo
// needs no download. Also the responses the demo's two references are pretrained on (one keeps the answer
// format but is weak at arithmetic, one is right but sloppy in format) and DPO preference pairs.
// Torch-free: the generator and its tests build without LibTorch.
#pragma once
#include <cstdint>
#include <random>
#include <string>
#include <vector>

namespace multiref {

struct DemoStep {
  int64_t a = 0, b = 0, result = 0;
  char op = '+';             // '+', '-', '*'
  std::string text() const;  // "12 + 7 = 19"
};

struct DemoProblem {
  std::string question;
  std::vector<DemoStep> steps;  // in order; the last result is the answer
  int64_t answer = 0;
  std::string solution;  // GSM8K's "answer" field: sentences with <<12+7=19>> notes, then "#### 19"
};

// n problems from `seed`: one- and two-step additions, subtractions and multiplications with operands below
// `max_operand`, over a few sentence templates, names and objects. Same seed, same problems.
std::vector<DemoProblem> demo_problems(uint64_t seed, int64_t n, int64_t max_operand = 20);

// The paper code's answer format (what the gsm8k_xml reward asks for):
//   "<reasoning>\n12 + 7 = 19, then 19 - 5 = 14\n</reasoning>\n<answer>\n14\n</answer>\n" (one reasoning line)
std::string formatted_response(const std::vector<DemoStep>& steps, int64_t answer);
// The same reasoning without the tags: "12 + 7 = 19. The answer is 19."
std::string sloppy_response(const std::vector<DemoStep>& steps, int64_t answer);

// A copy of `p`'s steps where arithmetic slips with probability `error_rate` per step (a result off by a small
// nonzero amount, carried into the next step), as a weak calculator writes them.
std::vector<DemoStep> noisy_steps(const DemoProblem& p, double error_rate, std::mt19937_64& rng);

// A preference pair for DPO: the chosen response is formatted and correct; the rejected one is wrong (noisy
// arithmetic), unformatted, or both.
struct DemoPair {
  std::string prompt, chosen, rejected;
};
DemoPair demo_pair(const DemoProblem& p, std::mt19937_64& rng);

// Files in the formats the trainers read: GSM8K lines {"question", "answer"} and preference lines
// {"prompt", "chosen", "rejected"}; written atomically.
void write_gsm8k_jsonl(const std::string& path, const std::vector<DemoProblem>& problems);
void write_pairs_jsonl(const std::string& path, const std::vector<DemoPair>& pairs);

}  // namespace multiref
