// Reward models: `multiref reward` against the golden rewards of an independent float64 PyTorch script
// (tests/golden/make_golden.py), conversations against their hand-rendered token ids, `multiref eval rm` end to
// end on tiny models (trained tokenizer, random policies and reward model), and the errors.
#include <cmath>
#include <fstream>

#include "eval/eval_rm.h"
#include "test_util.h"

using namespace multiref;
using namespace multiref::testing;

namespace {

void write_jsonl(const std::string& path, const std::vector<nlohmann::json>& rows) {
  std::ofstream out(path);
  for (auto& r : rows) out << r.dump() << "\n";
}

std::vector<nlohmann::json> read_jsonl_file(const std::string& path) {
  std::vector<nlohmann::json> out;
  std::ifstream in(path);
  for (std::string line; std::getline(in, line);)
    if (!line.empty()) out.push_back(nlohmann::json::parse(line));
  return out;
}

std::vector<double> rewards_of(const std::string& path) {
  std::vector<double> out;
  for (auto& j : read_jsonl_file(path)) out.push_back(j.at("reward").get<double>());
  return out;
}

CommandResult reward(const std::string& model, const std::string& in, const std::string& out,
                     const std::string& extra = "") {
  return run_command(multiref_binary() + " reward --model " + model + " --input " + in + " --output " + out +
                     " --threads 1 " + extra);
}

void must_run(const std::string& cmd) {
  auto r = run_command(cmd);
  ASSERT_EQ(r.exit_code, 0) << cmd << "\n" << r.output;
}

// A trained ChatML tokenizer shared by two tiny causal policies and a tiny sequence-classification reward
// model, plus a small preference file in the flat UltraFeedback shape.
struct RmWorld {
  TempDir tmp;
  std::string tok, policy, other, rm, prefs;
  std::vector<nlohmann::json> pref_rows;
  RmWorld() {
    std::string corpus;
    for (int i = 0; i < 60; ++i)
      corpus += "What is the colour of the sky on day " + std::to_string(i) +
                "? The sky is blue, the grass is green and the sun is bright. Please answer briefly.\n";
    std::ofstream(tmp / "corpus.txt") << corpus;
    tok = tmp / "tok";
    policy = tmp / "policy";
    other = tmp / "other";
    rm = tmp / "rm";
    must_run(multiref_binary() + " train-tokenizer --input " + (tmp / "corpus.txt") + " --vocab_size 400 --output " +
             tok);
    must_run(multiref_binary() + " init --arch qwen2 --preset tiny --seed 1 --tokenizer " + tok + " --output_dir " +
             policy);
    must_run(multiref_binary() + " init --arch llama --preset tiny --seed 2 --tokenizer " + tok + " --output_dir " +
             other);
    must_run(multiref_binary() + " init --arch qwen2 --preset tiny --head seq_cls --seed 3 --tokenizer " + tok +
             " --output_dir " + rm);
    for (int i = 0; i < 5; ++i)
      pref_rows.push_back({{"prompt", "What is the colour of the sky on day " + std::to_string(i) + "?"},
                           {"chosen", "The sky is blue."},
                           {"rejected", "The grass is " + std::string(i % 2 ? "green" : "bright") + "."}});
    prefs = tmp / "prefs.jsonl";
    write_jsonl(prefs, pref_rows);
  }
};

nlohmann::json messages(const std::vector<std::pair<std::string, std::string>>& turns) {
  nlohmann::json j = nlohmann::json::array();
  for (auto& [role, content] : turns) j.push_back({{"role", role}, {"content", content}});
  return j;
}

}  // namespace

TEST(Reward, GoldenRewardsOfSequenceClassifierInAnyBatching) {
  auto g = nlohmann::json::parse(read_file(golden_dir("llama_seqcls") + "/golden.json"));
  auto seqs = g["sequences"].get<std::vector<std::vector<int64_t>>>();
  auto want = g["rewards"].get<std::vector<double>>();
  ASSERT_EQ(seqs.size(), 4u);
  // Lengths 1, 5, 9 and 12 shuffled, one repeated: batches mix lengths and the output must keep line order.
  std::vector<size_t> order = {2, 0, 3, 1, 0, 2};
  TempDir tmp;
  std::vector<nlohmann::json> lines;
  for (size_t k : order) lines.push_back({{"input_ids", seqs[k]}});
  write_jsonl(tmp / "in.jsonl", lines);
  for (int bs : {1, 2, 3, 8}) {
    auto out = tmp / ("out" + std::to_string(bs) + ".jsonl");
    auto r = reward(golden_dir("llama_seqcls"), tmp / "in.jsonl", out, "--batch_size " + std::to_string(bs));
    ASSERT_EQ(r.exit_code, 0) << r.output;
    auto got = rewards_of(out);
    ASSERT_EQ(got.size(), order.size());
    for (size_t i = 0; i < order.size(); ++i)
      EXPECT_NEAR(got[i], want[order[i]], 1e-4) << "batch_size " << bs << ", line " << i + 1;
  }
}

