// `multiref demo --quick`, end to end through the binary: it runs once (shared by every test here), then its
// outputs are checked — the report and results of every run, the plots, genuine HF references — and a second
// run must skip every stage and leave the report as it was.
#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmath>
#include <fstream>
#include <set>

#include "data/gsm8k.h"
#include "io/hf_model.h"
#include "test_util.h"
#include "tokenizer/tokenizer.h"

using namespace multiref;
using namespace multiref::testing;

namespace {

const std::vector<std::string> kModels = {"ref_format", "ref_math", "grpo/single_ref_format", "grpo/single_ref_math",
                                          "grpo/rkl",   "grpo/fkl", "dpo/single_ref_format",  "dpo/single_ref_math",
                                          "dpo/rkl",    "dpo/fkl"};

size_t count(const std::string& text, const std::string& what) {
  size_t n = 0;
  for (size_t p = text.find(what); p != std::string::npos; p = text.find(what, p + 1)) ++n;
  return n;
}

// gtest_discover_tests runs every test in its own process: the first to take the lock runs the demo (twice) into
// the build tree and records both runs' output; the others read them. A rebuilt multiref binary starts afresh.
CommandResult load_result(const std::string& dir, const std::string& name) {
  return {std::stoi(read_file(dir + "/" + name + ".rc")), read_file(dir + "/" + name + ".out")};
}
void save_result(const std::string& dir, const std::string& name, const CommandResult& r) {
  write_file_atomic(dir + "/" + name + ".out", r.output);
  write_file_atomic(dir + "/" + name + ".rc", std::to_string(r.exit_code));
}

class Demo : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    std::string cache = std::string(MULTIREF_TEST_CACHE) + "/demo-quick";
    make_dirs(cache);
    int lock = ::open((cache + "/lock").c_str(), O_CREAT | O_RDWR, 0644);
    ASSERT_GE(lock, 0) << cache;
    ::flock(lock, LOCK_EX);
    struct stat st {};
    ::stat(multiref_binary().c_str(), &st);
    std::string stamp =
        std::to_string(st.st_size) + " " + std::to_string(st.st_mtim.tv_sec) + "." + std::to_string(st.st_mtim.tv_nsec);
    out = cache + "/demo";
    if (!file_exists(cache + "/stamp") || read_file(cache + "/stamp") != stamp) {
      remove_all(cache + "/stamp");
      remove_all(out);
      auto first = run_command(demo_command());
      save_result(cache, "first", first);
      if (first.exit_code == 0) {
        write_file_atomic(cache + "/report_first.md", read_file(out + "/report.md"));
        save_result(cache, "second", run_command(demo_command()));
      }
      write_file_atomic(cache + "/stamp", stamp);
    }
    ::flock(lock, LOCK_UN);
    ::close(lock);
    first = new CommandResult(load_result(cache, "first"));
    if (first->exit_code == 0) {
      report_after_first = read_file(cache + "/report_first.md");
      second = new CommandResult(load_result(cache, "second"));
      report_after_second = read_file(out + "/report.md");
    }
  }
  static void TearDownTestSuite() {
    delete first;
    delete second;
    first = second = nullptr;
  }
  static std::string demo_command(const std::string& dir = out) {
    return multiref_binary() + " demo --quick --output_dir " + dir;
  }
  void SetUp() override {
    ASSERT_EQ(first->exit_code, 0) << first->output;
    ASSERT_NE(second, nullptr);
    ASSERT_EQ(second->exit_code, 0) << second->output;
  }
  static nlohmann::json results() { return nlohmann::json::parse(read_file(out + "/results.json")); }

  static std::string out, report_after_first, report_after_second;  // out: shared by every test: read only
  static CommandResult *first, *second;
};
std::string Demo::out, Demo::report_after_first, Demo::report_after_second;
CommandResult* Demo::first = nullptr;
CommandResult* Demo::second = nullptr;

TEST_F(Demo, ReportHasTheTableWithEveryRunAndTheProgressWasShown) {
  std::string report = read_file(out + "/report.md");
  EXPECT_NE(report.find("| model |"), std::string::npos) << report;
  for (auto& m : kModels)
    EXPECT_NE(report.find("| " + m + " |"), std::string::npos) << m << " missing from\n" << report;
  EXPECT_NE(report.find("## What happened"), std::string::npos);
  EXPECT_NE(report.find("## Exactness"), std::string::npos) << "the toy task against the closed form";
  for (auto svg : {"plots/sft_loss.svg", "plots/grpo_reward.svg", "plots/dpo_loss.svg", "plots/exactness_rkl.svg",
                   "plots/exactness_fkl.svg"})
    EXPECT_NE(report.find(std::string("(") + svg + ")"), std::string::npos) << svg << " is not embedded";
  // The printed table names every run too, and each stage announced itself and its end.
  for (auto& m : kModels) EXPECT_NE(first->output.find(m + " "), std::string::npos) << m;
  EXPECT_EQ(count(first->output, ": done in "), 14u) << first->output;
  EXPECT_EQ(count(first->output, "done, skipping"), 0u);
}

