// The shared training loop with a toy task on a tiny model: the order of the task's calls, the learning-rate
// schedule (by hand), the logging / evaluation / save cadence and the files it writes, and resuming from a
// checkpoint reaching bit for bit the weights of the uninterrupted run.
#include <fstream>

#include "io/hf_model.h"
#include "test_util.h"
#include "train/loop.h"
#include "train/train_checkpoint.h"

using namespace multiref;
using namespace multiref::testing;

namespace {

// Loss 0.5 * sum((w - target_step)^2) over every parameter: deterministic, different at every step.
struct ToyTask : TrainerTask {
  Transformer& model;
  std::vector<std::string> calls;
  int64_t position = 0;  // advanced by prepare(), saved in trainer_state
  bool restored = false;
  explicit ToyTask(Transformer& m) : model(m) {}
  void start(int64_t step) override { calls.push_back("start@" + std::to_string(step)); }
  Metrics prepare(int64_t step) override {
    calls.push_back("prepare@" + std::to_string(step));
    ++position;
    return {{"position", (double)position}};
  }
  Metrics accumulate(int64_t step) override {
    calls.push_back("accumulate@" + std::to_string(step));
    torch::Tensor loss = torch::zeros({});
    for (auto& p : model->parameters()) loss = loss + 0.5 * (p - 0.01 * (double)step).pow(2).sum();
    loss.backward();
    return {{"loss", loss.item<double>()}};
  }
  void finish(int64_t step, double seconds, Metrics& m) override {
    calls.push_back("finish@" + std::to_string(step));
    m["finished"] = (double)step;
  }
  std::pair<Metrics, std::string> evaluate(int64_t step) override {
    calls.push_back("evaluate@" + std::to_string(step));
    return {{{"eval/step", (double)step}}, "evaluated at " + std::to_string(step)};
  }
  nlohmann::json state() const override { return {{"position", position}}; }
  void restore(const nlohmann::json& st) override {
    position = st.at("position").get<int64_t>();
    restored = true;
  }
};

LoopSettings settings(const std::string& out, int64_t total) {
  LoopSettings s;
  s.program = "toy";
  s.output_dir = out;
  s.total_steps = total;
  s.adamw = AdamWConfig{1e-2, 0.9, 0.999, 1e-8, 0.0};
  s.schedule = LrSchedule::Linear;
  s.warmup_ratio = 0.25;  // ceil(0.25 * 4) = 1 warmup step
  s.logging_steps = 2;
  s.eval_steps = 2;
  s.save_steps = 2;
  s.run_config = {{"flag", "value"}};
  s.stop_on_signal = false;
  return s;
}

}  // namespace

TEST(TrainingLoop, InMemoryCallsTheTaskInOrderWithTheScheduleByHand) {
  auto lm = load_model(golden_dir("qwen2_tied"), torch::kFloat32, torch::kCPU);
  ToyTask task(lm.model);
  auto s = settings("", 4);
  std::vector<int64_t> seen;
  s.on_step = [&](int64_t step, const Metrics&) { seen.push_back(step); };
  auto res = run_training_loop(lm.model, task, s);
  EXPECT_EQ(res.step, 4);
  EXPECT_FALSE(res.interrupted);
  EXPECT_EQ(seen, (std::vector<int64_t>{1, 2, 3, 4}));
  std::vector<std::string> want = {"start@0"};
  for (int s = 0; s < 4; ++s) {
    want.push_back("prepare@" + std::to_string(s));
    want.push_back("accumulate@" + std::to_string(s));
    want.push_back("finish@" + std::to_string(s + 1));
    // Evaluation runs on its cadence (its results go to the log where the run has one).
    if ((s + 1) % 2 == 0) want.push_back("evaluate@" + std::to_string(s + 1));
  }
  EXPECT_EQ(task.calls, want);
  // Linear schedule, 1 warmup step of 4: multipliers 0/1, then 1 - (s - 1) / 3 for s = 1, 2, 3.
  std::vector<double> lr = {0.0, 1e-2, 1e-2 * (1 - 1.0 / 3), 1e-2 * (1 - 2.0 / 3)};
  ASSERT_EQ(res.rows.size(), 4u);
  for (size_t i = 0; i < 4; ++i) {
    EXPECT_DOUBLE_EQ(res.rows[i].at("learning_rate"), lr[i]) << i;
    EXPECT_EQ(res.rows[i].at("position"), (double)(i + 1));  // prepare()'s metrics join the row
    EXPECT_EQ(res.rows[i].at("finished"), (double)(i + 1));
    EXPECT_GT(res.rows[i].at("grad_norm"), 0.0);
  }
}

TEST(TrainingLoop, WritesOnCadenceAndResumesBitForBit) {
  TempDir tmp;
  auto a = load_model(golden_dir("qwen2_tied"), torch::kFloat32, torch::kCPU);
  ToyTask ta(a.model);
  auto s = settings(tmp / "a", 5);
  s.eval_at_end = true;
  auto res = run_training_loop(a.model, ta, s);
  EXPECT_EQ(res.step, 5);
  EXPECT_EQ(nlohmann::json::parse(read_file(tmp / "a/run_config.json")), s.run_config);
  // Checkpoints every 2 steps and at the end; the final model beside them.
  std::vector<int64_t> ckpts;
  for (auto& [n, dir] : list_checkpoints(tmp / "a")) ckpts.push_back(n);
  EXPECT_EQ(ckpts, (std::vector<int64_t>{2, 4, 5}));
  auto st = nlohmann::json::parse(read_file(tmp / "a/checkpoint-4/trainer_state.json"));
  EXPECT_EQ(st["global_step"], 4);
  EXPECT_EQ(st["max_steps"], 5);
  EXPECT_EQ(st["position"], 4);
  EXPECT_TRUE(file_exists(tmp / "a/model.safetensors"));
  EXPECT_TRUE(file_exists(tmp / "a/config.json"));
  // Training rows at steps 2, 4 and the last; evaluation rows at 2, 4 and (eval_at_end) 5.
  std::vector<std::pair<int64_t, bool>> rows;
  for (auto& j : read_json_lines(tmp / "a/metrics.jsonl"))
    rows.push_back({j["step"].get<int64_t>(), j.contains("eval/step")});
  EXPECT_EQ(rows, (std::vector<std::pair<int64_t, bool>>{
                      {2, false}, {2, true}, {4, false}, {4, true}, {5, false}, {5, true}}));

  // Resume a copy of the run from checkpoint-4: one more step, the task's state restored, the same weights.
  std::filesystem::create_directories(tmp / "b");
  std::filesystem::copy(tmp / "a/checkpoint-4", tmp / "b/checkpoint-4", std::filesystem::copy_options::recursive);
  auto b = load_model(golden_dir("qwen2_tied"), torch::kFloat32, torch::kCPU);
  ToyTask tb(b.model);
  auto sb = settings(tmp / "b", 5);
  sb.eval_at_end = true;
  sb.resume_from_checkpoint = "latest";
  auto rb = run_training_loop(b.model, tb, sb);
  EXPECT_EQ(rb.step, 5);
  EXPECT_TRUE(tb.restored);
  EXPECT_EQ(tb.calls, (std::vector<std::string>{"start@4", "prepare@4", "accumulate@4", "finish@5", "evaluate@5"}));
  EXPECT_EQ(tb.position, 5);
  auto pa = state_dict(a.model), pb = state_dict(b.model);
  ASSERT_EQ(pa.size(), pb.size());
  for (size_t i = 0; i < pa.size(); ++i) EXPECT_TRUE(torch::equal(pa[i].second, pb[i].second)) << pa[i].first;
}
