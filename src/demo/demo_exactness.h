// The demo's "exactness" stage: what exact buys, shown on a problem small enough to know the answer. A toy task
// with one prompt and 13 possible completions (two tiny tokenizer-less references of 4 token ids that disagree, a
// reward program in POSIX sh giving each completion a fixed reward) is trained with `multiref grpo` in the exact
// configuration and with the paper code's token-level estimators, for RKL and FKL; the trained policies'
// distributions over all 13 completions are compared with the closed-form optimum (objectives/closed_form.h) by
// total variation, in a table and a plot.
#pragma once
#include <nlohmann/json.hpp>
#include <string>

namespace multiref {

// Trains the four toy policies under out/exactness/ and writes out/exactness/exactness.json:
// {"rkl"|"fkl": {"tv_exact", "tv_paper_code", "tv_reference", "optimum", "exact", "paper_code", "reference"}}.
// `quick`: fewer steps (a smoke run, not a converged one).
void run_exactness_stage(const std::string& out, bool quick, uint64_t seed);

// The report's section (markdown with the plots, which it writes under out/plots/), from exactness.json; empty
// when the stage has not run.
std::string exactness_report(const std::string& out, nlohmann::json& results);

}  // namespace multiref
