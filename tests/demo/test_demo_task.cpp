// The demo's generated task family against GSM8K's own conventions (gold parsing, calculator notes) and the
// paper code's reward functions, which define what "formatted" and "correct" mean for the demo.
#include <set>

#include "data/gsm8k.h"
#include "data/rewards.h"
#include "demo/demo_task.h"
#include "test_util.h"

using namespace multiref;

namespace {

int64_t apply(const DemoStep& s) {
  return s.op == '+' ? s.a + s.b : s.op == '-' ? s.a - s.b : s.a * s.b;
}

double part(const RewardBreakdown& r, const std::string& key) {
  for (auto& [k, v] : r.parts)
    if (k == key) return v;
  ADD_FAILURE() << "no reward part " << key;
  return -1;
}

}  // namespace

TEST(DemoTask, ProblemsAreSeededConsistentAndGsm8kShaped) {
  auto a = demo_problems(7, 300), b = demo_problems(7, 300), c = demo_problems(8, 300);
  ASSERT_EQ(a.size(), 300u);
  std::set<std::string> questions;
  int differs = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    EXPECT_EQ(a[i].question, b[i].question);
    differs += a[i].question != c[i].question;
    questions.insert(a[i].question);
    const auto& p = a[i];
    ASSERT_FALSE(p.steps.empty());
    for (size_t k = 0; k < p.steps.size(); ++k) {
      EXPECT_EQ(p.steps[k].result, apply(p.steps[k])) << p.question;
      if (k > 0) {
        EXPECT_EQ(p.steps[k].a, p.steps[k - 1].result) << p.question;
      }
      // GSM8K's calculator note for every step, e.g. <<12+7=19>>.
      auto s = p.steps[k];
      EXPECT_NE(p.solution.find("<<" + std::to_string(s.a) + s.op + std::to_string(s.b) + "=" +
                                std::to_string(s.result) + ">>"),
                std::string::npos)
          << p.solution;
    }
    EXPECT_EQ(p.answer, p.steps.back().result);
    EXPECT_GE(p.answer, 0) << p.question;
    EXPECT_EQ(gsm8k_gold(p.solution, "demo"), std::to_string(p.answer));
    EXPECT_EQ(p.question.back(), '?');
  }
  EXPECT_GT(differs, 250) << "another seed gives other problems";
  EXPECT_GT(questions.size(), 250u) << "problems repeat too often";
}

TEST(DemoTask, ResponsesScoreAsTheirDesignUnderThePaperRewards) {
  std::mt19937_64 rng(3);
  for (auto& p : demo_problems(11, 100)) {
    auto gold = std::to_string(p.answer);
    auto good = score_completion(RewardKind::Gsm8kXml, formatted_response(p.steps, p.answer), gold);
    EXPECT_EQ(part(good, "rewards/correctness"), 2.0);
    EXPECT_EQ(part(good, "rewards/strict_format"), 0.5);
    EXPECT_EQ(part(good, "rewards/int"), 0.5);
    EXPECT_DOUBLE_EQ(part(good, "rewards/xmlcount"), 0.5);
    // Sloppy but right: no credit from the XML reward's correctness, full credit from the numeric one.
    auto sloppy = sloppy_response(p.steps, p.answer);
    EXPECT_EQ(part(score_completion(RewardKind::Gsm8kXml, sloppy, gold), "rewards/correctness"), 0.0) << sloppy;
    EXPECT_GT(score_completion(RewardKind::Gsm8kAnswer, sloppy, gold).total, 0.0) << sloppy;
    // The preference pair: the chosen response beats the rejected one under the XML reward.
    auto pair = demo_pair(p, rng);
    EXPECT_EQ(pair.prompt, p.question);
    EXPECT_GT(score_completion(RewardKind::Gsm8kXml, pair.chosen, gold).total,
              score_completion(RewardKind::Gsm8kXml, pair.rejected, gold).total)
        << pair.rejected;
  }
}

TEST(DemoTask, NoisyStepsSlipAtTheGivenRate) {
  std::mt19937_64 rng(5);
  auto problems = demo_problems(2, 2000);
  int64_t slips = 0, steps = 0;
  for (auto& p : problems) {
    auto exact = noisy_steps(p, 0.0, rng);
    for (size_t k = 0; k < p.steps.size(); ++k) EXPECT_EQ(exact[k].result, p.steps[k].result);
    auto noisy = noisy_steps(p, 0.3, rng);
    for (size_t k = 0; k < noisy.size(); ++k) {
      ++steps;
      slips += noisy[k].result != apply(noisy[k]);
    }
  }
  double rate = (double)slips / (double)steps;
  EXPECT_NEAR(rate, 0.3, 0.03) << slips << " of " << steps;
}
