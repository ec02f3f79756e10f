// GSM8K loading and the gsm8k_xml / gsm8k_answer rewards. Expected gsm8k_xml values were worked out by
// hand (see the comments) and agree with the paper code's Python functions run on the same strings.
// Torch-free on purpose (test_util_core.h, not test_util.h): build with -DMULTIREF_SOURCE_DIR='"/path/to/repo"'.
#include <gtest/gtest.h>
#include <stdlib.h>

#include <filesystem>
#include <fstream>
#include <functional>

#include "data/gsm8k.h"
#include "data/rewards.h"
#include "test_util_core.h"
#include "util/common.h"

#ifndef MULTIREF_SOURCE_DIR
#error "compile with -DMULTIREF_SOURCE_DIR='\"/path/to/repo\"'"
#endif

using namespace multiref;
using namespace multiref::testing;
namespace fs = std::filesystem;

namespace {

// The first 500 test and 300 train rows of GSM8K (tests/fixtures/README.md).
const std::string kFixtures = std::string(MULTIREF_SOURCE_DIR) + "/tests/fixtures";
const std::string kGsm8k = kFixtures + "/gsm8k";

struct Xml {
  double xmlcount, soft, strict, int_, correctness;
};

void expect_xml(const std::string& completion, const std::string& gold, Xml want) {
  SCOPED_TRACE("completion: " + completion);
  RewardBreakdown r = score_completion(RewardKind::Gsm8kXml, completion, gold);
  ASSERT_EQ(r.parts.size(), 5u);
  std::vector<std::pair<std::string, double>> expected = {{"rewards/xmlcount", want.xmlcount},
                                                          {"rewards/soft_format", want.soft},
                                                          {"rewards/strict_format", want.strict},
                                                          {"rewards/int", want.int_},
                                                          {"rewards/correctness", want.correctness}};
  double total = 0;
  for (size_t i = 0; i < 5; ++i) {
    EXPECT_EQ(r.parts[i].first, expected[i].first);
    // Exact: the C++ does the same float64 operations in the same order as the Python.
    EXPECT_EQ(r.parts[i].second, expected[i].second) << expected[i].first;
    total += expected[i].second;
  }
  EXPECT_EQ(r.total, total);
}

double answer(const std::string& completion, const std::string& gold) {
  return score_completion(RewardKind::Gsm8kAnswer, completion, gold).total;
}

}  // namespace

// ---------------------------------------------------------------- gsm8k_xml ------------------------

TEST(Gsm8kXmlReward, WellFormedCorrectScoresAllButSoft) {
  // count_xml: "<reasoning>\n", "\n</reasoning>\n", "\n<answer>\n", "\n</answer>" each occur once:
  // 4 * 0.125 = 0.5; after the last "\n</answer>\n" comes "" (len 0, -0), after the last "\n</answer>"
  // comes "\n" (len 1, -(1 - 1) * 0.001 = -0). So 0.5.
  // soft_format is 0: without re.DOTALL, ".*?" in "<reasoning>.*?</reasoning>" cannot cross the
  // newlines the format itself asks for. Hence total 3.5, the most the paper's rewards can give.
  std::string c =
      "<reasoning>\nJanet sells 16 - 3 - 4 = 9 eggs and makes 9 * 2 = 18 dollars.\n</reasoning>\n<answer>\n18\n"
      "</answer>\n";
  expect_xml(c, "18", {0.5, 0.0, 0.5, 0.5, 2.0});
  EXPECT_EQ(score_completion(RewardKind::Gsm8kXml, c, "18").total, 3.5);
  EXPECT_EQ(extract_xml_answer(c), "18");
}

TEST(Gsm8kXmlReward, OneLineFormatGetsSoftNotStrict) {
  // No "<reasoning>\n" etc. at all: xmlcount 0. The soft regex matches (one line, anchored at start).
  expect_xml("<reasoning>9 eggs at $2 each.</reasoning>\n<answer>18</answer>", "18", {0.0, 0.5, 0.0, 0.5, 2.0});
  // Python's \s is str.isspace(): NBSP, U+0085 and U+001C count, zero-width space U+200B does not.
  expect_xml("<reasoning>x</reasoning>\u00a0\u0085\x1c<answer>18</answer> tail", "18", {0.0, 0.5, 0.0, 0.5, 2.0});
  expect_xml("<reasoning>x</reasoning>\u200b<answer>18</answer>", "18", {0.0, 0.0, 0.0, 0.5, 2.0});
  // re.match anchors at the start: a leading space fails.
  expect_xml(" <reasoning>x</reasoning><answer>18</answer>", "18", {0.0, 0.0, 0.0, 0.5, 2.0});
}

