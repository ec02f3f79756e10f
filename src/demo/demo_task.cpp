#include "demo/demo_task.h"

#include <nlohmann/json.hpp>

#include "util/common.h"

namespace multiref {

namespace {

const char* kNames[] = {"Sam", "Lena", "Omar", "Mia", "Kofi", "Ana", "Ravi", "Yuki", "Tom", "Zoe"};
const char* kItems[] = {"apples", "marbles", "stickers", "books", "coins", "shells", "pencils", "cards"};

// rng() % n is used instead of std distributions, whose output differs between standard libraries.
int64_t pick(std::mt19937_64& rng, int64_t lo, int64_t hi) {
  return lo + (int64_t)(rng() % (uint64_t)(hi - lo + 1));
}

DemoStep step(int64_t a, char op, int64_t b) {
  DemoStep s;
  s.a = a;
  s.b = b;
  s.op = op;
  s.result = op == '+' ? a + b : op == '-' ? a - b : a * b;
  return s;
}

std::string note(const DemoStep& s) {
  return cat(s.a, " ", s.op, " ", s.b, " = <<", s.a, s.op, s.b, "=", s.result, ">>", s.result);
}

}  // namespace

std::string DemoStep::text() const {
  return cat(a, " ", op, " ", b, " = ", result);
}

std::vector<DemoProblem> demo_problems(uint64_t seed, int64_t n, int64_t max_operand) {
  std::mt19937_64 rng(seed);
  std::vector<DemoProblem> out;
  for (int64_t i = 0; i < n; ++i) {
    DemoProblem p;
    std::string name = kNames[rng() % std::size(kNames)], item = kItems[rng() % std::size(kItems)];
    int64_t kind = pick(rng, 0, 4);
    int64_t a = pick(rng, 2, max_operand), b = pick(rng, 2, max_operand);
    std::string q, sol;
    switch (kind) {
      case 0:
        p.steps = {step(a, '+', b)};
        q = cat(name, " has ", a, " ", item, ". ", name, " finds ", b, " more. How many ", item, " does ", name,
                " have now?");
        sol = cat(name, " has ", note(p.steps[0]), " ", item, " now.");
        break;
      case 1:
        if (b > a) std::swap(a, b);
        p.steps = {step(a, '-', b)};
        q = cat(name, " has ", a, " ", item, " and gives ", b, " to a friend. How many ", item, " are left?");
        sol = cat(name, " has ", note(p.steps[0]), " ", item, " left.");
        break;
      case 2: {
        int64_t k = pick(rng, 2, 9);
        p.steps = {step(k, '*', b)};
        q = cat(name, " buys ", k, " bags with ", b, " ", item, " in each bag. How many ", item, " is that?");
        sol = cat("That is ", note(p.steps[0]), " ", item, ".");
        break;
      }
      case 3: {
        int64_t c = pick(rng, 1, a + b - 1);
        p.steps = {step(a, '+', b), step(a + b, '-', c)};
        q = cat(name, " has ", a, " ", item, ", gets ", b, " more, then loses ", c, ". How many ", item, " does ", name,
                " have?");
        sol = cat("After getting more, ", name, " has ", note(p.steps[0]), " ", item, ". After losing some, ", name,
                  " has ", note(p.steps[1]), ".");
        break;
      }
      default: {
        int64_t k = pick(rng, 2, 5), c = pick(rng, 2, max_operand);
        p.steps = {step(k, '*', b), step(k * b, '+', c)};
        q = cat(name, " packs ", k, " boxes of ", b, " ", item, " and has ", c, " loose ones. How many ", item,
                " are there in all?");
        sol = cat("The boxes hold ", note(p.steps[0]), " ", item, ". With the loose ones there are ", note(p.steps[1]),
                  ".");
        break;
      }
    }
    p.question = q;
    p.answer = p.steps.back().result;
    p.solution = cat(sol, "\n#### ", p.answer);
    out.push_back(std::move(p));
  }
  return out;
}

std::string formatted_response(const std::vector<DemoStep>& steps, int64_t answer) {
  // One line of reasoning: the paper code's strict-format regex has no DOTALL, so a reasoning block spanning
  // lines never earns its 0.5.
  std::string r;
  for (auto& s : steps) r += (r.empty() ? "" : ", then ") + s.text();
  return cat("<reasoning>\n", r, "\n</reasoning>\n<answer>\n", answer, "\n</answer>\n");
}

std::string sloppy_response(const std::vector<DemoStep>& steps, int64_t answer) {
  std::string r;
  for (auto& s : steps) r += s.text() + ". ";
  return cat(r, "The answer is ", answer, ".");
}

std::vector<DemoStep> noisy_steps(const DemoProblem& p, double error_rate, std::mt19937_64& rng) {
  std::vector<DemoStep> out;
  int64_t carry = 0;
  bool first = true;
  for (auto s : p.steps) {
    if (!first) s.a = carry;  // a slip propagates into the next step
    s.result = s.op == '+' ? s.a + s.b : s.op == '-' ? s.a - s.b : s.a * s.b;
    if ((double)(rng() % 1000000) / 1e6 < error_rate) {
      int64_t d = pick(rng, 1, 3);
      s.result += rng() % 2 ? d : -d;
    }
    carry = s.result;
    first = false;
    out.push_back(s);
  }
  return out;
}

DemoPair demo_pair(const DemoProblem& p, std::mt19937_64& rng) {
  DemoPair d;
  d.prompt = p.question;
  d.chosen = formatted_response(p.steps, p.answer);
  auto wrong = noisy_steps(p, 1.0, rng);                          // every step slips
  if (wrong.back().result == p.answer) wrong.back().result += 1;  // two slips can cancel: keep it wrong
  switch (rng() % 3) {
    case 0:
      d.rejected = formatted_response(wrong, wrong.back().result);
      break;
    case 1:
      d.rejected = sloppy_response(p.steps, p.answer);
      break;
    default:
      d.rejected = sloppy_response(wrong, wrong.back().result);
      break;
  }
  return d;
}

void write_gsm8k_jsonl(const std::string& path, const std::vector<DemoProblem>& problems) {
  std::string s;
  for (auto& p : problems) s += nlohmann::json({{"question", p.question}, {"answer", p.solution}}).dump() + "\n";
  write_file_atomic(path, s);
}

void write_pairs_jsonl(const std::string& path, const std::vector<DemoPair>& pairs) {
  std::string s;
  for (auto& p : pairs)
    s += nlohmann::json({{"prompt", p.prompt}, {"chosen", p.chosen}, {"rejected", p.rejected}}).dump() + "\n";
  write_file_atomic(path, s);
}

}  // namespace multiref
