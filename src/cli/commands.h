// Entry points of the `multiref` subcommands. Each parses its own flag table and returns an exit code;
// errors are thrown as multiref::Error and reported by run_main() (util/flags.h).
#pragma once
#include "util/flags.h"

namespace multiref {

int cmd_init(int argc, char** argv);
int cmd_score(int argc, char** argv);
int cmd_generate(int argc, char** argv);
int cmd_reward(int argc, char** argv);
int cmd_tokenize(int argc, char** argv);
int cmd_train_tokenizer(int argc, char** argv);
int cmd_theory(int argc, char** argv);
int cmd_eval(int argc, char** argv);
int cmd_demo(int argc, char** argv);
int cmd_launch(int argc, char** argv);

// `gsm8k_grpo` / `multiref grpo` and `dpo_training` / `multiref dpo`: parse flags (argv[first..]) and train.
int grpo_main(int argc, char** argv, int first, const char* program);
int dpo_main(int argc, char** argv, int first, const char* program);

}  // namespace multiref