TEST(Gsm8kXmlReward, StrictFormatQuirks) {
  // '$' also matches before one final '\n': one extra newline still passes, two do not.
  // xmlcount: tail after "\n</answer>\n" = "\n" (1) -> -0.001; after "\n</answer>" = "\n\n" (2) -> -0.001.
  expect_xml("<reasoning>\nx\n</reasoning>\n<answer>\n18\n</answer>\n\n", "18", {0.498, 0.0, 0.5, 0.5, 2.0});
  // tails "\n\n" (2) and "\n\n\n" (3): -0.002 - 0.002.
  expect_xml("<reasoning>\nx\n</reasoning>\n<answer>\n18\n</answer>\n\n\n", "18", {0.496, 0.0, 0.0, 0.5, 2.0});
  // Multi-line reasoning: '.' does not match '\n', so strict fails (xmlcount is still full).
  expect_xml("<reasoning>\nline1\nline2\n</reasoning>\n<answer>\n18\n</answer>\n", "18", {0.5, 0.0, 0.0, 0.5, 2.0});
  // Empty reasoning and answer are fine for the regex; the extracted answer "" equals a gold "".
  expect_xml("<reasoning>\n\n</reasoning>\n<answer>\n\n</answer>\n", "", {0.5, 0.0, 0.5, 0.0, 2.0});
}

TEST(Gsm8kXmlReward, TrailingTextAndMissingTags) {
  // Extra text after </answer>: tail after "\n</answer>\n" = "Thanks!" (7) -> -0.007; after "\n</answer>"
  // = "\nThanks!" (8) -> -(8 - 1) * 0.001 = -0.007. 0.5 - 0.014 = 0.486. Strict fails.
  expect_xml("<reasoning>\nx\n</reasoning>\n<answer>\n18\n</answer>\nThanks!", "18", {0.486, 0.0, 0.0, 0.5, 2.0});
  // No newline after </answer>: "\n</answer>\n" never occurs, so split()[-1] is the whole 48-char text:
  // 0.375 - 0.048; then +0.125 and tail "" gives -(0 - 1) * 0.001 = +0.001. 0.453.
  std::string no_nl = "<reasoning>\nx\n</reasoning>\n<answer>\n18\n</answer>";
  ASSERT_EQ(py_len(no_nl), 48u);
  expect_xml(no_nl, "18", {0.453, 0.0, 0.0, 0.5, 2.0});
  // Truncated before </answer>: the answer still extracts ("18" to the end); 0.375 - 0.038 = 0.337.
  expect_xml("<reasoning>\nx\n</reasoning>\n<answer>\n18", "18", {0.337, 0.0, 0.0, 0.5, 2.0});
  // No tags at all: extract_xml_answer returns the whole stripped text.
  expect_xml("The answer is 18.", "18", {0.0, 0.0, 0.0, 0.0, 0.0});
  EXPECT_EQ(extract_xml_answer("  The answer is 18.\n"), "The answer is 18.");
  // Two answers: the last "<answer>" wins; "\n<answer>\n" occurs twice and "\n</answer>" twice: only the
  // two reasoning tags count. 0.25.
  expect_xml("<reasoning>\nx\n</reasoning>\n<answer>\n5\n</answer>\n<answer>\n18\n</answer>\n", "18",
             {0.25, 0.0, 0.0, 0.5, 2.0});
  // A doubled "</answer>": text.count("\n</answer>\n") is 1 (the second candidate overlaps the first)
  // and text.split("\n</answer>\n")[-1] is "</answer>\n" (10 chars), not "": 0.375 - 0.010 = 0.365.
  // "\n</answer>" occurs twice, so no fourth 0.125.
  expect_xml("<reasoning>\nx\n</reasoning>\n<answer>\n18\n</answer>\n</answer>\n", "18", {0.365, 0.0, 0.0, 0.5, 2.0});
}

