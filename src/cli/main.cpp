// `multiref`: the command-line front end. Each subcommand lives in its own cmd_*.cpp.
#include <iostream>

#include "cli/commands.h"
#include "rl/dpo_trainer.h"
#include "rl/grpo_trainer.h"
#include "util/common.h"

namespace {
const char* kUsage =
    "usage: multiref <command> [flags]     (multiref <command> --help for its flags)\n"
    "\n"
    "commands:\n"
    "  demo             the whole system on a generated task, nothing to download: two references, GRPO and DPO,\n"
    "                   single- and multi-reference, report.md (about 10 minutes on 2 cores; --quick: 2)\n"
    "  init             write a randomly initialized Hugging Face checkpoint (Qwen2 / Llama, tiny to 0.5B shapes)\n"
    "  score            per-token log-probabilities of token sequences under a model\n"
    "  generate         sample completions (KV-cached, batched, seeded), or stream one to the terminal\n"
    "  reward           the scalar reward of token sequences or conversations under a reward model\n"
    "  tokenize         encode text / chat messages to ids, or decode ids (HF-exact)\n"
    "  train-tokenizer  train a byte-level BPE tokenizer on plain text\n"
    "  grpo             online multi-reference GRPO on GSM8K or any prompt dataset (same as the gsm8k_grpo "
    "executable)\n"
    "  dpo              offline multi-reference DPO on preference pairs (same as the dpo_training executable)\n"
    "  eval gsm8k       GSM8K accuracy (greedy, or mean@k / pass@k), format rate, completion length\n"
    "  eval rm          a policy's mean reward and win rates under a reward model, against other models or the data\n"
    "  eval task        the mean of each reward (built-in, reward model or reward program) on any prompt dataset\n"
    "  theory           closed-form multi-reference RKL / FKL optima on a finite response set\n"
    "  launch           start a multi-process (data-parallel) run like torchrun: launch --nproc_per_node N -- "
    "COMMAND\n";
}  // namespace

int main(int argc, char** argv) {
  using namespace multiref;
  if (argc < 2 || std::string(argv[1]) == "--help" || std::string(argv[1]) == "-h" || std::string(argv[1]) == "help") {
    std::cout << kUsage;
    return argc < 2 ? 1 : 0;
  }
  std::string cmd = argv[1];
  return run_main(("multiref " + cmd).c_str(), [&]() -> int {
    if (cmd == "init") return cmd_init(argc, argv);
    if (cmd == "score") return cmd_score(argc, argv);
    if (cmd == "generate") return cmd_generate(argc, argv);
    if (cmd == "reward") return cmd_reward(argc, argv);
    if (cmd == "tokenize") return cmd_tokenize(argc, argv);
    if (cmd == "train-tokenizer") return cmd_train_tokenizer(argc, argv);
    if (cmd == "theory") return cmd_theory(argc, argv);
    if (cmd == "grpo") return grpo_main(argc, argv, 2, "multiref grpo");
    if (cmd == "dpo") return dpo_main(argc, argv, 2, "multiref dpo");
    if (cmd == "eval") return cmd_eval(argc, argv);
    if (cmd == "demo") return cmd_demo(argc, argv);
    if (cmd == "launch") return cmd_launch(argc, argv);
    fail("unknown command '", cmd, "'; run `multiref --help` for the list");
  });
}