TEST_F(Demo, ResultsHaveFiniteNumbersForEveryRun) {
  auto r = results();
  ASSERT_EQ(r["models"].size(), kModels.size());
  std::map<std::string, nlohmann::json> row;
  for (auto& m : r["models"]) row[m["name"].get<std::string>()] = m;
  for (auto& name : kModels) {
    ASSERT_TRUE(row.count(name)) << name;
    auto& m = row[name];
    for (auto key : {"accuracy", "format_rate", "sample_accuracy"}) {
      ASSERT_TRUE(m[key].is_number()) << name << " " << key;
      EXPECT_GE(m[key].get<double>(), 0.0) << name << " " << key;
      EXPECT_LE(m[key].get<double>(), 1.0) << name << " " << key;
    }
    ASSERT_TRUE(m["reward"].is_number()) << name;
    EXPECT_GE(m["reward"].get<double>(), -1.0) << name;  // xmlcount may go slightly negative; the rest is >= 0
    EXPECT_LE(m["reward"].get<double>(), 4.0) << name;
    for (auto key : {"kl/ref_format", "kl/ref_math"}) {
      ASSERT_TRUE(m[key].is_number()) << name << " " << key;
      double kl = m[key].get<double>();
      EXPECT_TRUE(std::isfinite(kl)) << name << " " << key;
      EXPECT_GE(kl, -1e-4) << name << " " << key;
    }
  }
  // A model's KL to itself is 0; the two references are different models.
  EXPECT_NEAR(row["ref_format"]["kl/ref_format"].get<double>(), 0.0, 1e-4);
  EXPECT_NEAR(row["ref_math"]["kl/ref_math"].get<double>(), 0.0, 1e-4);
  EXPECT_GT(row["ref_format"]["kl/ref_math"].get<double>(), 0.1);
  EXPECT_GT(row["ref_math"]["kl/ref_format"].get<double>(), 0.1);
  // Different strengths even at --quick's size: ref_format keeps the answer format far more often than ref_math.
  EXPECT_GE(row["ref_format"]["format_rate"].get<double>(), row["ref_math"]["format_rate"].get<double>() + 0.3);
  EXPECT_TRUE(r["what_happened"].is_string());
  // The exactness stage's distances (a smoke run at --quick: finite, and the policies moved off ref_a).
  for (auto kl : {"rkl", "fkl"})
    for (auto key : {"tv_exact", "tv_paper_code"}) {
      ASSERT_TRUE(r["exactness"][kl][key].is_number()) << kl << " " << key;
      EXPECT_GE(r["exactness"][kl][key].get<double>(), 0.0);
      EXPECT_LE(r["exactness"][kl][key].get<double>(), 1.0);
    }
}

TEST_F(Demo, PlotsAreSvgDocuments) {
  for (auto f : {"sft_loss.svg", "grpo_reward.svg", "grpo_kl.svg", "dpo_loss.svg"}) {
    std::string path = out + "/plots/" + f;
    ASSERT_TRUE(file_exists(path)) << path;
    std::string svg = read_file(path);
    EXPECT_EQ(svg.rfind("<svg", 0), 0u) << f;
    EXPECT_NE(svg.find("</svg>"), std::string::npos) << f;
    EXPECT_NE(svg.find("<polyline"), std::string::npos) << f << " has no curve";
  }
}

TEST_F(Demo, ReferencesAndRunsAreLoadableHfCheckpoints) {
  auto tok = Tokenizer::load(out + "/tokenizer");
  for (auto& name : kModels) {
    std::string dir = out + (name.rfind("ref_", 0) == 0 ? "/models/" + name : "/" + name);
    auto lm = load_model(dir, torch::kFloat32, torch::kCPU);
    EXPECT_EQ(lm.config.architecture, "Qwen2ForCausalLM") << name;
    EXPECT_EQ(lm.config.vocab_size, tok->vocab_size()) << name;
    for (auto f : {"tokenizer.json", "tokenizer_config.json", "generation_config.json"})
      EXPECT_TRUE(file_exists(dir + "/" + f)) << dir << " lacks " << f;
  }
  // The references were trained: different weights from each other, and eos is <|im_end|> as in Qwen2.5.
  EXPECT_NE(read_file(out + "/models/ref_format/model.safetensors"),
            read_file(out + "/models/ref_math/model.safetensors"));
  auto rf = load_model(out + "/models/ref_format", torch::kFloat32, torch::kCPU);
  ASSERT_FALSE(rf.config.eos_token_ids.empty());
  EXPECT_EQ(rf.config.eos_token_ids[0], *tok->eos_id);
}

