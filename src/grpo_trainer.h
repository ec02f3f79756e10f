// Online multi-reference GRPO (the paper's GSM8K pipeline). The trainer orchestrates: rollouts from
// generation.h, rewards from rewards.h, every formula from objectives.h / losses.h, AdamW from optimizer.h,
// checkpoints from checkpointing.h, logging from training_log.h.
#pragma once
#include "grpo_config.h"

namespace multiref {

// Runs training to cfg.max_steps (or until SIGINT/SIGTERM, which saves a checkpoint first). `run_config` is
// the resolved flag table, saved with the run and every checkpoint.
void run_grpo(GrpoConfig cfg, const nlohmann::json& run_config);

// `gsm8k_grpo` / `multiref grpo`: parses flags (argv[first..]) and runs.
int grpo_main(int argc, char** argv, int first, const char* program);

}  // namespace multiref
