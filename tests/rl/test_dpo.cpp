// dpo_training end to end on tiny references (trained tokenizer + random Qwen2 models) with real
// UltraFeedback pairs (tests/fixtures/ultrafeedback), plus the preference-data loader and TRL's truncation rule.
#include <cmath>
#include <fstream>

#include "data/preference_data.h"
#include "io/safetensors.h"
#include "rl/dpo_world.h"
#include "test_util.h"

using namespace multiref;
using namespace multiref::testing;

namespace {

double softplus(double x) {
  return x > 30 ? x : std::log1p(std::exp(x));
}

}  // namespace

TEST(PreferenceData, FlatAndMessageShapesGiveTheSamePairs) {
  TempDir tmp;
  std::ofstream(tmp / "flat.jsonl") << R"({"prompt": "Hi?", "chosen": "Hello!", "rejected": "Go away."})"
                                       "\n"
                                    << R"({"prompt": "Q", "chosen": "", "rejected": "x"})"
                                       "\n";
  std::ofstream(tmp / "msgs.jsonl")
      << R"({"prompt": "Hi?", "chosen": [{"role": "user", "content": "Hi?"}, {"role": "assistant", "content": "Hello!"}],)"
      << R"( "rejected": [{"role": "user", "content": "Hi?"}, {"role": "assistant", "content": "Go away."}], "score_chosen": 8})"
         "\n";
  auto a = load_preferences({tmp / "flat.jsonl"}), b = load_preferences({tmp / "msgs.jsonl"});
  ASSERT_EQ(a.rows.size(), 1u);
  ASSERT_EQ(b.rows.size(), 1u);
  EXPECT_EQ(a.skipped_empty, 1);
  for (auto* d : {&a, &b}) {
    ASSERT_EQ(d->rows[0].prompt.size(), 1u);
    EXPECT_EQ(d->rows[0].prompt[0].role, "user");
    EXPECT_EQ(d->rows[0].prompt[0].content, "Hi?");
    EXPECT_EQ(d->rows[0].chosen, "Hello!");
    EXPECT_EQ(d->rows[0].rejected, "Go away.");
  }
  std::ofstream(tmp / "bad.jsonl") << R"({"prompt": "a", "chosen": "b", "rejected": "c"})"
                                      "\n{oops\n";
  expect_error([&] { load_preferences({tmp / "bad.jsonl"}); }, {"bad.jsonl:2", "not valid JSON"});
  std::ofstream(tmp / "bad2.jsonl") << R"({"prompt": "a", "chosen": 3, "rejected": "c"})"
                                       "\n";
  expect_error([&] { load_preferences({tmp / "bad2.jsonl"}); }, {"bad2.jsonl:1", "\"chosen\""});
  std::ofstream(tmp / "bad3.jsonl") << R"({"prompt": "a", "chosen": "b"})"
                                       "\n";
  expect_error([&] { load_preferences({tmp / "bad3.jsonl"}); }, {"bad3.jsonl:1", "missing \"rejected\""});
  // Splits of the ultrafeedback directory: names with eval/test are held out.
  std::filesystem::create_directories(tmp / "d/ultrafeedback");
  std::ofstream(tmp / "d/ultrafeedback/sample.jsonl") << "\n";
  std::ofstream(tmp / "d/ultrafeedback/sample_eval.jsonl") << "\n";
  EXPECT_EQ(preference_files("ultrafeedback", tmp / "d", "train"),
            std::vector<std::string>{tmp / "d/ultrafeedback/sample.jsonl"});
  EXPECT_EQ(preference_files("ultrafeedback", tmp / "d", "test"),
            std::vector<std::string>{tmp / "d/ultrafeedback/sample_eval.jsonl"});
  expect_error([&] { preference_files("ultrafeedback", tmp / "nowhere", "train"); }, {"nowhere", "--data_dir"});
}

TEST(PreferenceData, TruncationFollowsTrl) {
  TruncationSettings t{10, 4, true};
  PairTokens p{{1, 2, 3, 4, 5, 6}, {7, 8, 9}, {7, 8, 9, 10, 11, 12, 13}};
  truncate_pair(p, t);  // 6 + 7 > 10: prompt keeps its last 4; 4 + 7 > 10: responses cut to 6
  EXPECT_EQ(p.prompt, (std::vector<int64_t>{3, 4, 5, 6}));
  EXPECT_EQ(p.chosen, (std::vector<int64_t>{7, 8, 9}));
  EXPECT_EQ(p.rejected, (std::vector<int64_t>{7, 8, 9, 10, 11, 12}));
  EXPECT_TRUE(p.truncated);
  PairTokens q{{1, 2, 3, 4, 5, 6}, {7}, {8}};
  truncate_pair(q, {10, 4, false});  // fits: untouched
  EXPECT_EQ(q.prompt.size(), 6u);
  EXPECT_FALSE(q.truncated);
  PairTokens r{{1, 2, 3, 4, 5, 6}, {7, 8, 9, 10, 11}, {8}};
  truncate_pair(r, {10, 4, false});
  EXPECT_EQ(r.prompt, (std::vector<int64_t>{1, 2, 3, 4}));
  EXPECT_EQ(r.chosen.size(), 5u);
}

