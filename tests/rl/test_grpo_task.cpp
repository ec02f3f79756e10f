// `multiref grpo` on tasks other than GSM8K, end to end: a tokenizer-less policy trained from prompt_ids rows with a
// reward program written here (the logged reward is what the program answered), a reward model's reward equal to
// `multiref reward` on the same conversations, the weighted total, `multiref eval task`, and every bad program
// ending in its error without a hang and without touching the last checkpoint.
#include <cmath>
#include <fstream>

#include "io/safetensors.h"
#include "rl/ids_world.h"
#include "test_util.h"
#include "train/train_checkpoint.h"

using namespace multiref;
using namespace multiref::testing;

namespace {

std::vector<nlohmann::json> metrics(const std::string& dir) {
  return read_json_lines(dir + "/metrics.jsonl");
}

// A reward program in Python that appends {"request", "reward"} to `log` for every line it answers; `reward` is a
// Python expression of the request `q`.
std::string logging_program(const TempDir& tmp, const std::string& name, const std::string& log,
                            const std::string& reward) {
  std::string path = tmp.write(name + ".py",
                               "import json, sys\n"
                               "for line in sys.stdin:\n"
                               "    q = json.loads(line)\n"
                               "    r = " +
                                   reward +
                                   "\n"
                                   "    with open('" +
                                   log +
                                   "', 'a') as f:\n"
                                   "        f.write(json.dumps({'request': q, 'reward': r}) + '\\n')\n"
                                   "    print(json.dumps({'reward': r}), flush=True)\n");
  return "/usr/bin/python3 " + path;
}

const char* kEvenFraction = "sum(t % 2 == 0 for t in q['completion_ids']) / max(1, len(q['completion_ids']))";

}  // namespace

TEST(GrpoTask, TokenizerLessPolicyLearnsFromAProgramAndLogsWhatItAnswered) {
  IdsWorld w;
  std::string log = w.tmp / "answers.jsonl", out = w.tmp / "run";
  auto r = w.grpo(out, "--max_steps 3 --reward_program '" + logging_program(w.tmp, "even", log, kEvenFraction) + "'");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  auto answers = read_json_lines(log);
  ASSERT_EQ(answers.size(), 24u) << "3 steps x 8 completions";
  auto rows = read_json_lines(w.data);
  for (auto& a : answers) {
    const auto& q = a["request"];
    EXPECT_FALSE(q.contains("prompt") || q.contains("completion")) << "no tokenizer, no text: " << q.dump();
    // The row as written, and its prompt as given.
    const auto& row = rows.at(q["row"]["id"].get<size_t>());
    EXPECT_EQ(q["row"], row);
    EXPECT_EQ(q["prompt_ids"], row["prompt_ids"]);
    // The completion as generated: at most 8 tokens of the vocabulary, ending at the EOS (3, named only in
    // generation_config.json) when it stopped early, as TRL hands completion_ids to its reward functions.
    auto c = q["completion_ids"].get<std::vector<int64_t>>();
    EXPECT_LE(c.size(), 8u);
    if (c.size() < 8) {
      EXPECT_EQ(c.back(), 3) << "a completion shorter than the limit stopped at the EOS";
    }
    int even = 0;
    for (size_t i = 0; i < c.size(); ++i) {
      EXPECT_TRUE(c[i] >= 0 && c[i] < 64) << c[i];
      EXPECT_TRUE(c[i] != 3 || i + 1 == c.size()) << "nothing after the EOS";
      even += c[i] % 2 == 0;
    }
    EXPECT_DOUBLE_EQ(a["reward"].get<double>(), c.empty() ? 0.0 : (double)even / (double)c.size());
  }
  auto m = metrics(out);
  ASSERT_EQ(m.size(), 3u);
  for (size_t s = 0; s < 3; ++s) {
    double mean = 0;
    for (size_t i = 0; i < 8; ++i) mean += answers[s * 8 + i]["reward"].get<double>() / 8;
    EXPECT_NEAR(m[s]["rewards/program"].get<double>(), mean, 1e-12) << "step " << s + 1;
    EXPECT_NEAR(m[s]["reward"].get<double>(), mean, 1e-6) << "step " << s + 1;
  }
  // The trained model keeps its EOS, and `multiref eval task` scores it the way it was trained (k = 2 samples).
  auto gen = nlohmann::json::parse(read_file(out + "/generation_config.json"));
  EXPECT_EQ(gen["eos_token_id"], 3);
  std::string elog = w.tmp / "eval_answers.jsonl";
  auto e = run_command("timeout 300 " + mr("eval task --model " + out + " --dataset " + w.data +
                                           " --limit 5 --num_samples 2 --temperature 1 --max_new_tokens 8 --threads 1"
                                           " --reward length_penalty --reward_weights 0.5,1 --output " +
                                           (w.tmp / "eval.json") + " --reward_program '" +
                                           logging_program(w.tmp, "even2", elog, kEvenFraction) + "'"));
  ASSERT_EQ(e.exit_code, 0) << e.output;
  auto j = nlohmann::json::parse(read_file(w.tmp / "eval.json"));
  auto ev = read_json_lines(elog);
  ASSERT_EQ(ev.size(), 10u);
  double prog = 0, len = 0;
  for (auto& a : ev) {
    prog += a["reward"].get<double>() / 10;
    len += -(double)a["request"]["completion_ids"].size() / 8.0 / 10;
  }
  EXPECT_EQ(j["num_prompts"], 5);
  EXPECT_EQ(j["num_samples"], 2);
  EXPECT_NEAR(j["rewards/program"].get<double>(), prog, 1e-12);
  EXPECT_NEAR(j["rewards/length_penalty"].get<double>(), len, 1e-12);
  EXPECT_NEAR(j["reward"].get<double>(), 0.5 * len + prog, 1e-12);
  EXPECT_GE(j["reward_max@2"].get<double>(), j["reward"].get<double>());
  EXPECT_NE(e.output.find("| rewards/program |"), std::string::npos) << "a table for people";
}