TEST(Reward, MessagesScoreAsTheirTemplatedTokenIds) {
  RmWorld w;
  auto conv = messages(
      {{"system", "Answer briefly."}, {"user", "What is the colour of the sky?"}, {"assistant", "The sky is blue."}});
  auto conv2 = messages({{"system", "Answer briefly."},
                         {"user", "What is the colour of the sky?"},
                         {"assistant", "The grass is green."}});
  // The renderings written out by hand: the trained tokenizer's ChatML template, no generation prompt after
  // the assistant's turn; and the plain format (contents followed by blank lines).
  std::string chatml =
      "<|im_start|>system\nAnswer briefly.<|im_end|>\n<|im_start|>user\nWhat is the colour of the sky?<|im_end|>\n"
      "<|im_start|>assistant\nThe sky is blue.<|im_end|>\n";
  std::string plain = "Answer briefly.\n\nWhat is the colour of the sky?\n\nThe sky is blue.\n\n";
  write_jsonl(w.tmp / "texts.jsonl", {{{"text", chatml}}, {{"text", plain}}});
  must_run(multiref_binary() + " tokenize --tokenizer " + w.tok + " --input " + (w.tmp / "texts.jsonl") + " --output " +
           (w.tmp / "ids.jsonl"));
  auto ids = read_jsonl_file(w.tmp / "ids.jsonl");
  ASSERT_EQ(ids.size(), 2u);

  write_jsonl(
      w.tmp / "in.jsonl",
      {{{"messages", conv}}, {{"input_ids", ids[0]["ids"]}}, {{"messages", conv2}}, {{"input_ids", ids[1]["ids"]}}});
  auto r = reward(w.rm, w.tmp / "in.jsonl", w.tmp / "out.jsonl", "--batch_size 1");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  auto got = rewards_of(w.tmp / "out.jsonl");
  ASSERT_EQ(got.size(), 4u);
  EXPECT_NEAR(got[0], got[1], 1e-6) << "messages must score as the ids of their ChatML rendering";
  EXPECT_GT(std::fabs(got[0] - got[2]), 1e-6) << "another response must change the reward";
  EXPECT_GT(std::fabs(got[0] - got[3]), 1e-6) << "the chat template must matter";

  // --chat_template overrides the tokenizer's own.
  write_jsonl(w.tmp / "plain.jsonl", {{{"messages", conv}}, {{"input_ids", ids[1]["ids"]}}});
  r = reward(w.rm, w.tmp / "plain.jsonl", w.tmp / "plain_out.jsonl", "--chat_template plain --batch_size 1");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  auto p = rewards_of(w.tmp / "plain_out.jsonl");
  ASSERT_EQ(p.size(), 2u);
  EXPECT_NEAR(p[0], p[1], 1e-6);
  EXPECT_NEAR(p[1], got[3], 1e-6);
}