// With all weight on ref_a, which is also the policy, the reference mixture equals the policy: the first loss
// is log 2 and the implicit reward margin 0, for the exact RKL and FKL forms and the paper code's token mixtures.
TEST(Dpo, FirstLossIsLog2WhenTheMixtureIsThePolicy) {
  DpoWorld w;
  for (std::string v :
       {"--kl_type rkl --alpha 1", "--kl_type fkl --beta 1", "--kl_type rkl --alpha 1 --kl_estimator token_mixture",
        "--kl_type fkl --beta 1 --kl_estimator token_mixture"}) {
    auto out = w.tmp / ("log2_" + std::to_string(std::hash<std::string>()(v)));
    auto r = w.dpo(out, "--ref_a " + w.ra + " --ref_b " + w.rb + " --gamma 0.5 " + v +
                            " --per_device_train_batch_size 4 --gradient_accumulation_steps 1 --max_steps 1");
    ASSERT_EQ(r.exit_code, 0) << v << "\n" << r.output;
    auto m = read_json_lines(out + "/metrics.jsonl");
    ASSERT_EQ(m.size(), 1u);
    EXPECT_NEAR(m[0]["loss"].get<double>(), std::log(2.0), 1e-5) << v;
    EXPECT_NEAR(m[0]["rewards/margins"].get<double>(), 0.0, 1e-5) << v;
  }
}

// The loss of the first step (all four pairs, before any update) against the DPO formula evaluated on sequence
// log-probs from `multiref score`: K = 2 exact RKL and FKL, and K = 1 (plain DPO). The second run of a
// configuration reads the reference cache; scoring references batch by batch gives the same loss.
TEST(Dpo, LossEqualsTheFormulaOnScoredLogprobs) {
  DpoWorld w;
  auto [pc, pr] = w.score_pairs(w.ra);  // the policy starts as ref_a
  auto [bc, br] = w.score_pairs(w.rb);
  // A reference with its own tokenizer (another vocabulary): the sequence-level forms score the same texts in its
  // own tokens.
  auto other = w.tmp / "other";
  run_ok(multiref_binary() + " train-tokenizer --input " + (w.tmp / "corpus.txt") + " --vocab_size 420 --output " +
         (w.tmp / "tok2"));
  run_ok(multiref_binary() + " init --arch llama --preset tiny --seed 4 --tokenizer " + (w.tmp / "tok2") +
         " --output_dir " + other);
  auto [oc, orj] = w.score_pairs(other);
  double g = 0.7, a = 0.3;
  auto logsumexp2 = [](double x, double y) {
    double m = std::max(x, y);
    return m + std::log(std::exp(x - m) + std::exp(y - m));
  };
  double rkl = 0, fkl = 0, plain = 0, own = 0;
  for (size_t i = 0; i < pc.size(); ++i) {
    // RKL: reference log-prob a log pi_a + (1 - a) log pi_b; the policy is pi_a.
    double hc = pc[i] - (a * pc[i] + (1 - a) * bc[i]), hr = pr[i] - (a * pr[i] + (1 - a) * br[i]);
    rkl += softplus(-g * (hc - hr)) / 4;
    // FKL: margin pibar(y_l)/pi(y_l) - pibar(y_w)/pi(y_w), pibar = a pi_a + (1 - a) pi_b.
    double uc = logsumexp2(std::log(a) + pc[i], std::log(1 - a) + bc[i]) - pc[i];
    double ur = logsumexp2(std::log(a) + pr[i], std::log(1 - a) + br[i]) - pr[i];
    fkl += softplus(-g * (std::exp(ur) - std::exp(uc))) / 4;
    // K = 1 against ref_b: standard DPO.
    plain += softplus(-g * ((pc[i] - bc[i]) - (pr[i] - br[i]))) / 4;
    own += softplus(-g * ((pc[i] - (a * pc[i] + (1 - a) * oc[i])) - (pr[i] - (a * pr[i] + (1 - a) * orj[i])))) / 4;
  }
  std::string common = " --dataset " + w.small +
                       " --gamma 0.7 --per_device_train_batch_size 4 --gradient_accumulation_steps 1 --max_steps 1";
  struct Case {
    std::string flags;
    double want;
  };
  for (auto& c : std::vector<Case>{{"--ref_a " + w.ra + " --ref_b " + w.rb + " --kl_type rkl --alpha 0.3", rkl},
                                   {"--ref_a " + w.ra + " --ref_b " + w.rb + " --kl_type fkl --beta 0.3", fkl},
                                   {"--policy " + w.ra + " --ref_a " + w.rb, plain},
                                   {"--policy " + w.ra + " --refs " + w.rb, plain},
                                   {"--ref_a " + w.ra + " --ref_b " + other + " --alpha 0.3", own}}) {
    for (std::string extra : {"", "", " --precompute_ref_log_probs false"}) {
      if (c.flags.find(other) != std::string::npos && !extra.empty()) continue;  // needs the policy's tokens
      auto out = w.tmp / "f";
      multiref::remove_all(out);
      auto r = w.dpo(out, c.flags + common + extra);
      ASSERT_EQ(r.exit_code, 0) << c.flags << extra << "\n" << r.output;
      auto m = read_json_lines(out + "/metrics.jsonl");
      ASSERT_FALSE(m.empty());
      EXPECT_NEAR(m[0]["loss"].get<double>(), c.want, 2e-5 * std::max(1.0, c.want)) << c.flags << extra;
    }
  }
  EXPECT_GT(std::abs(rkl - plain), 1e-3) << "the cases must differ for the test to mean anything";
  EXPECT_GT(std::abs(rkl - own), 1e-3);
  // Token-level mixtures need one vocabulary; scoring batch by batch needs the policy's tokens.
  for (std::string extra : {" --kl_estimator token_mixture", " --precompute_ref_log_probs false"}) {
    auto bad = w.dpo(w.tmp / "bad", "--ref_a " + w.ra + " --ref_b " + other + common + extra);
    EXPECT_NE(bad.exit_code, 0) << extra;
    EXPECT_NE(bad.output.find("own tokenizer"), std::string::npos) << extra << "\n" << bad.output;
  }
  // The reference pass ran once per (reference, data): the repeats hit the cache.
  auto r = w.dpo(w.tmp / "again", "--ref_a " + w.ra + " --ref_b " + w.rb + common);
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("cached in"), std::string::npos) << r.output;
}

