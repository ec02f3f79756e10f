// `multiref demo` (issue 8): the whole system end to end with nothing to download. It generates a GSM8K-style
// task (demo_task.h), trains a byte-level BPE tokenizer on it, pretrains two tiny Qwen2 references from scratch
// with different strengths (ref_format: the <reasoning>/<answer> format but sloppy arithmetic; ref_math: right
// arithmetic but no format), runs GRPO and DPO from each single reference and with both (RKL and FKL, weights
// 0.5), evaluates every model (accuracy, format, reward, exact KL to each reference) and writes report.md,
// results.json and SVG training curves.
//
// Every stage writes a marker under OUTPUT_DIR/stages/ last; a rerun skips finished stages, and an interrupted
// trainer resumes from its latest checkpoint, so `multiref demo` can be stopped (Ctrl-C) and rerun at will.
#pragma once
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "util/flags.h"

namespace multiref {

struct DemoConfig {
  std::string output_dir = "runs/demo";
  bool quick = false;  // the tests' size: same stages, smaller everything (under a minute on 2 cores)
  int64_t seed = 42;
  // Threads per model computation. Tiny models run fastest on one: their matrix products are too small to split,
  // and on a busy machine OpenMP's spinning threads slow a split product down many times over. The two references
  // train side by side, one thread each.
  int threads = 1;

  void register_flags(FlagTable& t);
  void validate();
};

// The sizes of one demo, fixed by --quick (not flags: the point of the demo is one command that works; the
// trainers' own commands take every knob).
struct DemoPlan {
  int64_t train_problems = 0, test_problems = 0, max_operand = 0;
  double format_error_rate = 0;  // ref_format's arithmetic slips per step (demo_task.h noisy_steps)
  double math_format_share = 0;  // the share of ref_math's answers that do use the format
  int64_t vocab_size = 0;
  int64_t hidden = 0, intermediate = 0, layers = 0, heads = 0, kv_heads = 0;
  int64_t sft_steps = 0, sft_batch = 0;
  double sft_lr = 0;
  int64_t grpo_steps = 0, grpo_prompts_per_step = 0, grpo_generations = 0, grpo_completion_length = 0;
  double grpo_lr = 0, grpo_gamma = 0;
  int64_t dpo_steps = 0, dpo_batch = 0;
  double dpo_lr = 0, dpo_gamma = 0;
  int64_t eval_completion_length = 0;
};
DemoPlan demo_plan(bool quick);

// One row of the results: a reference or a trained policy.
struct DemoModel {
  std::string name;   // "ref_format", "grpo/rkl", ...
  std::string kind;   // "reference", "grpo" or "dpo"
  std::string label;  // what it is, for the report
  std::string dir;    // the HF model directory
};
// The rows in table order: the two references, the four GRPO runs, the four DPO runs.
std::vector<DemoModel> demo_models(const std::string& output_dir);

// Runs (or resumes) the demo; returns the exit code (130 when interrupted).
int run_demo(const DemoConfig& cfg);

// ---- demo_report.cpp ---------------------------------------------------------------------------------------

// Evaluates one model on the test problems: greedy accuracy / format rate / completion length (eval_gsm8k.h),
// and on one T = 1 sample per problem the mean gsm8k_xml reward and the exact sequence-level KL(pi || ref_i)
// (the sum over completion tokens of the full-vocabulary per-token KL) to each reference. Returns the JSON row.
nlohmann::json evaluate_demo_model(const DemoModel& m, const std::string& output_dir, const DemoPlan& plan,
                                   uint64_t seed);

// results.json, the plots and report.md from the per-model evaluations (OUTPUT_DIR/eval/*.json) and the
// trainers' metrics.jsonl files.
void write_demo_report(const std::string& output_dir, const DemoConfig& cfg, const DemoPlan& plan);

// OUTPUT_DIR/eval/<name with '/' as '_'>.json: one model's evaluation row.
std::string demo_eval_file(const std::string& output_dir, const std::string& name);

// The aligned results table (from OUTPUT_DIR/results.json), as printed at the end of every demo run.
std::string demo_results_table(const nlohmann::json& results);

}  // namespace multiref
