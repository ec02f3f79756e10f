// Offline multi-reference DPO (the paper's UltraFeedback pipeline). The trainer orchestrates: pairs from
// preference_data.h, log-probs from pair_logps.h (reference pass cached by ref_logps_cache.h), the loss from
// losses.h, AdamW from optimizer.h, checkpoints from train/train_checkpoint.h, logging from training_log.h, and the
// final reward-model evaluation from eval_rm.h.
#pragma once
#include <nlohmann/json.hpp>

#include "rl/dpo_config.h"

namespace multiref {

// Trains for the configured epochs / steps (or until SIGINT/SIGTERM, which saves a checkpoint first).
// `run_config` is the resolved flag table, saved with the run and every checkpoint.
void run_dpo(DpoConfig cfg, const nlohmann::json& run_config);

}  // namespace multiref
