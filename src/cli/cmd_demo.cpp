// `multiref demo`: the whole system on a generated task, with nothing to download (issue 8; see demo.h).
#include "cli/commands.h"
#include "demo/demo.h"
#include "util/flags.h"

namespace multiref {

int cmd_demo(int argc, char** argv) {
  DemoConfig cfg;
  FlagTable flags("multiref demo",
                  "The whole system on a generated GSM8K-style task, with nothing to download: a BPE tokenizer and two "
                  "tiny Qwen2 references with different strengths trained from scratch, then GRPO and DPO from each "
                  "reference alone and from both (multi-reference RKL and FKL), evaluated into OUTPUT_DIR/report.md. "
                  "About 10 minutes on 2 cores (--quick: 2). Stages are kept: rerunning skips what is done and "
                  "resumes an interrupted trainer.");
  if (!parse_config(flags, cfg, argc, argv, 2)) return 0;
  return run_demo(cfg);
}

}  // namespace multiref
