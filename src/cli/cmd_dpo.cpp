// `dpo_training` / `multiref dpo`: the trainer's flag table, then the run.
#include "cli/commands.h"
#include "rl/dpo_trainer.h"

namespace multiref {

int dpo_main(int argc, char** argv, int first, const char* program) {
  DpoConfig cfg;
  FlagTable flags(program,
                  "Offline multi-reference DPO (arXiv:2502.01203) on preference pairs. Batches count pairs: each "
                  "optimizer step uses per_device_train_batch_size x gradient_accumulation_steps pairs.");
  if (!parse_config(flags, cfg, argc, argv, first)) return 0;
  run_dpo(cfg, flags.to_json());
  return 0;
}

}  // namespace multiref