TEST(Gsm8kXmlReward, NumbersAreComparedAsStrings) {
  std::string comma = "<reasoning>\nx\n</reasoning>\n<answer>\n1,000\n</answer>\n";
  expect_xml(comma, "1000", {0.5, 0.0, 0.5, 0.0, 0.0});   // "1,000" != "1000", and not isdigit
  expect_xml(comma, "1,000", {0.5, 0.0, 0.5, 0.0, 2.0});  // the paper's own gold keeps the comma
  expect_xml("<reasoning>\nx\n</reasoning>\n<answer>\n18.0\n</answer>\n", "18", {0.5, 0.0, 0.5, 0.0, 0.0});
  expect_xml("<reasoning>\nx\n</reasoning>\n<answer>\n-3\n</answer>\n", "-3", {0.5, 0.0, 0.5, 0.0, 2.0});
  EXPECT_EQ(answer(comma, "1000"), 1.0);  // gsm8k_answer compares values
}

TEST(Gsm8kXmlReward, UnicodeLengthsAreCodePoints) {
  // Tail "¡Olé! 🎉" is 7 code points (12 bytes): -0.007; "\n¡Olé! 🎉" is 8: -(8 - 1) * 0.001. 0.486.
  // Counting bytes would give 0.5 - 0.012 - 0.012 = 0.476.
  std::string tail = "\u00a1Ol\u00e9! \U0001F389";
  ASSERT_EQ(tail.size(), 12u);
  EXPECT_EQ(py_len(tail), 7u);
  std::string c =
      "<reasoning>\nJanet\u2019s ducks: 16 \u2212 3 \u2212 4 = 9 \u00e9\u00e8\n</reasoning>\n<answer>\n18\n"
      "</answer>\n" +
      tail;
  expect_xml(c, "18", {0.486, 0.0, 0.0, 0.5, 2.0});
  // Non-ASCII reasoning on one line passes strict.
  expect_xml("<reasoning>\nJanet\u2019s ducks \u2014 9 \u00d7 2\n</reasoning>\n<answer>\n18\n</answer>\n", "18",
             {0.5, 0.0, 0.5, 0.5, 2.0});
  // Invalid UTF-8 is one U+FFFD per maximal invalid subsequence, as Python's bytes.decode("utf-8", "replace"):
  // len(b"a\xff\xfe".decode(...)) = 3, len(b"a\xe2\x82"...) = 2 (a truncated sequence is one U+FFFD),
  // len(b"\xed\xa0\x80z"...) = 4 (a surrogate's bytes are three), len(b"\xf0\x9f\x98"...) = 1 (Python 3.11).
  EXPECT_EQ(py_len("a\xff\xfe"), 3u);
  EXPECT_EQ(py_len("a\xe2\x82"), 2u);
  EXPECT_EQ(py_len("\xed\xa0\x80z"), 4u);
  EXPECT_EQ(py_len("\xf0\x9f\x98"), 1u);
  EXPECT_DOUBLE_EQ(xmlcount_reward("<reasoning>\nx\n</reasoning>\n<answer>\n18\n</answer>\n\xff\xfe"), 0.496);
}

TEST(Gsm8kXmlReward, PythonStripAndIsdigit) {
  // str.strip() removes U+3000 and U+2003; str.isdigit() accepts Arabic-Indic digits and superscripts.
  expect_xml("<answer>\u3000\u0661\u0668\u2003</answer>", "18", {0.0, 0.0, 0.0, 0.5, 0.0});
  expect_xml("<answer>\u00b2</answer>", "2", {0.0, 0.0, 0.0, 0.5, 0.0});
  EXPECT_EQ(py_strip("\u3000 18\t\u2003\n"), "18");
  EXPECT_EQ(py_strip("\u200b18"), "\u200b18");  // U+200B is not whitespace
  EXPECT_TRUE(py_isdigit("0123456789"));
  EXPECT_FALSE(py_isdigit(""));
  EXPECT_FALSE(py_isdigit("18.0"));
  EXPECT_FALSE(py_isdigit("-3"));
  EXPECT_FALSE(py_isdigit("\u00bd"));     // ½ is numeric but not a digit
  EXPECT_EQ(py_count("aaaa", "aa"), 2u);  // non-overlapping
}

TEST(Gsm8kXmlReward, SystemPromptIsVerbatim) {
  EXPECT_STREQ(kGsm8kXmlSystemPrompt,
               "\nRespond in the following format:\n<reasoning>\n...\n</reasoning>\n<answer>\n...\n</answer>\n");
}