TEST_F(Demo, DataIsAGsm8kSplitWithoutOverlap) {
  auto train = load_gsm8k("gsm8k", out + "/data", "train");
  auto test = load_gsm8k("gsm8k", out + "/data", "test");
  ASSERT_FALSE(train.empty());
  ASSERT_FALSE(test.empty());
  std::set<std::string> seen;
  for (auto& p : train) seen.insert(p.question);
  for (auto& p : test) EXPECT_FALSE(seen.count(p.question)) << "test question in train: " << p.question;
  std::ifstream pairs(out + "/data/dpo_pairs.jsonl");
  std::string line;
  ASSERT_TRUE(std::getline(pairs, line));
  auto j = nlohmann::json::parse(line);
  EXPECT_NE(j["chosen"], j["rejected"]);
}

TEST_F(Demo, SecondRunSkipsEveryStageAndKeepsTheReport) {
  EXPECT_EQ(count(second->output, "done, skipping"), 14u) << second->output;
  EXPECT_EQ(count(second->output, ": done in "), 0u) << second->output;
  EXPECT_EQ(report_after_second, report_after_first);
  // It still prints the results table.
  EXPECT_NE(second->output.find("grpo/rkl"), std::string::npos);
}

TEST_F(Demo, AnUnfinishedStageResumesAndLaterStagesRerun) {
  // As if interrupted while evaluating dpo/fkl: only that model is evaluated again, then the later stages rerun.
  // On a copy: the shared run stays as the other tests expect it.
  TempDir tmp;
  std::string copy = tmp / "demo";
  ASSERT_EQ(run_command("cp -a " + out + " " + copy).exit_code, 0);
  std::string kept = read_file(copy + "/eval/grpo_rkl.json");
  remove_all(copy + "/stages/evaluate.done");
  remove_all(copy + "/eval/dpo_fkl.json");
  auto r = run_command(demo_command(copy));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_EQ(count(r.output, "done, skipping"), 11u) << r.output;
  EXPECT_EQ(count(r.output, ": done in "), 3u) << r.output << "(evaluate, then exactness and the report)";
  EXPECT_NE(r.output.find("  dpo/fkl: accuracy"), std::string::npos) << r.output;
  EXPECT_EQ(r.output.find("  grpo/rkl: accuracy"), std::string::npos) << "a finished evaluation was redone";
  EXPECT_EQ(read_file(copy + "/eval/grpo_rkl.json"), kept);
  EXPECT_TRUE(file_exists(copy + "/eval/dpo_fkl.json"));
  EXPECT_TRUE(file_exists(copy + "/stages/report.done"));
}

TEST_F(Demo, OtherSettingsInTheSameDirectoryAreRefused) {
  auto r = run_command(multiref_binary() + " demo --seed 7 --quick --output_dir " + out);
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.output.find("other settings"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("--output_dir"), std::string::npos) << r.output;
}

TEST(DemoFlags, BadFlagsFailWithAClearMessage) {
  TempDir tmp;
  auto bad_bool = run_command(multiref_binary() + " demo --quick=maybe --output_dir " + (tmp / "d"));
  EXPECT_NE(bad_bool.exit_code, 0);
  EXPECT_NE(bad_bool.output.find("maybe"), std::string::npos) << bad_bool.output;
  EXPECT_NE(bad_bool.output.find("quick"), std::string::npos) << bad_bool.output;
  auto unknown = run_command(multiref_binary() + " demo --quik --output_dir " + (tmp / "d"));
  EXPECT_NE(unknown.exit_code, 0);
  EXPECT_NE(unknown.output.find("--quik"), std::string::npos) << unknown.output;
  auto threads = run_command(multiref_binary() + " demo --threads -1 --output_dir " + (tmp / "d"));
  EXPECT_NE(threads.exit_code, 0);
  EXPECT_NE(threads.output.find("--threads"), std::string::npos) << threads.output;
  EXPECT_FALSE(dir_exists(tmp / "d")) << "a rejected command must not start writing";
  auto help = run_command(multiref_binary() + " demo --help");
  EXPECT_EQ(help.exit_code, 0);
  for (auto f : {"--output_dir", "--quick", "--seed", "--threads", "runs/demo"})
    EXPECT_NE(help.output.find(f), std::string::npos) << f << " not in\n" << help.output;
}

}  // namespace