TEST(GrpoTask, RewardModelEqualsMultirefRewardAndRewardsAddUpWithTheirWeights) {
  TempDir tmp;
  std::string data = make_gsm8k_world(tmp.path);
  std::string rm = tmp / "rm";
  run_ok(mr("init --arch qwen2 --preset tiny --head seq_cls --seed 3 --tokenizer " + (tmp / "tok") + " --output_dir " +
            rm));
  // A prompt dataset of text rows: GSM8K questions with their final answers (train and test).
  std::filesystem::create_directories(tmp / "task");
  std::string train, test;
  auto gsm = read_json_lines(data + "/gsm8k/train.jsonl");
  for (size_t i = 0; i < 12; ++i) {
    auto a = gsm[i]["answer"].get<std::string>();
    nlohmann::json row = {{"prompt", gsm[i]["question"]}, {"answer", trim(a.substr(a.rfind("####") + 4))}};
    (i < 9 ? train : test) += row.dump() + "\n";
  }
  tmp.write("task/train.jsonl", train);
  tmp.write("task/test.jsonl", test);
  std::string log = tmp / "answers.jsonl", out = tmp / "run";
  auto r = run_command("timeout 600 " + mr("grpo --dataset " + (tmp / "task") + " --ref_a " + (tmp / "ra") +
                                           " --ref_b " + (tmp / "rb") + " --model_out " + out +
                                           " --per_device_train_batch_size 4 --gradient_accumulation_steps 1"
                                           " --num_generations 2 --max_completion_length 8 --max_steps 2 "
                                           "--eval_steps 2 --eval_samples 2 --threads 1 --reward exact_match "
                                           "--reward_model " +
                                           rm + " --reward_weights 1,2,0.5 --reward_program '" +
                                           logging_program(tmp, "third", log, "len(q['completion']) % 3") + "'"));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  auto answers = read_json_lines(log);
  ASSERT_EQ(answers.size(), 2u * 4 + 2) << "2 steps x 4 completions, then 2 greedy evaluation completions";
  // The reward model reads [user: prompt, assistant: completion] through its own tokenizer and template: the same
  // conversations through `multiref reward`.
  std::string msgs;
  for (auto& a : answers) {
    const auto& q = a["request"];
    EXPECT_TRUE(q.contains("prompt") && q.contains("completion")) << "with a tokenizer the program gets text";
    EXPECT_NE(q["prompt"].get<std::string>().find(q["row"]["prompt"].get<std::string>()), std::string::npos)
        << "the prompt text is what the policy saw, the row's prompt inside its chat template";
    msgs += nlohmann::json{{"messages",
                            {{{"role", "user"}, {"content", q["row"]["prompt"]}},
                             {{"role", "assistant"}, {"content", q["completion"]}}}}}
                .dump() +
            "\n";
  }
  tmp.write("msgs.jsonl", msgs);
  run_ok(mr("reward --model " + rm + " --input " + (tmp / "msgs.jsonl") + " --output " + (tmp / "rm.jsonl")));
  auto rm_scores = read_json_lines(tmp / "rm.jsonl");
  auto m = metrics(out);
  ASSERT_EQ(m.size(), 3u) << "two steps and the evaluation row";
  auto mean_of = [&](size_t from, size_t n, auto&& value) {
    double s = 0;
    for (size_t i = from; i < from + n; ++i) s += value(i) / (double)n;
    return s;
  };
  for (size_t s = 0; s < 2; ++s) {
    double rmv = mean_of(s * 4, 4, [&](size_t i) { return rm_scores[i]["reward"].get<double>(); });
    double prog = mean_of(s * 4, 4, [&](size_t i) { return answers[i]["reward"].get<double>(); });
    double em = mean_of(s * 4, 4, [&](size_t i) {
      const auto& q = answers[i]["request"];
      return trim(q["completion"].get<std::string>()) == q["row"]["answer"].get<std::string>() ? 1.0 : 0.0;
    });
    EXPECT_NEAR(m[s]["rewards/rm"].get<double>(), rmv, 1e-5) << "step " << s + 1;
    EXPECT_NEAR(m[s]["rewards/program"].get<double>(), prog, 1e-12);
    EXPECT_NEAR(m[s]["rewards/exact_match"].get<double>(), em, 1e-12);
    EXPECT_NEAR(m[s]["reward"].get<double>(), em + 2 * rmv + 0.5 * prog, 1e-5) << "the weighted total";
  }
  // The in-loop evaluation of a non-GSM8K task: each reward's mean on the test rows (greedy).
  const auto& ev = m[2];
  double rmv = mean_of(8, 2, [&](size_t i) { return rm_scores[i]["reward"].get<double>(); });
  EXPECT_NEAR(ev["eval/rewards/rm"].get<double>(), rmv, 1e-5);
  EXPECT_NEAR(ev["eval/reward"].get<double>(),
              ev["eval/rewards/exact_match"].get<double>() + 2 * rmv + 0.5 * ev["eval/rewards/program"].get<double>(),
              1e-5);
  EXPECT_EQ(ev["eval/num_prompts"], 2);
}