// A few epochs over the training pairs at a high learning rate lower the DPO loss, and the run writes a loadable
// model, checkpoints and the metrics with TRL's names.
TEST(Dpo, TrainingLowersTheLossAndWritesTheModel) {
  DpoWorld w;
  auto out = w.tmp / "train";
  auto r = w.dpo(out, "--dataset ultrafeedback --ref_a " + w.ra + " --ref_b " + w.rb +
                          " --learning_rate 2e-3 --per_device_train_batch_size 4 --gradient_accumulation_steps 2"
                          " --num_train_epochs 4 --save_steps 8 --eval_steps 8 --eval_samples 8");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  auto m = read_json_lines(out + "/metrics.jsonl");
  std::vector<double> loss;
  for (auto& row : m)
    if (row.contains("loss")) loss.push_back(row["loss"].get<double>());
  ASSERT_EQ(loss.size(), 16u);  // 32 pairs x 4 epochs / 8 per step
  double first = (loss[0] + loss[1] + loss[2] + loss[3]) / 4, last = (loss[12] + loss[13] + loss[14] + loss[15]) / 4;
  EXPECT_LT(last, first - 0.1) << "first epoch " << first << ", last " << last;
  for (const char* k :
       {"rewards/chosen", "rewards/rejected", "rewards/accuracies", "rewards/margins", "logps/chosen", "logps/rejected",
        "rewards/margins/ref_a", "rewards/margins/ref_b", "grad_norm", "learning_rate"})
    EXPECT_TRUE(m[0].contains(k)) << k;
  bool has_eval = false;
  for (auto& row : m) has_eval = has_eval || row.contains("eval/loss");
  EXPECT_TRUE(has_eval);
  EXPECT_TRUE(std::filesystem::exists(out + "/checkpoint-8/model.safetensors"));
  EXPECT_TRUE(std::filesystem::exists(out + "/run_config.json"));
  auto final_w = load_safetensors(out + "/model.safetensors"), ref_w = load_safetensors(w.ra + "/model.safetensors");
  EXPECT_EQ(final_w.size(), ref_w.size());
  double moved = 0;
  for (auto& [k, t] : final_w) moved = std::max(moved, max_abs_diff(t, ref_w[k]));
  EXPECT_GT(moved, 1e-4);
}