TEST(Rewards, KindNames) {
  EXPECT_EQ(parse_reward_kind("gsm8k_xml"), RewardKind::Gsm8kXml);
  EXPECT_EQ(parse_reward_kind("gsm8k_answer"), RewardKind::Gsm8kAnswer);
  EXPECT_EQ(reward_kind_name(RewardKind::Gsm8kAnswer), "gsm8k_answer");
  EXPECT_EQ(reward_kind_choices().size(), 2u);
  expect_error([] { parse_reward_kind("gsm8k"); }, {"'gsm8k'", "gsm8k_xml", "gsm8k_answer"});
}

// ---------------------------------------------------------------- gsm8k_answer ---------------------

TEST(Gsm8kAnswerReward, ExtractionOrder) {
  EXPECT_EQ(extract_final_answer("so 9 * 2 = 18.\n#### 18"), "18");
  EXPECT_EQ(extract_final_answer("#### 18 dollars\nThe end, 5"), "18 dollars");
  EXPECT_EQ(extract_final_answer("#### 18\n\\boxed{20}"), "18");             // #### first
  EXPECT_EQ(extract_final_answer("<answer>20</answer> \\boxed{18}"), "18");  // then \boxed
  EXPECT_EQ(extract_final_answer("\\boxed{\\frac{3}{4}}"), "\\frac{3}{4}");  // nested braces
  EXPECT_EQ(extract_final_answer("\\boxed{18} then \\boxed{2"), "18");       // unclosed last one
  EXPECT_EQ(extract_final_answer("<reasoning>\n7\n</reasoning>\n<answer>\n 1,000 \n</answer>\n"), "1,000");
  EXPECT_EQ(extract_final_answer("16 - 3 - 4 = 9 eggs, 9 * 2 = 18 dollars."), "18");
  EXPECT_EQ(extract_final_answer("It dropped to -10 degrees"), "-10");
  EXPECT_EQ(extract_final_answer("no digits here"), "");
}

TEST(Gsm8kAnswerReward, NumberNormalization) {
  EXPECT_EQ(parse_answer_number("1,000"), 1000.0);
  EXPECT_EQ(parse_answer_number("$5.00"), 5.0);
  EXPECT_EQ(parse_answer_number("50%"), 50.0);
  EXPECT_EQ(parse_answer_number("3/4"), 0.75);
  EXPECT_EQ(parse_answer_number("\\frac{3}{4}"), 0.75);
  EXPECT_EQ(parse_answer_number("\\dfrac{1}{2}"), 0.5);
  EXPECT_EQ(parse_answer_number("18."), 18.0);
  EXPECT_EQ(parse_answer_number(".5"), 0.5);
  EXPECT_EQ(parse_answer_number("-7"), -7.0);
  EXPECT_EQ(parse_answer_number("\u22127"), -7.0);  // U+2212 MINUS SIGN
  EXPECT_EQ(parse_answer_number("-$7"), -7.0);
  EXPECT_EQ(parse_answer_number("$1,234,567.89"), 1234567.89);
  EXPECT_EQ(parse_answer_number("1{,}234"), 1234.0);
  EXPECT_EQ(parse_answer_number("\\$18"), 18.0);
  EXPECT_EQ(parse_answer_number("18-3"), 3.0);    // a '-' after a digit is subtraction
  EXPECT_EQ(parse_answer_number("1,2,3"), 3.0);   // not thousands groups
  EXPECT_EQ(parse_answer_number("1,0000"), 0.0);  // "1" then "0000"
  EXPECT_FALSE(parse_answer_number("eighteen").has_value());
  EXPECT_FALSE(parse_answer_number("").has_value());
}

