// Entry points of the `multiref` subcommands. Each parses its own flag table and returns an exit code;
// errors are thrown as multiref::Error and reported by run_main().
#pragma once
#include <functional>

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

// Runs `fn`, printing an Error (or any exception) as "<program>: error: ..." and returning 2.
int run_main(const char* program, const std::function<int()>& fn);

}  // namespace multiref
