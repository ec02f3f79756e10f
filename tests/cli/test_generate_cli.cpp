// `multiref generate` end to end: the three prompt kinds, output layout, agreement with `score`, seeds,
// streaming, stop strings and bad input.
#include <fstream>

#include "test_util.h"

using namespace multiref;
using namespace multiref::testing;

namespace {
// A tiny Qwen2 model with a tokenizer trained on a few hundred sentences; built once per test binary run.
const std::string& model_with_tokenizer() {
  static TempDir dir;
  static std::string model;
  if (model.empty()) {
    std::string text;
    for (int i = 0; i < 300; ++i)
      text += "Tom has " + std::to_string(i) + " apples and buys " + std::to_string(i % 7) +
              " more. How many apples does Tom have now?\n#### " + std::to_string(i + i % 7) + "\n";
    std::ofstream(dir / "corpus.txt") << text;
    auto r = run_command(
        mr("train-tokenizer --input " + (dir / "corpus.txt") + " --vocab_size 400 --output " + (dir / "tok")));
    EXPECT_EQ(r.exit_code, 0) << r.output;
    r = run_command(
        mr("init --arch qwen2 --preset tiny --seed 4 --tokenizer " + (dir / "tok") + " --output_dir " + (dir / "m")));
    EXPECT_EQ(r.exit_code, 0) << r.output;
    model = dir / "m";
  }
  return model;
}

// Same completions, finish reasons and texts; log-probs equal up to float summation order (batch composition
// changes the order inside the matmuls).
void expect_same_output(const std::string& a_path, const std::string& b_path) {
  auto a = read_json_lines(a_path), b = read_json_lines(b_path);
  ASSERT_EQ(a.size(), b.size());
  for (size_t i = 0; i < a.size(); ++i) {
    EXPECT_EQ(a[i]["completion_ids"], b[i]["completion_ids"]) << "line " << i;
    EXPECT_EQ(a[i]["finish_reason"], b[i]["finish_reason"]) << "line " << i;
    EXPECT_EQ(a[i].value("text", ""), b[i].value("text", "")) << "line " << i;
    auto la = a[i]["completion_logprobs"].get<std::vector<double>>(),
         lb = b[i]["completion_logprobs"].get<std::vector<double>>();
    ASSERT_EQ(la.size(), lb.size());
    for (size_t t = 0; t < la.size(); ++t) EXPECT_NEAR(la[t], lb[t], 1e-4) << "line " << i << " token " << t;
  }
}

std::string generate_cmd(const std::string& model, const std::string& in, const std::string& out,
                         const std::string& extra) {
  return mr("generate --model " + model + " --input " + in + " --output " + out + " --threads 1 " + extra);
}
}  // namespace

