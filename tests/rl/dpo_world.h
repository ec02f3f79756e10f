// DpoWorld: dpo_training's end-to-end test world — tiny references (a trained tokenizer, two random Qwen2 models)
// and 32 + 8 real UltraFeedback pairs (tests/fixtures/ultrafeedback) as the ultrafeedback dataset
// (tests/rl/test_dpo.cpp, tests/dist/test_data_parallel.cpp).
#pragma once
#include <filesystem>
#include <fstream>

#include "test_util.h"

namespace multiref::testing {

struct DpoWorld {
  TempDir tmp;
  std::string data, ra, rb, small, cache;
  std::vector<nlohmann::json> pairs;  // the rows of `small`
  DpoWorld() {
    data = tmp / "data";
    cache = tmp / "cache";
    std::filesystem::create_directories(data + "/ultrafeedback");
    std::string corpus;
    std::vector<nlohmann::json> rows;
    {
      std::ifstream in(fixture_dir() + "/ultrafeedback/sample.jsonl");
      std::string line;
      for (int i = 0; i < 40 && std::getline(in, line); ++i) rows.push_back(nlohmann::json::parse(line));
    }
    {
      std::ofstream train(data + "/ultrafeedback/train.jsonl"), test(data + "/ultrafeedback/test.jsonl");
      for (size_t i = 0; i < rows.size(); ++i) {
        (i < 32 ? train : test) << rows[i].dump() << "\n";
        for (const char* k : {"prompt", "chosen", "rejected"}) corpus += rows[i][k].get<std::string>() + "\n";
      }
    }
    // A few short pairs for the exact checks (short: the score/tokenize round trip stays fast).
    small = tmp / "small.jsonl";
    std::ofstream s(small);
    for (int i = 0; i < 4; ++i) {
      nlohmann::json j = {{"prompt", "Name a colour number " + std::to_string(i) + "."},
                          {"chosen", i % 2 ? "Blue, like the sky." : "Red."},
                          {"rejected", "I do not know any colours, sorry about that."}};
      pairs.push_back(j);
      s << j.dump() << "\n";
      for (const char* k : {"prompt", "chosen", "rejected"}) corpus += j[k].get<std::string>() + "\n";
    }
    s.close();
    make_tiny_references(tmp.path, corpus);
    ra = tmp / "ra";
    rb = tmp / "rb";
  }
  std::string dpo_command(const std::string& out, const std::string& extra) const {
    return std::string(MULTIREF_DPO_BINARY) + " --data_dir " + data + " --output_dir " + out + " --cache_dir " + cache +
           " --max_length 96 --max_prompt_length 48 --threads 1 --save_steps 0 " + extra;
  }
  CommandResult dpo(const std::string& out, const std::string& extra) const {
    return run_command(dpo_command(out, extra));
  }
  // Sequence log-prob of each pair's chosen and rejected response under `model`, through `multiref tokenize`
  // (the ChatML rendering written out by hand) and `multiref score`: independent of the trainer's code path.
  std::pair<std::vector<double>, std::vector<double>> score_pairs(const std::string& model) const {
    std::ofstream texts(tmp / "texts.jsonl");
    for (auto& p : pairs) {
      texts << nlohmann::json({{"text", "<|im_start|>user\n" + p["prompt"].get<std::string>() +
                                            "<|im_end|>\n<|im_start|>assistant\n"}})
                   .dump()
            << "\n";
      for (const char* k : {"chosen", "rejected"})
        texts << nlohmann::json({{"text", p[k].get<std::string>() + "<|im_end|>\n"}}).dump() << "\n";
    }
    texts.close();
    run_ok(multiref_binary() + " tokenize --tokenizer " + model + " --input " + (tmp / "texts.jsonl") + " --output " +
           (tmp / "ids.jsonl"));
    auto ids = read_json_lines(tmp / "ids.jsonl");
    std::ofstream seqs(tmp / "seqs.jsonl");
    for (size_t i = 0; i < pairs.size(); ++i) {
      auto prompt = ids[3 * i]["ids"].get<std::vector<int64_t>>();
      for (int k = 1; k <= 2; ++k) {
        auto seq = prompt;
        for (auto t : ids[3 * i + k]["ids"].get<std::vector<int64_t>>()) seq.push_back(t);
        seqs << nlohmann::json({{"input_ids", seq}, {"completion_start", prompt.size()}}).dump() << "\n";
      }
    }
    seqs.close();
    run_ok(multiref_binary() + " score --model " + model + " --input " + (tmp / "seqs.jsonl") + " --output " +
           (tmp / "lp.jsonl"));
    std::vector<double> c, r;
    auto lp = read_json_lines(tmp / "lp.jsonl");
    for (size_t i = 0; i < lp.size(); ++i) {
      double s = 0;
      for (double v : lp[i]["token_logprobs"].get<std::vector<double>>()) s += v;
      (i % 2 ? r : c).push_back(s);
    }
    return {c, r};
  }
};

}  // namespace multiref::testing
