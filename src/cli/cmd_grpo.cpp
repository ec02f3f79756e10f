// `gsm8k_grpo` / `multiref grpo`: the trainer's flag table, then the run.
#include "cli/commands.h"
#include "rl/grpo_trainer.h"

namespace multiref {

int grpo_main(int argc, char** argv, int first, const char* program) {
  GrpoConfig cfg;
  FlagTable flags(
      program,
      "Online multi-reference GRPO (arXiv:2502.01203) on GSM8K or any prompt dataset, with built-in rewards, "
      "reward models and reward programs. Batches count completions as in TRL: "
      "each step generates per_device_train_batch_size x gradient_accumulation_steps completions, "
      "num_generations per prompt.");
  if (!parse_config(flags, cfg, argc, argv, first)) return 0;
  run_grpo(cfg, flags.to_json());
  return 0;
}

}  // namespace multiref