TEST(GenerateCli, ThreePromptKindsInInputOrderWithScoreLogprobs) {
  TempDir tmp;
  const auto& m = model_with_tokenizer();
  std::ofstream(tmp / "in.jsonl") << R"({"prompt_ids": [1, 2, 3, 4]})"
                                  << "\n"
                                  << R"({"prompt": "Tom has 3 apples."})"
                                  << "\n\n"
                                  << R"({"messages": [{"role": "user", "content": "How many apples?"}]})"
                                  << "\n"
                                  << R"({"prompt_ids": [7]})"
                                  << "\n";
  auto r =
      run_command(generate_cmd(m, tmp / "in.jsonl", tmp / "out.jsonl",
                               "--num_return_sequences 2 --max_new_tokens 8 --seed 5 --temperature 0.8 --top_k 50"));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  auto out = read_json_lines(tmp / "out.jsonl");
  ASSERT_EQ(out.size(), 8u) << "num_return_sequences lines per prompt";
  for (auto& o : out) {
    auto ids = o["completion_ids"].get<std::vector<int64_t>>();
    EXPECT_GE(ids.size(), 1u);
    EXPECT_LE(ids.size(), 8u);
    EXPECT_EQ(o["completion_logprobs"].size(), ids.size());
    EXPECT_TRUE(o["text"].is_string());
    EXPECT_TRUE(o["finish_reason"] == "stop" || o["finish_reason"] == "length") << o.dump();
    if (o["finish_reason"] == "length") {
      EXPECT_EQ(ids.size(), 8u);
    }
  }
  // The prompt_ids lines (0-1 and 6-7) against `score` of prompt + completion.
  {
    std::ofstream sin(tmp / "score.jsonl");
    for (size_t i : {0, 1, 6, 7}) {
      std::vector<int64_t> full = i < 2 ? std::vector<int64_t>{1, 2, 3, 4} : std::vector<int64_t>{7};
      size_t start = full.size();
      for (auto t : out[i]["completion_ids"]) full.push_back(t.get<int64_t>());
      sin << nlohmann::json({{"input_ids", full}, {"completion_start", start}}).dump() << "\n";
    }
  }
  r = run_command(
      mr("score --model " + m + " --input " + (tmp / "score.jsonl") + " --output " + (tmp / "scored.jsonl")));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  auto scored = read_json_lines(tmp / "scored.jsonl");
  size_t k = 0;
  for (size_t i : {0, 1, 6, 7}) {
    auto want = scored[k++]["token_logprobs"].get<std::vector<double>>();
    auto got = out[i]["completion_logprobs"].get<std::vector<double>>();
    ASSERT_EQ(got.size(), want.size());
    for (size_t t = 0; t < got.size(); ++t) EXPECT_NEAR(got[t], want[t], 1e-4) << "line " << i << " token " << t;
  }
  // Same seed: the same samples, whatever the batch size; another seed: other samples.
  r = run_command(
      generate_cmd(m, tmp / "in.jsonl", tmp / "out2.jsonl",
                   "--num_return_sequences 2 --max_new_tokens 8 --seed 5 --temperature 0.8 --top_k 50 --batch_size 2"));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  expect_same_output(tmp / "out2.jsonl", tmp / "out.jsonl");
  r = run_command(generate_cmd(m, tmp / "in.jsonl", tmp / "out3.jsonl",
                               "--num_return_sequences 2 --max_new_tokens 8 --seed 6 --temperature 0.8 --top_k 50"));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(read_file(tmp / "out3.jsonl"), read_file(tmp / "out.jsonl"));
  // The uncached reference path writes the same file.
  r = run_command(generate_cmd(
      m, tmp / "in.jsonl", tmp / "out4.jsonl",
      "--num_return_sequences 2 --max_new_tokens 8 --seed 5 --temperature 0.8 --top_k 50 --use_cache=false"));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  expect_same_output(tmp / "out4.jsonl", tmp / "out.jsonl");
}

TEST(GenerateCli, PromptStreamsTheSameTextAsTheFile) {
  TempDir tmp;
  const auto& m = model_with_tokenizer();
  std::ofstream(tmp / "in.jsonl") << R"({"prompt": "Tom has"})"
                                  << "\n";
  auto r = run_command(generate_cmd(m, tmp / "in.jsonl", tmp / "out.jsonl", "--max_new_tokens 12 --seed 2"));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  std::string text = read_json_lines(tmp / "out.jsonl")[0]["text"];
  r = run_command("(" + mr("generate --model " + m + " --prompt 'Tom has' --max_new_tokens 12 --seed 2 --threads 1") +
                  " 2>/dev/null)");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_EQ(r.output, text + "\n");
}

TEST(GenerateCli, StopStringEndsTheCompletion) {
  TempDir tmp;
  const auto& m = model_with_tokenizer();
  std::ofstream(tmp / "in.jsonl") << R"({"prompt_ids": [5, 6, 7]})"
                                  << "\n";
  auto r = run_command(generate_cmd(m, tmp / "in.jsonl", tmp / "free.jsonl", "--max_new_tokens 30 --temperature 0"));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  auto free_run = read_json_lines(tmp / "free.jsonl")[0];
  std::string text = free_run["text"];
  ASSERT_GE(text.size(), 6u);
  std::string stop = text.substr(3, 2);
  if (stop.find(',') != std::string::npos || stop.find('\\') != std::string::npos ||
      stop.find('\'') != std::string::npos)
    GTEST_SKIP() << "stop string would need escaping: " << stop;
  r = run_command(generate_cmd(m, tmp / "in.jsonl", tmp / "stop.jsonl",
                               "--max_new_tokens 30 --temperature 0 --stop 'zzz," + stop + "'"));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  auto stopped = read_json_lines(tmp / "stop.jsonl")[0];
  EXPECT_EQ(stopped["finish_reason"], "stop");
  std::string st = stopped["text"];
  EXPECT_NE(st.find(stop), std::string::npos);
  EXPECT_LT(st.size(), text.size());
  EXPECT_EQ(text.substr(0, st.size()), st) << "the stopped completion is a prefix of the free one";
}