TEST(GrpoTask, BadProgramsEndWithTheirErrorAndKeepTheLastCheckpoint) {
  IdsWorld w;
  struct Case {
    std::string name, program;  // Python: the answer to the 17th request onwards (steps 1-2 are answered well)
    std::vector<std::string> fragments;
    std::string extra;
  };
  for (auto& c : std::vector<Case>{
           {"malformed", "print('oops', flush=True)", {"'oops'", "not JSON", "completion_ids"}, ""},
           {"missing", "print(json.dumps({'score': 1}), flush=True)", {"without a \"reward\" field"}, ""},
           {"nan", "print(json.dumps({'reward': float('nan')}), flush=True)", {"not finite"}, ""},
           {"exit", "sys.exit(3)", {"exited with status 3", "after 0 of 8 answers"}, ""},
           {"silent", "time.sleep(60)", {"no answer in 1 s", "--reward_timeout"}, "--reward_timeout 1"},
       }) {
    std::string prog = w.tmp.write(c.name + ".py",
                                   "import json, sys, time\n"
                                   "n = 0\n"
                                   "for line in sys.stdin:\n"
                                   "    n += 1\n"
                                   "    if n <= 16:\n"
                                   "        print(json.dumps({'reward': 0.5}), flush=True)\n"
                                   "    else:\n"
                                   "        " +
                                       c.program + "\n");
    std::string out = w.tmp / ("run_" + c.name);
    auto t0 = now_seconds();
    auto r = w.grpo(out, "--max_steps 4 --save_steps 2 --reward_program '/usr/bin/python3 " + prog + "' " + c.extra);
    EXPECT_LT(now_seconds() - t0, 60) << c.name << ": an error, not a hang";
    EXPECT_NE(r.exit_code, 0) << c.name;
    EXPECT_NE(r.exit_code, 124) << c.name << " hung: " << r.output;
    for (auto& f : c.fragments)
      EXPECT_NE(r.output.find(f), std::string::npos) << c.name << ": '" << f << "' not in: " << r.output;
    // The checkpoint of step 2 stands, whole; nothing of step 3 or a final model was written.
    auto st = nlohmann::json::parse(read_file(out + "/checkpoint-2/trainer_state.json"));
    EXPECT_EQ(st["global_step"], 2) << c.name;
    EXPECT_TRUE(file_exists(out + "/checkpoint-2/model.safetensors")) << c.name;
    EXPECT_FALSE(file_exists(out + "/checkpoint-3")) << c.name;
    EXPECT_FALSE(file_exists(out + "/model.safetensors")) << c.name;
    EXPECT_EQ(metrics(out).size(), 2u) << c.name;
  }
  // It resumes from there once the program is fixed.
  auto r = w.grpo(w.tmp / "run_nan",
                  "--max_steps 4 --save_steps 2 --resume_from_checkpoint latest --reward_program "
                  "'" +
                      logging_program(w.tmp, "fixed", w.tmp / "fixed.jsonl", kEvenFraction) + "'");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_TRUE(file_exists(w.tmp / "run_nan/model.safetensors"));
}