TEST(Gsm8kAnswerReward, Scores) {
  EXPECT_EQ(answer("so she makes $18 every day.\n#### 18", "18"), 1.0);
  EXPECT_EQ(answer("#### 1,000", "1000"), 1.0);
  EXPECT_EQ(answer("#### 1000", "1,000"), 1.0);
  EXPECT_EQ(answer("The total is \\boxed{1,234}.", "1234"), 1.0);
  EXPECT_EQ(answer("The answer is $18.", "18"), 1.0);
  EXPECT_EQ(answer("The answer is $18.", "19"), 0.0);
  EXPECT_EQ(answer("<answer>\n18.0\n</answer>", "18"), 1.0);
  EXPECT_EQ(answer("<answer>\n18.5\n</answer>", "18"), 0.0);
  EXPECT_EQ(answer("The temperature fell by -10 degrees", "-10"), 1.0);
  EXPECT_EQ(answer("#### \u221210", "-10"), 1.0);
  EXPECT_EQ(answer("#### 10", "-10"), 0.0);
  EXPECT_EQ(answer("That is 50% of them.\n#### 50%", "50"), 1.0);
  EXPECT_EQ(answer("\\boxed{\\frac{3}{4}}", "0.75"), 1.0);
  EXPECT_EQ(answer("<answer>Eighteen</answer> 18", "18"), 0.0);  // the declared answer has no number
  EXPECT_EQ(answer("I am not sure.", "18"), 0.0);
  RewardBreakdown r = score_completion(RewardKind::Gsm8kAnswer, "#### 18", "18");
  ASSERT_EQ(r.parts.size(), 1u);
  EXPECT_EQ(r.parts[0].first, "rewards/answer");
  EXPECT_EQ(r.total, 1.0);
}

TEST(Gsm8kAnswerReward, RelativeTolerance) {
  EXPECT_TRUE(numbers_match(1e6, 1e6 + 0.5));  // 5e-7 relative
  EXPECT_FALSE(numbers_match(100, 100.001));   // 1e-5 relative
  EXPECT_TRUE(numbers_match(0.1 + 0.2, 0.3));
  EXPECT_TRUE(numbers_match(0, 0));
  EXPECT_FALSE(numbers_match(0, 1e-9));  // relative: nothing but 0 equals 0
}

// ---------------------------------------------------------------- GSM8K data -----------------------

TEST(Gsm8kData, RealTestSplitGolds) {
  std::string data_dir = kFixtures;
  auto probs = load_gsm8k("gsm8k", data_dir, "test");
  ASSERT_EQ(probs.size(), 500u);
  // Read off the file: the first six "#### x" lines.
  const std::vector<std::string> golds = {"18", "3", "70000", "540", "20", "64"};
  for (size_t i = 0; i < golds.size(); ++i) {
    EXPECT_EQ(probs[i].gold, golds[i]) << i;
    EXPECT_EQ(probs[i].gold_raw, golds[i]) << i;
  }
  EXPECT_EQ(probs[0].question.rfind("Janet\u2019s ducks lay 16 eggs per day.", 0), 0u);
  EXPECT_NE(probs[0].solution.find("9 * 2 = $<<9*2=18>>18 every day"), std::string::npos);
  EXPECT_EQ(probs[0].where, data_dir + "/gsm8k/test.jsonl:1");
  // Line 147 is the first test gold with a comma ("#### 2,125"); line 490 is negative ("#### -10").
  EXPECT_EQ(probs[146].gold_raw, "2,125");
  EXPECT_EQ(probs[146].gold, "2125");
  EXPECT_EQ(probs[146].where, data_dir + "/gsm8k/test.jsonl:147");
  EXPECT_EQ(probs[489].gold, "-10");
  // The same file by path; split is ignored for a .jsonl path.
  auto by_path = load_gsm8k(kGsm8k + "/test.jsonl", "/nonexistent", "train");
  EXPECT_EQ(by_path.size(), 500u);
  EXPECT_EQ(by_path[3].gold, "540");
  // Every gold parses as a number, and gsm8k_answer gives the reference solution itself full marks.
  for (auto& p : probs) {
    EXPECT_TRUE(parse_answer_number(p.gold).has_value()) << p.where;
    EXPECT_EQ(answer_reward(p.solution, p.gold), 1.0) << p.where;
    EXPECT_EQ(answer_reward(p.solution, p.gold_raw), 1.0) << p.where;
  }
}

TEST(Gsm8kData, RealTrainSplitLoads) {
  auto probs = load_gsm8k("gsm8k", kFixtures, "train");
  ASSERT_EQ(probs.size(), 300u);
  // Row 1 of the real train split: Natalia's clips, "#### 72".
  EXPECT_EQ(probs[0].gold, "72");
  EXPECT_EQ(probs[0].question.rfind("Natalia sold clips", 0), 0u);
}

