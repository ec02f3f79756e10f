// The flags gsm8k_grpo and dpo_training share (models, AdamW, checkpoints and the run), registered and checked
// in one place so that their names, help and checks cannot drift apart. Templates over the config: each
// config keeps these as its own fields (with its own defaults), so code reads cfg.learning_rate either way.
#pragma once
#include <string>

#include "train/loop.h"
#include "train/optimizer.h"
#include "util/common.h"
#include "util/flags.h"
#include "util/runtime.h"

namespace multiref {

// --policy, --refs, --ref_weights, --data_dir.
template <typename Config>
void register_model_flags(FlagTable& t, Config& c) {
  t.add("policy", &c.policy, "initial policy (default: the first reference, as in the paper's code)");
  t.add("refs", &c.refs, "K references M1,M2,... (replaces --ref_a/--ref_b)");
  t.add("ref_weights", &c.ref_weights, "weights of --refs (alpha or beta by --kl_type; default uniform)");
  t.add("data_dir", &c.data_dir, "data directory (default: $MULTIREF_DATA, else ./data)");
}

// AdamW and its schedule. `steps` says what --warmup_ratio is a fraction of.
template <typename Config>
void register_optimizer_flags(FlagTable& t, Config& c, const std::string& steps) {
  t.add("learning_rate", &c.learning_rate, "peak learning rate of AdamW");
  t.add_enum("lr_scheduler_type", &c.lr_scheduler_type, lr_schedule_choices(), "learning-rate schedule after warmup");
  t.add("warmup_ratio", &c.warmup_ratio, "fraction of " + steps + " spent warming up linearly");
  t.add("weight_decay", &c.weight_decay, "decoupled AdamW weight decay");
  t.add("adam_beta1", &c.adam_beta1, "AdamW beta1");
  t.add("adam_beta2", &c.adam_beta2, "AdamW beta2");
  t.add("max_grad_norm", &c.max_grad_norm, "gradient clipping norm (0 = off)");
  t.add("max_skipped_steps", &c.max_skipped_steps,
        "a step whose loss or gradient norm is not finite is skipped (weights untouched, counted as "
        "skipped_steps); this many in a row stop the run (0 = never)");
}

template <typename Config>
void validate_optimizer_flags(const Config& c) {
  if (!(c.learning_rate >= 0)) fail("--learning_rate must be >= 0, got ", c.learning_rate);
  if (!(c.warmup_ratio >= 0 && c.warmup_ratio < 1)) fail("--warmup_ratio must lie in [0, 1), got ", c.warmup_ratio);
  if (!(c.weight_decay >= 0)) fail("--weight_decay must be >= 0, got ", c.weight_decay);
  if (!(c.adam_beta1 >= 0 && c.adam_beta1 < 1) || !(c.adam_beta2 >= 0 && c.adam_beta2 < 1))
    fail("--adam_beta1 and --adam_beta2 must lie in [0, 1), got ", c.adam_beta1, " and ", c.adam_beta2);
  if (!(c.max_grad_norm >= 0)) fail("--max_grad_norm must be >= 0 (0 = no clipping), got ", c.max_grad_norm);
  if (c.max_skipped_steps < 0) fail("--max_skipped_steps must be >= 0 (0 = never stop), got ", c.max_skipped_steps);
}

// Logging, checkpoints and resuming. `out_flag` names the output directory's flag (model_out, output_dir).
template <typename Config>
void register_checkpoint_flags(FlagTable& t, Config& c, const std::string& out_flag) {
  t.add("logging_steps", &c.logging_steps, "log every N optimizer steps");
  t.add("save_steps", &c.save_steps, "checkpoint every N optimizer steps (0 = only at the end)");
  t.add("save_total_limit", &c.save_total_limit, "keep at most N checkpoints (0 = all)");
  t.add("resume_from_checkpoint", &c.resume_from_checkpoint,
        "a checkpoint directory (" + out_flag + "/checkpoint-N), or 'latest'");
}

template <typename Config>
void validate_checkpoint_flags(const Config& c) {
  if (c.logging_steps < 1) fail("--logging_steps must be >= 1");
  if (c.save_steps < 0 || c.save_total_limit < 0) fail("--save_steps and --save_total_limit must be >= 0");
}

// Memory, threads, device and the chat template. `template_help` says which models the template applies to.
template <typename Config>
void register_run_flags(FlagTable& t, Config& c, const std::string& template_help) {
  t.add("gradient_checkpointing", &c.gradient_checkpointing, "recompute activations in backward to save memory");
  t.add("threads", &c.threads, "CPU threads (0 = one per core)");
  t.add_enum("device", &c.device, device_choices(), "where to run");
  t.add("chat_template", &c.chat_template, template_help);
  t.add("dist_timeout", &c.dist_timeout,
        "multi-process runs (torchrun, multiref launch): seconds to wait for the other ranks before failing");
  t.add("zero_stage", &c.zero_stage,
        "0, or 1: shard AdamW's moments and fp32 master weights over the ranks (ZeRO-1; a checkpoint resumes on any "
        "number of ranks)");
  t.add("print_memory_plan", &c.print_memory_plan,
        "print the memory per rank (weights, gradients, optimizer state, references) for 1-8 ranks with and "
        "without --zero_stage 1, from the models' config.json alone, and exit");
}

template <typename Config>
void validate_run_flags(const Config& c) {
  const auto& t = c.chat_template;
  if (t != "auto" && t != "chatml" && t != "llama3" && t != "llama3.1" && t != "plain")
    fail("--chat_template '", t, "': expected auto, chatml, llama3, llama3.1 or plain");
  if (c.dist_timeout < 1) fail("--dist_timeout must be >= 1 second, got ", c.dist_timeout);
  if (c.zero_stage != 0 && c.zero_stage != 1)
    fail("--zero_stage ", c.zero_stage, ": multiref has stage 0 (off) and 1 (optimizer state sharded)");
}

// The training loop's settings from these shared flags: AdamW and its schedule, the logging / evaluation / save
// cadence and resuming. The trainer adds what is its own (program name, console keys, tokenizer, run_config).
template <typename Config>
LoopSettings loop_settings_from_flags(const Config& c, const std::string& output_dir, int64_t total_steps) {
  LoopSettings s;
  s.output_dir = output_dir;
  s.total_steps = total_steps;
  s.adamw = AdamWConfig{c.learning_rate, c.adam_beta1, c.adam_beta2, 1e-8, c.weight_decay};
  s.schedule = c.lr_scheduler_type;
  s.warmup_ratio = c.warmup_ratio;
  s.max_grad_norm = c.max_grad_norm;
  s.max_skipped_steps = c.max_skipped_steps;
  s.logging_steps = c.logging_steps;
  s.eval_steps = c.eval_steps;
  s.save_steps = c.save_steps;
  s.save_total_limit = c.save_total_limit;
  s.resume_from_checkpoint = c.resume_from_checkpoint;
  s.zero_stage = c.zero_stage;
  return s;
}

}  // namespace multiref
