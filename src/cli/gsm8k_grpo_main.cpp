// `gsm8k_grpo`: the paper code's command name for online multi-reference GRPO (same as `multiref grpo`).
#include "cli/commands.h"
#include "rl/grpo_trainer.h"

int main(int argc, char** argv) {
  return multiref::run_main("gsm8k_grpo", [&] { return multiref::grpo_main(argc, argv, 1, "gsm8k_grpo"); });
}