// Issue 21: a step whose loss or gradient norm is not finite never reaches the weights. Rewards of +-1e300 without
// --scale_rewards overflow the float32 loss from step 3 on (steps 1-2 are answered 0.5).
TEST(GrpoTask, NonFiniteStepsAreSkippedCountedAndStopTheRunAfterALimit) {
  IdsWorld w;
  std::string prog = w.tmp.write("huge.py",
                                 "import json, sys\n"
                                 "n = 0\n"
                                 "for line in sys.stdin:\n"
                                 "    n += 1\n"
                                 "    r = 0.5 if n <= 16 else (1e300 if n % 2 else -1e300)\n"
                                 "    print(json.dumps({'reward': r}), flush=True)\n");
  std::string flags = "--max_steps 4 --save_steps 2 --scale_rewards false --reward_program '/usr/bin/python3 " + prog +
                      "' --max_skipped_steps ";
  // Never stop: steps 3 and 4 are skipped and counted, and the final model is the step-2 checkpoint's weights.
  std::string out = w.tmp / "run_skip";
  auto r = w.grpo(out, flags + "0");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("step 3: the"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("not finite; the step was skipped"), std::string::npos) << r.output;
  auto rows = metrics(out);
  ASSERT_EQ(rows.size(), 4u);
  EXPECT_FALSE(rows[1].contains("skipped_steps"));
  EXPECT_EQ(rows[2].value("skipped_steps", 0.0), 1.0);
  EXPECT_EQ(rows[3].value("skipped_steps", 0.0), 2.0);
  auto at2 = load_checkpoint_tensors(out + "/checkpoint-2"), final = load_checkpoint_tensors(out);
  ASSERT_EQ(at2.size(), final.size());
  for (auto& [name, t] : at2) {
    EXPECT_TRUE(torch::isfinite(final.at(name)).all().item<bool>()) << name;
    EXPECT_TRUE(torch::equal(t, final.at(name))) << name << " changed in a skipped step";
  }
  // Two in a row stop the run at step 4 with the causes named; checkpoint-2 stands and no final model is written.
  out = w.tmp / "run_stop";
  r = w.grpo(out, flags + "2");
  EXPECT_NE(r.exit_code, 0) << r.output;
  for (std::string f : {"2 steps in a row up to step 4", "learning rate", "--max_skipped_steps"})
    EXPECT_NE(r.output.find(f), std::string::npos) << f << " not in: " << r.output;
  EXPECT_TRUE(file_exists(out + "/checkpoint-2/model.safetensors"));
  EXPECT_FALSE(file_exists(out + "/checkpoint-4"));
  EXPECT_FALSE(file_exists(out + "/model.safetensors"));
  EXPECT_EQ(metrics(out).size(), 4u);
}

