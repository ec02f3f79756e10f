// The task rewards (--reward / --reward_weights / --reward_program): each built-in on completions whose rewards are
// worked out by hand, the weighted total, what a reward program is sent (with and without text), and every bad
// flag an error before anything runs. Reward models are tested end to end (tests/rl/test_grpo_task.cpp) against
// `multiref reward`.
#include "data/rewards.h"
#include "eval/task_rewards.h"
#include "test_util.h"

using namespace multiref;
using namespace multiref::testing;

namespace {

// Prompts without a tokenizer (ids only); the completions' text is set by hand.
struct World {
  TempDir tmp;
  std::vector<PromptRow> rows;
  std::vector<TaskPrompt> prompts;
  std::vector<std::vector<int64_t>> ids;
  std::vector<TaskCompletion> cs;
  explicit World(const std::string& jsonl) {
    rows = load_prompt_rows(tmp.write("d.jsonl", jsonl), "train");
    for (auto& r : rows) {
      TaskPrompt p;
      p.row = &r;
      p.ids = {1, 2};
      prompts.push_back(p);
    }
  }
  // Completion of prompt `row` with `n` tokens (ids 10, 11, ...) and `text` (nullopt: no tokenizer).
  void add(size_t row, int64_t n, std::optional<std::string> text) {
    ids.emplace_back();
    for (int64_t i = 0; i < n; ++i) ids.back().push_back(10 + i);
    TaskCompletion c;
    c.prompt = &prompts[row];
    c.text = std::move(text);
    cs.push_back(c);
  }
  RewardScores score(TaskRewards& r) {
    for (size_t i = 0; i < cs.size(); ++i) cs[i].ids = &ids[i];
    return r.score(cs);
  }
};

RewardFlags flags(const std::string& reward, std::vector<double> weights = {}) {
  RewardFlags f;
  f.reward = reward;
  f.reward_weights = std::move(weights);
  return f;
}

TaskRewards make(const RewardFlags& f, bool has_text = true) {
  return TaskRewards(f, has_text, /*max_completion_length=*/10, torch::kFloat32, torch::kCPU);
}

}  // namespace

TEST(TaskRewards, RewardNamesSplitOnCommasButKeepARegexWhole) {
  using V = std::vector<std::string>;
  EXPECT_EQ(split_reward_names("gsm8k_xml, exact_match"), (V{"gsm8k_xml", "exact_match"}));
  EXPECT_EQ(split_reward_names("regex:\\d{1,3},exact_match"), (V{"regex:\\d{1,3}", "exact_match"}));
  EXPECT_EQ(split_reward_names("regex:a,b"), (V{"regex:a,b"}));
  EXPECT_EQ(split_reward_names("regex:x,regex:y,length_penalty"), (V{"regex:x", "regex:y", "length_penalty"}));
}

TEST(TaskRewards, BuiltInsByHand) {
  World w(
      "{\"prompt\": \"q\", \"answer\": \" 42 \"}\n"
      "{\"question\": \"How many?\", \"answer\": \"She has 3.\\n#### 1,080\"}\n"
      "{\"prompt\": \"r\", \"answer\": \"1,080\"}\n");
  w.add(0, 3, "  42\n");              // exact after stripping; all digits
  w.add(1, 1, "The answer is 1080");  // numerically right, not the stored string
  w.add(2, 10, "so 1080.");           // a bare final answer as the gold
  w.add(0, 0, "");                    // an empty completion
  auto r = make(flags("exact_match,gsm8k_answer,regex:^\\s*\\d+\\s*$,length_penalty"));
  auto s = w.score(r);
  ASSERT_EQ(s.names,
            (std::vector<std::string>{"exact_match", "gsm8k_answer", "regex:^\\s*\\d+\\s*$", "length_penalty"}));
  // exact_match: " 42 " and "  42\n" strip to "42"; a GSM8K solution is never equal to a short completion.
  EXPECT_EQ(s.values[0], (std::vector<double>{1, 0, 0, 0}));
  // gsm8k_answer: "42" = 42; 1080 = "#### 1,080"; "so 1080." = bare "1,080"; "" has no number.
  EXPECT_EQ(s.values[1], (std::vector<double>{1, 1, 1, 0}));
  // The regex (unanchored search; ^ and $ hold at the string's ends, $ also before a final newline).
  EXPECT_EQ(s.values[2], (std::vector<double>{1, 0, 0, 0}));
  // -tokens / max_completion_length (10).
  EXPECT_EQ(s.values[3], (std::vector<double>{-0.3, -0.1, -1.0, 0.0}));
  for (size_t n = 0; n < 4; ++n)
    EXPECT_DOUBLE_EQ(s.total[n], s.values[0][n] + s.values[1][n] + s.values[2][n] + s.values[3][n]);
  EXPECT_DOUBLE_EQ(s.means.at("rewards/exact_match"), 0.25);
  EXPECT_DOUBLE_EQ(s.means.at("rewards/gsm8k_answer"), 0.75);
  EXPECT_DOUBLE_EQ(s.means.at("rewards/length_penalty"), -1.4 / 4);
  EXPECT_DOUBLE_EQ(s.means.at("rewards/answer"), 0.75) << "gsm8k_answer's metric of old stays";
}

