#include "eval/eval_task.h"

#include <algorithm>

#include "util/common.h"

namespace multiref {

nlohmann::json evaluate_task(Transformer& model, const Tokenizer* tok, const std::vector<TaskPrompt>& prompts,
                             TaskRewards& rewards, const TaskEvalConfig& cfg) {
  if (prompts.empty()) fail("evaluate_task: no prompts to evaluate");
  auto g = eval_generation_config(cfg);
  std::vector<std::vector<int64_t>> ids;
  for (auto& p : prompts) ids.push_back(p.ids);
  double t0 = now_seconds();
  auto res = generate(model, ids, g);
  double secs = now_seconds() - t0;
  const int64_t k = cfg.num_samples;
  std::vector<TaskCompletion> cs;
  double length = 0;
  for (size_t n = 0; n < res.sequences.size(); ++n) {
    TaskCompletion c;
    c.prompt = &prompts[n / (size_t)k];
    c.ids = &res.sequences[n].ids;
    if (tok) c.text = tok->decode(*c.ids, /*skip_special_tokens=*/true, std::nullopt, /*unknown_ids_are_errors=*/false);
    length += (double)c.ids->size();
    cs.push_back(std::move(c));
  }
  auto s = rewards.score(cs);
  double total = 0, best = 0;
  for (size_t q = 0; q < prompts.size(); ++q) {
    auto first = s.total.begin() + (std::ptrdiff_t)(q * (size_t)k);
    best += *std::max_element(first, first + k);
  }
  for (double t : s.total) total += t;
  double n = (double)cs.size();
  nlohmann::json out = {{"reward", total / n},
                        {"mean_completion_length", length / n},
                        {"num_prompts", prompts.size()},
                        {"num_samples", k},
                        {"seconds", secs},
                        {"tokens_per_second", (double)res.stats.generated_tokens / std::max(secs, 1e-9)}};
  for (auto& [key, v] : s.means) out[key] = v;
  if (k > 1) out["reward_max@" + std::to_string(k)] = best / (double)prompts.size();
  return out;
}

}  // namespace multiref
