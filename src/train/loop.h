// The one training loop of every trainer (GRPO, DPO, SFT): AdamW and its learning-rate schedule, resuming from a
// checkpoint, run_config.json, progress and metrics (training_log.h), the logging / evaluation / save cadence,
// SIGINT / SIGTERM (save, then exit cleanly), the final model and the shutdown. A trainer brings only what is its
// own, as a TrainerTask: the gradients of one optimizer step (GRPO: rollout and micro-steps; DPO: pair batches),
// its evaluation and the extra fields of its trainer state.
#pragma once
#include <cstdint>
#include <functional>
#include <map>
#include <nlohmann/json.hpp>
#include <string>
#include <utility>
#include <vector>

#include "model/transformer.h"
#include "train/optimizer.h"
#include "train/training_log.h"

namespace multiref {

class Comm;

using Metrics = std::map<std::string, double>;

class TrainerTask {
 public:
  virtual ~TrainerTask() = default;
  // Once, after the optimizer exists and any checkpoint was restored, before the first step (e.g. GRPO's exact-FKL
  // reference samples).
  virtual void start(int64_t step) {}
  // Before the step's gradients (`step` = steps done so far), outside the step's timing: e.g. GRPO's rollout when
  // one is due. The metrics join the step's row.
  virtual Metrics prepare(int64_t step) { return {}; }
  // The gradients of one optimizer step: the loop has zeroed them; forward and backward over the micro-batches.
  // Returns the step's statistics (averaged over micro-batches).
  virtual Metrics accumulate(int64_t step) = 0;
  // After the optimizer step (`step` = steps done, including this one): metrics derived from the step's wall time
  // `seconds` (zero_grad to optimizer step), e.g. tokens per second or the epoch.
  virtual void finish(int64_t step, double seconds, Metrics& m) {}
  // Evaluation at the evaluation steps: metrics to log and a console line.
  virtual std::pair<Metrics, std::string> evaluate(int64_t step) { return {}; }
  // Fields of trainer_state.json besides global_step and max_steps, and their restoration on resume.
  virtual nlohmann::json state() const { return nlohmann::json::object(); }
  virtual void restore(const nlohmann::json& trainer_state) {}
  // After a completed run's final model is written and the optimizer freed (e.g. DPO's reward-model evaluation);
  // `log` takes its console lines.
  virtual void end(TrainingLog& log) {}
};

struct LoopSettings {
  std::string program;     // prefix of console messages ("gsm8k_grpo", "dpo", "sft")
  std::string output_dir;  // checkpoints, metrics and the final model; empty: nothing is written (in-memory SFT)
  int64_t total_steps = 0;
  AdamWConfig adamw;  // adamw.lr is the peak learning rate
  LrSchedule schedule = LrSchedule::Linear;
  double warmup_ratio = 0.0;  // of total_steps
  double max_grad_norm = 1.0;
  // A step with a non-finite loss or gradient norm is skipped (no update); this many in a row end the run with an
  // error (0: never). The weights, and so every checkpoint, never see a NaN.
  int64_t max_skipped_steps = 10;
  int64_t logging_steps = 1;  // 0: no metrics rows (in-memory runs)
  int64_t eval_steps = 0;     // 0: no evaluation
  bool eval_at_end = false;   // also evaluate after the last step (DPO)
  int64_t save_steps = 0;     // 0: only the final checkpoint
  int save_total_limit = 0;
  std::string resume_from_checkpoint;  // "", "latest" or a checkpoint directory
  std::string tokenizer_src;           // tokenizer files copied into checkpoints and the final model
  // The run's reference models: frozen by the loop (eval mode, no gradients) and checked at the end never to have
  // received a gradient. Empty where the references live elsewhere (DPO's precomputed log-probs).
  std::vector<Transformer> references;
  nlohmann::json run_config;  // the resolved flags, saved with the run and every checkpoint
  std::vector<std::string> console_keys;
  bool stop_on_signal = true;  // SIGINT / SIGTERM save a checkpoint and end the run
  // Data parallel (dist/comm.h; null or one rank: a single process). Every rank runs the loop over its own share of
  // each step's batch: the loop averages the gradients and the step's metrics over the ranks (the task sees only
  // its share), agrees on stopping, and only rank 0 writes (logs, checkpoints, the final model); every rank reads
  // a checkpoint to resume.
  Comm* comm = nullptr;
  int zero_stage = 0;  // 1: AdamW's state sharded over the ranks (ZeRO-1, train/optimizer.h)
  std::function<void(int64_t step, const Metrics&)> on_step;  // after every step (in-memory progress displays)
};

struct LoopResult {
  int64_t step = 0;           // optimizer steps done
  bool interrupted = false;   // stopped by a signal (checkpoint saved, no final model)
  std::vector<Metrics> rows;  // every step's metrics, in order (in-memory runs read their losses here)
};

// Trains `policy` with `task` to settings.total_steps. With an output directory: resumes when asked, writes
// run_config.json, logs, evaluates and saves on the cadence, saves a checkpoint at the end (also when interrupted)
// and the final model when the run completes. Without one: the optimizer loop alone.
LoopResult run_training_loop(Transformer& policy, TrainerTask& task, const LoopSettings& settings);

}  // namespace multiref