// --rm_name: after training, the reward model scores the policy against each reference and the chosen responses;
// `multiref dpo` is the same program as dpo_training.
TEST(Dpo, RewardModelEvaluationAtTheEnd) {
  DpoWorld w;
  run_ok(multiref_binary() + " init --arch llama --preset tiny --head seq_cls --seed 3 --tokenizer " + (w.tmp / "tok") +
         " --output_dir " + (w.tmp / "rm"));
  auto out = w.tmp / "rm_run";
  auto r =
      run_command(multiref_binary() + " dpo --data_dir " + w.data + " --output_dir " + out + " --cache_dir " + w.cache +
                  " --threads 1 --save_steps 0 --dataset " + w.small + " --ref_a " + w.ra + " --ref_b " + w.rb +
                  " --max_steps 1 --per_device_train_batch_size 2 --gradient_accumulation_steps 1 --rm_name " +
                  (w.tmp / "rm") + " --rm_num_prompts 3 --rm_max_new_tokens 6");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  auto j = nlohmann::json::parse(read_file(out + "/eval_rm.json"));
  EXPECT_EQ(j["num_prompts"].get<int>(), 3);
  for (const char* k : {"reward/policy", "reward/ref_a", "reward/ref_b", "reward/chosen", "win_rate/ref_a",
                        "win_rate/ref_b", "win_rate/chosen"})
    EXPECT_TRUE(j.contains(k)) << k;
  for (const char* k : {"win_rate/ref_a", "win_rate/ref_b", "win_rate/chosen"}) {
    double v = j[k].get<double>();
    EXPECT_TRUE(v >= 0 && v <= 1 && std::fmod(v * 6, 1.0) == 0) << k << " " << v << ": 3 prompts, ties count 1/2";
  }
  // Issue 21: a held-out prompt longer than the policy's context (1024 tokens) is truncated as training truncates
  // its prompts (--max_prompt_length), not a failure after a finished run.
  std::string long_prompt;
  for (int i = 0; i < 700; ++i) long_prompt += "colour sky ";
  std::ofstream(w.tmp / "long.jsonl")
      << nlohmann::json({{"prompt", long_prompt}, {"chosen", "Blue."}, {"rejected", "No."}}).dump() << "\n"
      << read_file(w.small);
  auto cmd = [&](const std::string& o, const std::string& rm) {
    return multiref_binary() + " dpo --data_dir " + w.data + " --output_dir " + o + " --cache_dir " + w.cache +
           " --threads 1 --save_steps 0 --dataset " + (w.tmp / "long.jsonl") + " --ref_a " + w.ra + " --ref_b " + w.rb +
           " --max_steps 1 --per_device_train_batch_size 2 --gradient_accumulation_steps 1 --rm_name " + rm +
           " --rm_num_prompts 2 --rm_max_new_tokens 4 --max_length 96 --max_prompt_length 48";
  };
  r = run_command(cmd(w.tmp / "long_run", w.tmp / "rm"));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("prompts truncated to their last 48 tokens"), std::string::npos) << r.output;
  EXPECT_EQ(nlohmann::json::parse(read_file(w.tmp / "long_run/eval_rm.json"))["num_prompts"].get<int>(), 2);
  // An evaluation that fails after training says that the model is saved, and exits non-zero.
  std::filesystem::copy(w.tmp / "rm", w.tmp / "rm_broken", std::filesystem::copy_options::recursive);
  std::filesystem::remove(w.tmp / "rm_broken/model.safetensors");
  std::ofstream(w.tmp / "rm_broken/model.safetensors") << "not a safetensors file";
  r = run_command(cmd(w.tmp / "broken_run", w.tmp / "rm_broken"));
  EXPECT_NE(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("training finished and the final model is saved in"), std::string::npos) << r.output;
  EXPECT_TRUE(file_exists(w.tmp / "broken_run/model.safetensors"));
}