TEST(TaskRewards, Gsm8kXmlTakesItsGoldAsWrittenFromTheRow) {
  World w("{\"question\": \"How many?\", \"answer\": \"3 + 1077\\n#### 1,080\"}\n");
  std::string good = "<reasoning>\nadd\n</reasoning>\n<answer>\n1,080\n</answer>\n";
  w.add(0, 5, good);
  w.add(0, 5, "<reasoning>\nadd\n</reasoning>\n<answer>\n1080\n</answer>\n");
  auto r = make(flags("gsm8k_xml"));
  auto s = w.score(r);
  // Strict format (0.5) + xmlcount (4 tags, nothing after </answer>: 0.5) + correctness (2.0, "1,080" as written);
  // the comma fails isdigit (no int reward), and the soft regex needs "." to cross newlines (Python: no DOTALL).
  EXPECT_DOUBLE_EQ(s.values[0][0], 3.0);
  // "1080" is not the gold as written: no correctness, but an int reward (0.5).
  EXPECT_DOUBLE_EQ(s.values[0][1], 1.5);
  EXPECT_DOUBLE_EQ(s.means.at("rewards/correctness"), 1.0);
  EXPECT_DOUBLE_EQ(s.means.at("rewards/gsm8k_xml"), 2.25);
}

TEST(TaskRewards, WeightedTotal) {
  World w("{\"prompt\": \"q\", \"answer\": \"yes\"}\n");
  w.add(0, 2, "yes");
  w.add(0, 5, "no");
  auto r = make(flags("exact_match,length_penalty", {2.0, -0.5}));
  auto s = w.score(r);
  EXPECT_DOUBLE_EQ(s.total[0], 2.0 * 1 - 0.5 * -0.2);
  EXPECT_DOUBLE_EQ(s.total[1], 2.0 * 0 - 0.5 * -0.5);
  EXPECT_EQ(r.weights(), (std::vector<double>{2.0, -0.5}));
}

TEST(TaskRewards, AProgramIsSentIdsTextAndTheWholeRow) {
  for (bool text : {true, false}) {
    World w("{\"prompt_ids\": [1, 2], \"tests\": [\"assert f(1) == 2\"], \"id\": 7}\n");
    w.add(0, 3, text ? std::optional<std::string>("héllo") : std::nullopt);
    std::string log = w.tmp / "requests.jsonl";
    RewardFlags f;
    f.reward = "length_penalty";
    f.reward_program = "tee " + log + " | sed -u 's/.*/{\"reward\": 0.25}/'";
    f.reward_weights = {1.0, 4.0};
    auto r = make(f, text);
    auto s = w.score(r);
    EXPECT_EQ(s.names, (std::vector<std::string>{"length_penalty", "program"}));
    EXPECT_EQ(s.values[1], std::vector<double>{0.25});
    EXPECT_DOUBLE_EQ(s.total[0], -0.3 + 4 * 0.25);
    auto sent = read_json_lines(log);
    ASSERT_EQ(sent.size(), 1u);
    EXPECT_EQ(sent[0]["prompt_ids"], nlohmann::json({1, 2}));
    EXPECT_EQ(sent[0]["completion_ids"], nlohmann::json({10, 11, 12}));
    EXPECT_EQ(sent[0]["row"], nlohmann::json::parse("{\"prompt_ids\": [1, 2], \"tests\": [\"assert f(1) == 2\"], "
                                                    "\"id\": 7}"));
    EXPECT_EQ(sent[0].contains("completion"), text);
    if (text) {
      EXPECT_EQ(sent[0]["completion"], "héllo");
    }
    EXPECT_FALSE(sent[0].contains("prompt")) << "these test prompts carry no text";
  }
}

TEST(TaskRewards, BadFlagsAreErrorsBeforeAnythingRuns) {
  expect_error([] { flags("accuracy").validate_reward_flags(); }, {"--reward 'accuracy'", "exact_match"});
  expect_error([] { flags("exact_match,exact_match").validate_reward_flags(); }, {"exact_match is given twice"});
  expect_error([] { flags("regex:(a").validate_reward_flags(); }, {"regex:(a", "does not compile"});
  expect_error([] { flags("regex:").validate_reward_flags(); }, {"needs a pattern"});
  expect_error([] { flags("exact_match", {1, 2}).validate_reward_flags(); }, {"2 weights for 1 rewards"});
  expect_error(
      [] {
        auto f = flags("exact_match");
        f.reward_timeout = 0;
        f.validate_reward_flags();
      },
      {"--reward_timeout"});
  expect_error([] { make(RewardFlags{}); }, {"no reward", "--reward_program"});
  // Without a tokenizer there is no text: text rewards say so; length_penalty and programs still work.
  expect_error([] { make(flags("exact_match"), false); }, {"--reward exact_match", "no tokenizer", "--reward_program"});
  EXPECT_NO_THROW(make(flags("length_penalty"), false));
  // A row without the field a reward compares with names the row.
  World w("{\"prompt\": \"q\"}\n");
  w.add(0, 1, "x");
  auto r = make(flags("exact_match"));
  expect_error([&] { w.score(r); }, {"d.jsonl:1", "\"answer\""});
}