TEST(Reward, BadInputsAreErrorsNamingTheLineAndWriteNothing) {
  TempDir tmp;
  auto rm = golden_dir("llama_seqcls");
  auto out = tmp / "out.jsonl";
  auto check = [&](const std::string& content, std::initializer_list<std::string> fragments, const std::string& model,
                   const std::string& extra = "") {
    std::ofstream(tmp / "in.jsonl") << content;
    auto r = reward(model, tmp / "in.jsonl", out, extra);
    EXPECT_NE(r.exit_code, 0) << content;
    for (auto& f : fragments) EXPECT_NE(r.output.find(f), std::string::npos) << "lacks '" << f << "':\n" << r.output;
    EXPECT_FALSE(file_exists(out)) << "a failed run must leave no output: " << content;
  };
  std::string ok = "{\"input_ids\": [1, 2, 3]}\n";
  check(ok + "{\"input_ids\": [1, 2\n" + ok, {"in.jsonl:2", "not valid JSON"}, rm);
  check(ok + ok + "{\"ids\": [1, 2]}\n", {"in.jsonl:3", "input_ids"}, rm);
  check(ok + "{\"input_ids\": [1, \"x\"]}\n", {"in.jsonl:2", "integers"}, rm);
  check(ok + "{\"input_ids\": [1, 72]}\n", {"in.jsonl:2", "vocabulary"}, rm);
  check(ok + "{\"input_ids\": []}\n", {"in.jsonl:2", "empty"}, rm);
  nlohmann::json too_long = {{"input_ids", std::vector<int64_t>(129, 5)}};  // the golden RM's context is 128
  check(ok + too_long.dump() + "\n", {"in.jsonl:2", "129 tokens", "max_position_embeddings"}, rm);
  check("{\"messages\": [{\"role\": \"user\", \"content\": \"hi\"}]}\n", {"no tokenizer", "input_ids"}, rm);
  check(ok, {"not a reward model", "ForSequenceClassification"}, golden_dir("qwen2_tied"));
  check(ok, {"jinja", "plain"}, rm, "--chat_template jinja");
  auto r = run_command(multiref_binary() + " reward --input x --output y");
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.output.find("--model is required"), std::string::npos) << r.output;
}

TEST(EvalRm, ComparisonEntriesParse) {
  auto c = parse_rm_comparisons({"ref_a=/m/a", "chosen", "org/model", "x=a=b"});
  ASSERT_EQ(c.size(), 4u);
  EXPECT_EQ(c[0].name, "ref_a");
  EXPECT_EQ(c[0].model, "/m/a");
  EXPECT_TRUE(c[1].chosen());
  EXPECT_EQ(c[1].name, "chosen");
  EXPECT_EQ(c[2].name, "org/model");
  EXPECT_EQ(c[2].model, "org/model");
  EXPECT_EQ(c[3].name, "x");
  EXPECT_EQ(c[3].model, "a=b");
  expect_error([] { parse_rm_comparisons({"a=/m", "a=/n"}); }, {"'a'", "twice"});
  expect_error([] { parse_rm_comparisons({"policy=/m"}); }, {"policy"});
  expect_error([] { parse_rm_comparisons({"a="}); }, {"NAME=MODEL"});
}

