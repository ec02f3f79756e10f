// IdsWorld: the smallest GRPO world the end-to-end tests train in — two tiny tokenizer-less Qwen2 models and prompt
// rows of ids (tests/rl/test_grpo_task.cpp, tests/train/test_save_faults.cpp).
#pragma once
#include "test_util.h"

namespace multiref::testing {

// Two tiny Qwen2 models of 64 ids without a tokenizer; the policy (ra) stops at id 3, named only in its
// generation_config.json. 20 prompt_ids rows.
struct IdsWorld {
  TempDir tmp;
  std::string ra = tmp / "ra", rb = tmp / "rb", data = tmp / "p.jsonl";
  IdsWorld() {
    for (auto [dir, seed] : {std::pair<std::string, int>{ra, 1}, {rb, 2}})
      run_ok(mr("init --arch qwen2 --preset tiny --vocab_size 64 --seed " + std::to_string(seed) + " --output_dir " +
                dir));
    auto config = nlohmann::json::parse(read_file(ra + "/config.json"));
    config.erase("eos_token_id");  // the preset's
    tmp.write("ra/config.json", config.dump(2));
    tmp.write("ra/generation_config.json", "{\"eos_token_id\": 3}\n");
    std::string rows;
    for (int i = 0; i < 20; ++i) {
      nlohmann::json ids = nlohmann::json::array();
      for (int t = 0; t < 5; ++t) ids.push_back(4 + (i * 7 + t * 13) % 60);
      rows += nlohmann::json{{"prompt_ids", ids}, {"id", i}}.dump() + "\n";
    }
    tmp.write("p.jsonl", rows);
  }
  // 8 completions per step (2 prompts x 4), at most 8 new tokens, one thread.
  std::string grpo_command(const std::string& out, const std::string& extra) const {
    return "timeout 300 " + mr("grpo --dataset " + data + " --ref_a " + ra + " --ref_b " + rb + " --model_out " + out +
                               " --per_device_train_batch_size 4 --gradient_accumulation_steps 2"
                               " --num_generations 4 --max_completion_length 8 --learning_rate 1e-3"
                               " --threads 1 " +
                               extra);
  }
  CommandResult grpo(const std::string& out, const std::string& extra) const {
    return run_command(grpo_command(out, extra));
  }
};

}  // namespace multiref::testing
