// Reward programs: the line protocol with real child processes (sh and Debian's python3), batches far larger than
// a pipe's buffer, and every way a program can fail ending in an error that says what happened, never a hang.
#include <gtest/gtest.h>

#include <chrono>

#include "data/reward_program.h"
#include "test_util_core.h"

using namespace multiref;
using namespace multiref::testing;

namespace {
nlohmann::json request(std::vector<int64_t> completion) {
  return {{"prompt_ids", {1, 2}}, {"completion_ids", completion}, {"row", {{"answer", "4"}}}};
}
// reward = fraction of even ids in the completion, computed by the program from what multiref sent.
const char* kEvenFraction =
    "/usr/bin/python3 -u -c 'import sys, json\n"
    "for line in sys.stdin:\n"
    "    c = json.loads(line)[\"completion_ids\"]\n"
    "    print(json.dumps({\"reward\": sum(t % 2 == 0 for t in c) / max(1, len(c))}))'";
// Whether a process with exactly this command line exists (read from /proc: no procps needed).
bool process_running(const std::vector<std::string>& argv) {
  std::string want;
  for (auto& a : argv) want += a + '\0';
  for (auto& e : std::filesystem::directory_iterator("/proc")) {
    std::ifstream f(e.path() / "cmdline", std::ios::binary);
    std::string cmd((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
    if (cmd == want) return true;
  }
  return false;
}
}  // namespace

TEST(RewardProgram, AnswersInOrderFromWhatWasSent) {
  RewardProgram p(kEvenFraction, 30);
  auto r = p.score({request({2, 4, 5, 7}), request({1}), request({}), request({8, 8, 8})});
  EXPECT_EQ(r, (std::vector<double>{0.5, 0.0, 0.0, 1.0}));
  // The program keeps running between calls.
  EXPECT_EQ(p.score({request({6, 1})}), (std::vector<double>{0.5}));
}

TEST(RewardProgram, TheReadmeExampleScoresByHand) {
  // examples/last_number_reward.py, the README's example: the last number of the completion against row["answer"].
  RewardProgram p("/usr/bin/python3 " + source_dir() + "/examples/last_number_reward.py", 30);
  auto ask = [](const std::string& completion, nlohmann::json answer) {
    return nlohmann::json{
        {"prompt_ids", {1}}, {"completion_ids", {2}}, {"completion", completion}, {"row", {{"answer", answer}}}};
  };
  auto r = p.score({ask("3 + 4 = 7", "7"), ask("It is 1,080.", 1080), ask("maybe 7 or 8", "7"), ask("none", "1"),
                    ask("-2.5", "-2.5")});
  EXPECT_EQ(r, (std::vector<double>{1, 1, 0, 0, 1}));
}

TEST(RewardProgram, BatchesLargerThanThePipesDoNotDeadlock) {
  // 20,000 requests of ~600 bytes (12 MB) against a program that answers each line as it reads it: multiref must
  // read answers while it is still writing, or both sides block on full pipes.
  RewardProgram p(
      "/usr/bin/python3 -u -c 'import sys\nfor line in sys.stdin:\n    sys.stdout.write(\"{\\\"reward\\\": 2.5}\\n\")'",
      60);
  std::vector<nlohmann::json> reqs;
  std::vector<int64_t> long_completion(120, 7);
  for (int i = 0; i < 20000; ++i) reqs.push_back(request(long_completion));
  auto r = p.score(reqs);
  ASSERT_EQ(r.size(), reqs.size());
  for (double v : r) ASSERT_EQ(v, 2.5);
}

TEST(RewardProgram, BadAnswersQuoteTheLine) {
  expect_error([] { RewardProgram("echo not json", 10).score({request({1})}); },
               {"'echo not json'", "'not json'", "not JSON"});
  expect_error([] { RewardProgram("echo '{\"score\": 1}'", 10).score({request({1})}); },
               {"'{\"score\": 1}'", "without a \"reward\""});
  expect_error([] { RewardProgram("echo '{\"reward\": \"high\"}'", 10).score({request({1})}); }, {"must be a number"});
  // Python's json.dumps(float("nan")) writes NaN, which is not JSON; out-of-range numbers do not parse either.
  expect_error([] { parse_reward_answer("{\"reward\": NaN}", "prog"); }, {"not finite"});
  expect_error([] { parse_reward_answer("{\"reward\": -Infinity}", "prog"); }, {"not finite"});
  expect_error([] { parse_reward_answer("{\"reward\": 1e999}", "prog"); }, {"1e999"});
  EXPECT_EQ(parse_reward_answer("{\"reward\": -0.25, \"info\": \"ok\"}", "prog"), -0.25);
  // A long answer is quoted by its first 200 bytes.
  std::string big(5000, 'x');
  try {
    parse_reward_answer(big, "prog");
    ADD_FAILURE() << "expected an error";
  } catch (const Error& e) {
    std::string msg = e.what();
    EXPECT_LT(msg.size(), 600u);
    EXPECT_NE(msg.find("(5000 bytes in all)"), std::string::npos) << msg;
  }
}

TEST(RewardProgram, EarlyExitAndSilenceAreErrorsNotHangs) {
  expect_error(
      [] {
        RewardProgram("exit 3", 10).score({request({1}), request({2})});
      },
      {"exited with status 3", "after 0 of 2 answers", "completion_ids"});
  expect_error(
      [] {
        RewardProgram("read -r line; echo '{\"reward\": 1}'", 10).score({request({1}), request({2}), request({3})});
      },
      {"after 1 of 3 answers"});
  expect_error([] { RewardProgram("exec 1>&-; sleep 30", 10).score({request({1})}); }, {"closed its output"});
  auto t0 = std::chrono::steady_clock::now();
  expect_error([] { RewardProgram("sleep 30", 0.5).score({request({1})}); },
               {"no answer in 0.5 s", "--reward_timeout"});
  double took = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  EXPECT_LT(took, 5.0) << "the timeout and the shutdown of the silent program must be prompt";
  // What the shell started goes too: a silent grandchild must not outlive the error (it would hold the console).
  expect_error([] { RewardProgram("sleep 31.5; true", 0.3).score({request({1})}); }, {"no answer"});
  EXPECT_FALSE(process_running({"sleep", "31.5"})) << "the shell's child was left running";
  expect_error([] { RewardProgram("", 10); }, {"empty"});
  expect_error([] { RewardProgram("cat", 0); }, {"--reward_timeout"});
}