TEST(EvalRm, EndToEndSelfTieOtherModelAndChosen) {
  RmWorld w;
  auto out = w.tmp / "eval.json", resp = w.tmp / "responses.jsonl";
  auto r =
      run_command(multiref_binary() + " eval rm --model " + w.policy + " --rm_name " + w.rm + " --dataset " + w.prefs +
                  " --num_prompts 4 --max_new_tokens 8 --seed 3 --batch_size 3 --threads 1 --compare self=" + w.policy +
                  ",other=" + w.other + ",chosen --output " + out + " --responses_output " + resp);
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("| policy |"), std::string::npos) << "the table on stderr:\n" << r.output;
  auto j = nlohmann::json::parse(read_file(out));
  for (auto key : {"num_prompts", "reward/policy", "reward/self", "reward/other", "reward/chosen", "win_rate/self",
                   "win_rate/other", "win_rate/chosen"})
    EXPECT_TRUE(j.contains(key) && j[key].is_number()) << key << " in " << j.dump();
  EXPECT_EQ(j["num_prompts"].get<int64_t>(), 4);
  // The same model with the same seed samples the same responses, which get the same rewards: every prompt ties.
  EXPECT_EQ(j["win_rate/self"].get<double>(), 0.5);
  EXPECT_EQ(j["reward/self"].get<double>(), j["reward/policy"].get<double>());

  auto rows = read_jsonl_file(resp);
  ASSERT_EQ(rows.size(), 4u);
  bool other_differs = false;
  double sums[3] = {0, 0, 0}, wins_other = 0, wins_chosen = 0;
  std::vector<nlohmann::json> policy_convs, chosen_convs;
  for (size_t i = 0; i < rows.size(); ++i) {
    auto& row = rows[i];
    EXPECT_EQ(row["line"].get<int64_t>(), (int64_t)i + 1);
    EXPECT_EQ(row["responses"]["self"], row["responses"]["policy"]);
    EXPECT_EQ(row["responses"]["chosen"], w.pref_rows[i]["chosen"]);
    other_differs = other_differs || row["responses"]["other"] != row["responses"]["policy"];
    double p = row["rewards"]["policy"].get<double>(), o = row["rewards"]["other"].get<double>(),
           c = row["rewards"]["chosen"].get<double>();
    sums[0] += p;
    sums[1] += o;
    sums[2] += c;
    wins_other += p > o ? 1 : p == o ? 0.5 : 0;
    wins_chosen += p > c ? 1 : p == c ? 0.5 : 0;
    auto conv = row["prompt"];
    conv.push_back({{"role", "assistant"}, {"content", row["responses"]["policy"]}});
    policy_convs.push_back({{"messages", conv}});
    conv.back()["content"] = row["responses"]["chosen"];
    chosen_convs.push_back({{"messages", conv}});
  }
  EXPECT_TRUE(other_differs) << "another model must give other responses";
  EXPECT_NEAR(j["reward/policy"].get<double>(), sums[0] / 4, 1e-12);
  EXPECT_NEAR(j["reward/other"].get<double>(), sums[1] / 4, 1e-12);
  EXPECT_NEAR(j["reward/chosen"].get<double>(), sums[2] / 4, 1e-12);
  EXPECT_DOUBLE_EQ(j["win_rate/other"].get<double>(), wins_other / 4);
  EXPECT_DOUBLE_EQ(j["win_rate/chosen"].get<double>(), wins_chosen / 4);
  EXPECT_EQ(rows[0]["prompt"], messages({{"user", w.pref_rows[0]["prompt"].get<std::string>()}}));

  // The per-prompt rewards are the reward model's on [prompt, {assistant: response}], as `multiref reward` gives.
  write_jsonl(w.tmp / "policy_convs.jsonl", policy_convs);
  write_jsonl(w.tmp / "chosen_convs.jsonl", chosen_convs);
  for (auto [file, name] :
       {std::pair<std::string, std::string>{"policy_convs", "policy"}, {"chosen_convs", "chosen"}}) {
    auto rr = reward(w.rm, w.tmp / (file + ".jsonl"), w.tmp / (file + "_out.jsonl"));
    ASSERT_EQ(rr.exit_code, 0) << rr.output;
    auto got = rewards_of(w.tmp / (file + "_out.jsonl"));
    ASSERT_EQ(got.size(), 4u);
    for (size_t i = 0; i < 4; ++i)
      EXPECT_NEAR(got[i], rows[i]["rewards"][name].get<double>(), 1e-5) << name << " " << i;
  }

  // num_prompts beyond the data takes all of it; stdout carries the same JSON.
  r = run_command("(" + multiref_binary() + " eval rm --model " + w.policy + " --rm_name " + w.rm + " --dataset " +
                  w.prefs + " --num_prompts 50 --max_new_tokens 4 --threads 1 2>/dev/null)");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  auto all = nlohmann::json::parse(r.output);
  EXPECT_EQ(all["num_prompts"].get<int64_t>(), 5);
  EXPECT_FALSE(all.contains("win_rate/chosen"));
}

TEST(EvalRm, ErrorsComeBeforeAnyGeneration) {
  RmWorld w;
  auto base = multiref_binary() + " eval rm --dataset " + w.prefs + " --max_new_tokens 4 --threads 1 ";
  auto expect_fail = [&](const std::string& args, std::initializer_list<std::string> fragments) {
    auto r = run_command(base + args);
    EXPECT_NE(r.exit_code, 0) << args;
    for (auto& f : fragments) EXPECT_NE(r.output.find(f), std::string::npos) << "lacks '" << f << "':\n" << r.output;
    EXPECT_EQ(r.output.find("generated"), std::string::npos) << "nothing may be generated first:\n" << r.output;
  };
  expect_fail("--model " + w.policy, {"--rm_name is required"});
  expect_fail("--rm_name " + w.rm, {"--model is required"});
  expect_fail("--model " + w.policy + " --rm_name " + w.other, {"not a reward model"});
  expect_fail("--model " + w.rm + " --rm_name " + w.rm, {"causal LM"});
  expect_fail("--model " + w.policy + " --rm_name " + w.rm + " --compare b=" + (w.tmp / "missing"), {"missing"});
  expect_fail("--model " + w.policy + " --rm_name " + w.rm + " --compare chosen,chosen", {"twice"});
  expect_fail("--model " + w.policy + " --rm_name " + golden_dir("llama_seqcls"), {"no tokenizer files"});
  expect_fail("--model " + w.policy + " --rm_name " + w.rm + " --top_p 0", {"--top_p"});
}