TEST(Gsm8kData, MissingFileSaysWhereAndHowToFetch) {
  TempDir t;
  std::string dir = t.path + "/nodata";
  expect_error([&] { load_gsm8k("gsm8k", dir, "train"); },
               {dir + "/gsm8k/train.jsonl", "mkdir -p " + dir + "/gsm8k", "curl -L -o " + dir + "/gsm8k/train.jsonl",
                "https://raw.githubusercontent.com/openai/grade-school-math/master/grade_school_math/data/train.jsonl",
                "MULTIREF_DATA"});
  expect_error([&] { load_gsm8k("gsm8k", dir, "test"); }, {"grade_school_math/data/test.jsonl"});
  expect_error([&] { load_gsm8k(dir + "/mine.jsonl", "", "test"); },
               {dir + "/mine.jsonl", "curl -L -o " + dir + "/mine.jsonl", "data/test.jsonl"});
}

TEST(Gsm8kData, BadDatasetOrSplit) {
  expect_error([] { load_gsm8k("math", "./data", "train"); }, {"'math'", "gsm8k", ".jsonl"});
  expect_error([] { load_gsm8k("gsm8k", "./data", "validation"); }, {"'validation'", "train", "test"});
}

TEST(Gsm8kData, MalformedLinesNameFileAndLine) {
  TempDir t;
  const std::string good = R"({"question": "q?", "answer": "1+1=<<1+1=2>>2\n#### 2"})";
  std::string p = t.write("bad_json.jsonl", good + "\n\n{not json\n");
  expect_error([&] { load_gsm8k(p, "", "train"); }, {p + ":3", "not valid JSON"});
  p = t.write("missing.jsonl", good + "\n" + R"({"question": "q?"})" + "\n");
  expect_error([&] { load_gsm8k(p, "", "train"); }, {p + ":2", "missing field \"answer\""});
  p = t.write("type.jsonl", R"({"question": 5, "answer": "#### 5"})");
  expect_error([&] { load_gsm8k(p, "", "train"); }, {p + ":1", "\"question\" must be a string"});
  p = t.write("nohash.jsonl", good + "\n" + R"({"question": "q?", "answer": "it is 5"})" + "\n");
  expect_error([&] { load_gsm8k(p, "", "train"); }, {p + ":2", "####"});
  p = t.write("emptyfinal.jsonl", R"({"question": "q?", "answer": "it is 5\n#### "})");
  expect_error([&] { load_gsm8k(p, "", "train"); }, {p + ":1", "nothing after '####'"});
  p = t.write("array.jsonl", "[1, 2]\n");
  expect_error([&] { load_gsm8k(p, "", "train"); }, {p + ":1", "JSON object"});
  p = t.write("empty.jsonl", "\n\n");
  expect_error([&] { load_gsm8k(p, "", "train"); }, {p, "no problems"});
}

TEST(Gsm8kData, CustomFileAndGoldForms) {
  TempDir t;
  std::string p = t.write("mine.jsonl", R"({"question": "How many?", "answer": "Lots.\n#### 1,234,000"})"
                                        "\n"
                                        R"({"question": "Q2", "answer": "x\n####   -7  "})"
                                        "\n");
  auto probs = load_gsm8k(p, "", "test");
  ASSERT_EQ(probs.size(), 2u);
  EXPECT_EQ(probs[0].question, "How many?");
  EXPECT_EQ(probs[0].gold_raw, "1,234,000");
  EXPECT_EQ(probs[0].gold, "1234000");
  EXPECT_EQ(probs[1].gold, "-7");
  EXPECT_EQ(probs[1].where, p + ":2");
  EXPECT_EQ(gsm8k_gold_raw("a #### 5 #### 6", "x"), "5");  // text.split("####")[1]
}

TEST(Gsm8kData, DefaultDataDir) {
  const char* old = getenv("MULTIREF_DATA");
  std::string saved = old ? old : "";
  unsetenv("MULTIREF_DATA");
  EXPECT_EQ(default_data_dir(), "./data");
  setenv("MULTIREF_DATA", "/srv/data", 1);
  EXPECT_EQ(default_data_dir(), "/srv/data");
  setenv("MULTIREF_DATA", "", 1);
  EXPECT_EQ(default_data_dir(), "./data");
  if (old)
    setenv("MULTIREF_DATA", saved.c_str(), 1);
  else
    unsetenv("MULTIREF_DATA");
}
