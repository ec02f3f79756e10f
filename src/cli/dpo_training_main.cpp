// `dpo_training`: the paper code's command name for offline multi-reference DPO (same as `multiref dpo`).
#include "cli/commands.h"
#include "rl/dpo_trainer.h"

int main(int argc, char** argv) {
  return multiref::run_main("dpo_training", [&] { return multiref::dpo_main(argc, argv, 1, "dpo_training"); });
}