TEST(GenerateCli, BadInputIsAClearError) {
  TempDir tmp;
  const auto& m = model_with_tokenizer();
  std::ofstream(tmp / "ok.jsonl") << R"({"prompt_ids": [1, 2]})"
                                  << "\n";
  auto expect_fail = [&](const std::string& cmd, std::initializer_list<std::string> fragments) {
    auto r = run_command(cmd);
    EXPECT_NE(r.exit_code, 0) << cmd;
    for (auto& f : fragments)
      EXPECT_NE(r.output.find(f), std::string::npos) << "missing '" << f << "' in: " << r.output;
  };
  std::string ok = tmp / "ok.jsonl", out = tmp / "o.jsonl";
  expect_fail(generate_cmd(m, ok, out, "--temperature -1"), {"--temperature", ">= 0"});
  expect_fail(generate_cmd(m, ok, out, "--top_p 0"), {"--top_p", "(0, 1]"});
  expect_fail(generate_cmd(m, ok, out, "--top_p 1.5"), {"--top_p", "(0, 1]"});
  expect_fail(generate_cmd(m, ok, out, "--min_p 2"), {"--min_p"});
  expect_fail(generate_cmd(m, ok, out, "--top_k -3"), {"--top_k"});
  expect_fail(generate_cmd(m, ok, out, "--stop 'a\\q'"), {"--stop", "escape"});
  expect_fail(generate_cmd(m, ok, out, "--no_such_flag 1"), {"no_such_flag"});
  expect_fail(mr("generate --model " + m + " --prompt hi --input " + ok), {"--prompt", "--input"});

  std::string long_prompt = "{\"prompt_ids\": [";
  for (int i = 0; i < 1024; ++i) long_prompt += (i ? ", " : "") + std::to_string(i % 300);
  long_prompt += "]}";
  std::ofstream(tmp / "long.jsonl") << R"({"prompt_ids": [1]})"
                                    << "\n"
                                    << long_prompt << "\n";
  expect_fail(generate_cmd(m, tmp / "long.jsonl", out, ""), {"long.jsonl:2", "1024 tokens", "context", "shorten"});
  std::ofstream(tmp / "empty.jsonl") << R"({"prompt_ids": []})"
                                     << "\n";
  expect_fail(generate_cmd(m, tmp / "empty.jsonl", out, ""), {"empty.jsonl:1", "empty"});
  std::ofstream(tmp / "empty2.jsonl") << R"({"prompt": ""})"
                                      << "\n";
  expect_fail(generate_cmd(m, tmp / "empty2.jsonl", out, "--add_special_tokens=false"), {"empty2.jsonl:1", "empty"});
  std::ofstream(tmp / "what.jsonl") << R"({"text": "hi"})"
                                    << "\n";
  expect_fail(generate_cmd(m, tmp / "what.jsonl", out, ""), {"what.jsonl:1", "prompt_ids", "messages"});
  std::ofstream(tmp / "oov.jsonl") << R"({"prompt_ids": [1, 99999]})"
                                   << "\n";
  expect_fail(generate_cmd(m, tmp / "oov.jsonl", out, ""), {"oov.jsonl:1", "99999", "vocabulary"});
  EXPECT_FALSE(file_exists(out)) << "no output after a failure";

  // A model without a tokenizer: prompt_ids work (no "text"), text prompts say what is missing.
  auto r = run_command(mr("init --arch llama --preset tiny --output_dir " + (tmp / "bare")));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  r = run_command(generate_cmd(tmp / "bare", ok, out, "--max_new_tokens 3"));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  auto o = read_json_lines(out);
  ASSERT_EQ(o.size(), 1u);
  EXPECT_FALSE(o[0].contains("text"));
  std::ofstream(tmp / "text.jsonl") << R"({"prompt": "hello"})"
                                    << "\n";
  expect_fail(generate_cmd(tmp / "bare", tmp / "text.jsonl", tmp / "o2.jsonl", ""), {"text.jsonl:1", "tokenizer"});
}

TEST(GenerateCli, HelpListsEveryFlag) {
  auto r = run_command(mr("generate --help"));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  for (const char* f :
       {"--model", "--input", "--output", "--prompt", "--max_new_tokens", "--temperature", "--top_k", "--top_p",
        "--min_p", "--num_return_sequences", "--seed", "--batch_size", "--chat_template", "--stop", "--use_cache"})
    EXPECT_NE(r.output.find(f), std::string::npos) << f;
}