TEST(GrpoTask, BadTaskFlagsAreClearErrorsBeforeTraining) {
  IdsWorld w;
  w.tmp.write("text.jsonl", "{\"prompt_ids\": [5]}\n{\"prompt\": \"hello\"}\n");
  w.tmp.write("far.jsonl", "{\"prompt_ids\": [5, 64]}\n");
  struct Case {
    std::string extra;
    std::vector<std::string> fragments;
  };
  for (auto& c : std::vector<Case>{
           {"", {"no reward", "--reward_program"}},
           {"--reward accuracy", {"--reward 'accuracy'"}},
           {"--reward exact_match", {"--reward exact_match", "no tokenizer"}},
           {"--reward length_penalty --reward_weights 1,2", {"2 weights for 1 rewards"}},
           {"--reward length_penalty --eval_steps 1", {"no test split"}},
           {"--reward length_penalty --dataset " + (w.tmp / "text.jsonl"), {"text.jsonl:2", "no tokenizer"}},
           {"--reward length_penalty --dataset " + (w.tmp / "far.jsonl"), {"far.jsonl:1", "id 64", "vocabulary"}},
           {"--reward length_penalty --reward_model " + w.rb, {"--reward_model", "no tokenizer"}},
           // Issue 21: 4 x 10^9 completions a step ran silently for a minute.
           {"--reward length_penalty --gradient_accumulation_steps=1000000000",
            {"4000000000 completions", "GB of memory", "lower --gradient_accumulation_steps"}},
       }) {
    auto r = w.grpo(w.tmp / "bad", "--max_steps 1 " + c.extra);
    EXPECT_NE(r.exit_code, 0) << c.extra;
    for (auto& f : c.fragments)
      EXPECT_NE(r.output.find(f), std::string::npos) << c.extra << ": '" << f << "' not in: " << r.output;
    EXPECT_FALSE(file_exists(w.tmp / "bad/metrics.jsonl")) << c.extra;
  }
}

