// The `multiref` binary end to end: init, score, --help, and bad input.
#include <fstream>

#include "io/hf_model.h"
#include "model/logprobs.h"
#include "test_util.h"

using namespace multiref;
using namespace multiref::testing;

TEST(Cli, ScoreMatchesGoldenLogSoftmaxInInputOrder) {
  TempDir tmp;
  auto g = nlohmann::json::parse(read_file(golden_dir("llama_rope3") + "/golden.json"));
  auto seqs = g["sequences"].get<std::vector<std::vector<int64_t>>>();
  {
    std::ofstream in(tmp / "in.jsonl");
    for (auto& s : seqs) in << nlohmann::json({{"input_ids", s}}).dump() << "\n";
    in << nlohmann::json({{"input_ids", seqs[2]}, {"completion_start", 5}}).dump() << "\n";
  }
  for (int bs : {1, 3}) {
    auto r = run_command(mr("score --model " + golden_dir("llama_rope3") + " --input " + (tmp / "in.jsonl") +
                            " --output " + (tmp / "out.jsonl") + " --threads 1 --batch_size=" + std::to_string(bs)));
    ASSERT_EQ(r.exit_code, 0) << r.output;
    auto out = read_json_lines(tmp / "out.jsonl");
    ASSERT_EQ(out.size(), seqs.size() + 1);
    for (size_t i = 0; i <= seqs.size(); ++i) {
      size_t si = i < seqs.size() ? i : 2;
      size_t start = i < seqs.size() ? 1 : 5;
      auto lps = out[i]["token_logprobs"].get<std::vector<double>>();
      ASSERT_EQ(lps.size(), seqs[si].size() - start) << "line " << i;
      auto rows = g["logits"][si].get<std::vector<std::vector<double>>>();
      for (size_t t = start; t < seqs[si].size(); ++t) {
        double want = torch::log_softmax(torch::tensor(rows[t - 1], torch::kFloat64), 0)[seqs[si][t]].item<double>();
        EXPECT_NEAR(lps[t - start], want, 1e-4) << "line " << i << " t " << t << " batch " << bs;
      }
    }
  }
}

TEST(Cli, InitThenScore) {
  TempDir tmp;
  auto r = run_command(mr("init --arch llama --preset tiny --seed 3 --output_dir " + (tmp / "m")));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  auto c = load_model_config(tmp / "m");
  EXPECT_EQ(c.architecture, "LlamaForCausalLM");
  std::ofstream(tmp / "in.jsonl") << "{\"input_ids\": [1, 2, 3, 4, 5]}\n\n{\"input_ids\": [7]}\n";
  r = run_command(
      mr("score --model " + (tmp / "m") + " --input " + (tmp / "in.jsonl") + " --output " + (tmp / "o.jsonl")));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  auto out = read_json_lines(tmp / "o.jsonl");
  ASSERT_EQ(out.size(), 2u);
  EXPECT_EQ(out[0]["token_logprobs"].size(), 4u);
  EXPECT_EQ(out[1]["token_logprobs"].size(), 0u);
  // Same seed, same weights.
  r = run_command(mr("init --arch llama --preset tiny --seed 3 --output_dir " + (tmp / "m2")));
  ASSERT_EQ(r.exit_code, 0);
  EXPECT_EQ(read_file(tmp / "m/model.safetensors"), read_file(tmp / "m2/model.safetensors"));
  r = run_command(mr("init --arch qwen2 --preset tiny --head seq_cls --output_dir " + (tmp / "rm")));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_EQ(load_model_config(tmp / "rm").head, ModelHead::SequenceClassification);
}

TEST(Cli, HelpListsEveryFlagWithDefault) {
  auto r = run_command(mr("score --help"));
  EXPECT_EQ(r.exit_code, 0);
  for (auto f : {"--model", "--input", "--output", "--batch_size", "(default: 8)", "--dtype", "--device", "--threads"})
    EXPECT_NE(r.output.find(f), std::string::npos) << f;
  r = run_command(mr("init --help"));
  for (auto f : {"--arch", "(default: qwen2)", "--preset", "(default: tiny)", "--seed", "--output_dir"})
    EXPECT_NE(r.output.find(f), std::string::npos) << f;
  r = run_command(mr("--help"));
  EXPECT_EQ(r.exit_code, 0);
  EXPECT_NE(r.output.find("score"), std::string::npos);
}

TEST(Cli, BadInputFailsCleanlyAndWritesNothing) {
  TempDir tmp;
  std::string model = golden_dir("qwen2_tied");
  auto score = [&](const std::string& input_text, const std::string& extra = "") {
    std::ofstream(tmp / "in.jsonl") << input_text;
    return run_command(mr("score --model " + model + " --input " + (tmp / "in.jsonl") + " --output " +
                          (tmp / "out.jsonl") + " " + extra));
  };
  struct Case {
    std::string input, extra;
    std::vector<std::string> fragments;
  };
  std::vector<Case> cases = {
      {"{\"input_ids\":[1,2]}\n{\"input_ids\":[1,\n", "", {"in.jsonl:2", "not valid JSON"}},
      {"{\"input_ids\":[1,2]}\n{\"ids\":[1]}\n", "", {"in.jsonl:2", "input_ids"}},
      {"{\"input_ids\":[1,500]}\n", "", {"in.jsonl:1", "500", "vocabulary"}},
      {"{\"input_ids\":[]}\n", "", {"in.jsonl:1", "empty"}},
      {"{\"input_ids\":[1,2],\"completion_start\":3}\n", "", {"completion_start 3"}},
      {"{\"input_ids\":[1,2]}\n", "--batch_size 0", {"--batch_size"}},
      {"{\"input_ids\":[1,2]}\n", "--bogus 1", {"unknown flag --bogus"}},
      {"{\"input_ids\":[1,2]}\n", "--dtype float8", {"--dtype", "float8"}},
  };
  for (auto& c : cases) {
    auto r = score(c.input, c.extra);
    EXPECT_NE(r.exit_code, 0) << c.input;
    for (auto& f : c.fragments) EXPECT_NE(r.output.find(f), std::string::npos) << "'" << f << "' not in: " << r.output;
    EXPECT_FALSE(file_exists(tmp / "out.jsonl")) << "a failed run must not write its output";
  }
  auto r = run_command(mr("score --model Nobody/NoSuchModel --input x --output y"));
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.output.find("Nobody/NoSuchModel"), std::string::npos) << r.output;
  r = run_command(mr("frobnicate"));
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.output.find("unknown command"), std::string::npos);
}