TEST(Dpo, ResumedRunEndsWithTheSameWeights) {
  DpoWorld w;
  std::string extra =
      "--ref_a " + w.ra + " --ref_b " + w.rb +
      " --kl_type fkl --learning_rate 1e-3 --max_steps 4 "
      "--per_device_train_batch_size 2 --gradient_accumulation_steps 2 --save_steps 2 --warmup_ratio 0.25";
  auto full = w.dpo(w.tmp / "full", extra);
  ASSERT_EQ(full.exit_code, 0) << full.output;
  auto part = w.dpo(w.tmp / "part", extra);
  ASSERT_EQ(part.exit_code, 0) << part.output;
  multiref::remove_all(w.tmp / "part/checkpoint-4");
  std::filesystem::remove(w.tmp / "part/model.safetensors");
  auto resumed = w.dpo(w.tmp / "part", extra + " --resume_from_checkpoint latest");
  ASSERT_EQ(resumed.exit_code, 0) << resumed.output;
  EXPECT_EQ(read_file(w.tmp / "full/model.safetensors"), read_file(w.tmp / "part/model.safetensors"));
}

TEST(Dpo, BadDataAndFlagsAreClearErrors) {
  DpoWorld w;
  std::ofstream(w.tmp / "bad.jsonl") << R"({"prompt": "a", "chosen": "b", "rejected": "c"})"
                                        "\n"
                                     << "[1, 2]\n";
  struct Case {
    std::string extra;
    std::vector<std::string> fragments;
  };
  std::string refs = " --ref_a " + w.ra + " --ref_b " + w.rb;
  for (auto& c : std::vector<Case>{
           {refs + " --dataset " + (w.tmp / "bad.jsonl"), {"bad.jsonl:2", "JSON object"}},
           {refs + " --dataset " + (w.tmp / "missing.jsonl"), {"missing.jsonl", "ultrafeedback"}},
           {refs + " --alpha 1.5", {"--alpha", "[0, 1]"}},
           {refs + " --kl_type tv", {"--kl_type", "tv"}},
           {refs + " --loss_type kto", {"--loss_type", "kto"}},
           {refs + " --max_length 40 --max_prompt_length 48", {"--max_length", "--max_prompt_length"}},
           {refs + " --gamma 0", {"--gamma", "> 0"}},
           {refs + " --rm_name " + w.rb, {"reward model"}},  // a causal LM is no reward model: before training
           {refs + " --frobnicate 1", {"unknown flag --frobnicate"}},
           {"", {"--ref_a is required"}},
           {refs + " --refs a,b", {"either --refs or --ref_a"}},
           // The flags shared with gsm8k_grpo (trainer_flags.h).
           {refs + " --adam_beta1 -0.5", {"--adam_beta1 and --adam_beta2", "[0, 1)"}},
           {refs + " --warmup_ratio 1", {"--warmup_ratio", "[0, 1)"}},
           {refs + " --logging_steps 0", {"--logging_steps"}},
           // --bf16 is the seed's spelling of --dtype bfloat16; float16 training has no loss scaling.
           {refs + " --bf16 --dtype float32", {"--bf16 means --dtype bfloat16"}},
           {refs + " --dtype float16", {"--dtype float16", "loss scaling", "dpo_training"}},
       }) {
    auto r = w.dpo(w.tmp / "bad_out", c.extra);
    EXPECT_NE(r.exit_code, 0) << c.extra;
    for (auto& f : c.fragments) EXPECT_NE(r.output.find(f), std::string::npos) << c.extra << "\n" << r.output;
    EXPECT_FALSE(std::filesystem::exists(w.tmp / "bad_out/model.safetensors"));
  }
  // Issue 21: a broken second reference is found before the first one is scored (nothing reaches the cache).
  std::filesystem::copy(w.rb, w.tmp / "rb_bad", std::filesystem::copy_options::recursive);
  std::ofstream(w.tmp / "rb_bad/tokenizer_config.json") << "{\"tokenizer_class\": ";
  auto r = w.dpo(w.tmp / "bad_out", " --ref_a " + w.ra + " --ref_b " + (w.tmp / "rb_bad") + " --cache_dir " +
                                        (w.tmp / "fresh_cache") + " --max_steps 1");
  EXPECT_NE(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("rb_bad/tokenizer_config.json"), std::string::npos) << r.output;
  EXPECT_EQ(r.output.find("reference log-probs"), std::string::npos) << r.output;
  EXPECT_TRUE(!std::filesystem::exists(w.tmp / "fresh_cache") || std::filesystem::is_empty(w.tmp / "fresh_cache"))
      << "a reference was scored before the broken one was checked";
  // --help lists every flag with its default.
  auto h = run_command(std::string(MULTIREF_DPO_BINARY) + " --help");
  EXPECT_EQ(h.exit_code, 0);
  for (const char* f :
       {"--rm_name", "--precompute_ref_log_probs", "--truncation_mode", "--label_smoothing", "(default: 5e-07)"})
    EXPECT_NE(h.output.find(f), std::string::npos) << f;
}