// The step's rollouts decode as one batch by default; capping the batch (--generation_batch_size) or switching the
// decode loop (--decode_loop static, the GPU loop) changes how the tokens are computed, never which: the same
// completions reach the reward, and training follows the same trajectory.
TEST(GrpoTask, RolloutBatchingAndDecodeLoopLeaveTheRunUnchanged) {
  IdsWorld w;
  struct Run {
    std::string name, flags;
  };
  std::vector<Run> runs = {{"default", ""},
                           {"static", "--decode_loop static --decode_sync_every 3"},
                           {"one_prompt_per_batch", "--generation_batch_size 4 --decode_loop compacting"},
                           {"static_small_batches", "--generation_batch_size 3 --decode_loop static"}};
  std::vector<std::vector<nlohmann::json>> answers, logged;
  for (auto& run : runs) {
    std::string log = w.tmp / (run.name + ".jsonl"), out = w.tmp / run.name;
    auto r = w.grpo(out, "--max_steps 3 --logging_steps 1 " + run.flags + " --reward_program '" +
                             logging_program(w.tmp, run.name, log, kEvenFraction) + "'");
    ASSERT_EQ(r.exit_code, 0) << run.name << "\n" << r.output;
    answers.push_back(read_json_lines(log));
    logged.push_back(metrics(out));
    ASSERT_EQ(answers.back().size(), 24u) << run.name;
    ASSERT_EQ(logged.back().size(), 3u) << run.name;
  }
  int stopped_early = 0;
  for (auto& a : answers[0]) stopped_early += a["request"]["completion_ids"].size() < 8;
  EXPECT_GT(stopped_early, 0) << "some rows must end at the EOS before others, or the loops are not put to the test";
  for (size_t k = 1; k < runs.size(); ++k)
    for (size_t i = 0; i < 24; ++i) {
      EXPECT_EQ(answers[k][i]["request"]["completion_ids"], answers[0][i]["request"]["completion_ids"])
          << runs[k].name << ": completion " << i;
      for (size_t s = 0; s < 3 && i == 0; ++s)
        for (const char* key : {"loss", "reward", "completion_length", "kl"})
          if (logged[0][s].contains(key))
            EXPECT_NEAR(logged[k][s][key].get<double>(), logged[0][s][key].get<double>(), 1e-5)
                << runs[k].name << ": step " << s + 1 << " " << key;
    }
  for (auto [flags, want] : {std::pair<std::string, std::string>{"--decode_sync_every 0", "--decode_sync_every"},
                             {"--generation_batch_size -1", "--generation_batch_size"},
                             {"--decode_loop fast", "compacting|static"}}) {
    auto r = w.grpo(w.tmp / "bad", "--max_steps 1 --reward_program true " + flags);
    EXPECT_NE(r.exit_code, 0) << flags;
    EXPECT_NE(r.output.find(want), std::string::npos) << flags << "\n" << r.output;
  }
}

// The no-grad scoring passes (references, the old policy, exact RKL's KL-to-go) run in blocks of rows on a CPU
// (--scoring_batch_tokens): one row per block gives the same rewards, KL, loss and gradients as one block for all
// (to fp32 rounding: matmuls over fewer rows may round differently).
TEST(GrpoTask, ScoringInBlocksOfRowsChangesNothing) {
  IdsWorld w;
  for (std::string kl : {"--kl_estimator exact", "--kl_estimator k3 --num_iterations 2",
                         "--kl_estimator k3 --kl_in reward", "--kl_estimator mixture_k3"}) {
    std::vector<std::vector<nlohmann::json>> runs;
    for (std::string blocks : {"", "--scoring_batch_tokens 20"}) {
      std::string out = w.tmp / ("blocks" + std::to_string(runs.size()));
      run_command("rm -rf " + out);
      auto r = w.grpo(out, "--max_steps 2 --reward length_penalty --gamma 0.2 " + kl + " " + blocks);
      ASSERT_EQ(r.exit_code, 0) << kl << " " << blocks << "\n" << r.output;
      runs.push_back(metrics(out));
      ASSERT_EQ(runs.back().size(), 2u);
    }
    for (size_t s = 0; s < 2; ++s)
      for (const char* key : {"loss", "reward", "kl", "grad_norm"})
        EXPECT_NEAR(runs[1][s][key].get<double>(), runs[0][s][key].get<double>(),
                    1e-5 * std::max(1.0, std::abs(runs[0][s][key].get<double>())))
            << kl << ": step " << s + 1 << " " << key;
  }
  auto r = w.grpo(w.tmp / "bad", "--max_steps 1 --reward length_penalty --scoring_batch_tokens -5");
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.output.find("--scoring_batch_tokens"), std::string::npos) << r.output;
}
