#include "eval/eval_gsm8k.h"

#include "data/rewards.h"
#include "generation/generation.h"
#include "util/common.h"
#include "util/keep_last.h"

namespace multiref {

std::vector<int64_t> gsm8k_prompt_ids(const Tokenizer& tok, const ChatFormat& chat, const MathProblem& p,
                                      int64_t max_prompt_length) {
  std::vector<ChatMessage> msgs = {{"system", kGsm8kXmlSystemPrompt}, {"user", p.question}};
  auto ids = tok.encode(chat.render(msgs, true));
  keep_last(ids, max_prompt_length);
  return ids;
}

GenerationConfig eval_generation_config(const Gsm8kEvalConfig& cfg) {
  if (cfg.num_samples < 1) fail("--num_samples must be >= 1");
  if (cfg.num_samples > 1 && cfg.temperature == 0)
    fail("--num_samples > 1 needs --temperature > 0 (greedy decoding gives k identical samples)");
  GenerationConfig g;
  g.max_new_tokens = cfg.max_new_tokens;
  g.sampling.temperature = cfg.temperature;
  g.sampling.top_p = cfg.top_p;
  g.num_return_sequences = cfg.num_samples;
  g.eos_ids = cfg.eos_ids;
  g.seed = cfg.seed;
  g.batch_size = cfg.batch_size;
  return g;
}

nlohmann::json evaluate_gsm8k(Transformer& model, const Tokenizer& tok, const ChatFormat& chat,
                              const std::vector<MathProblem>& problems, const Gsm8kEvalConfig& cfg) {
  if (problems.empty()) fail("evaluate_gsm8k: no questions to evaluate");
  auto g = eval_generation_config(cfg);
  std::vector<std::vector<int64_t>> prompts;
  for (auto& p : problems) prompts.push_back(gsm8k_prompt_ids(tok, chat, p, cfg.max_prompt_length));
  double t0 = now_seconds();
  auto res = generate(model, prompts, g);
  double secs = now_seconds() - t0;
  int64_t k = cfg.num_samples, correct = 0, formatted = 0, any_correct = 0;
  double length = 0;
  for (size_t q = 0; q < problems.size(); ++q) {
    bool any = false;
    for (int64_t s = 0; s < k; ++s) {
      const auto& c = res.sequences[q * (size_t)k + (size_t)s];
      auto text = tok.decode(c.ids, /*skip_special_tokens=*/true, std::nullopt, /*unknown_ids_are_errors=*/false);
      bool ok = answer_reward(text, problems[q].gold) > 0;
      correct += ok;
      any = any || ok;
      formatted += strict_format_reward(text) > 0;
      length += (double)c.ids.size();
    }
    any_correct += any;
  }
  double n = (double)problems.size() * (double)k;
  nlohmann::json out = {{"accuracy", (double)correct / n},
                        {"format_rate", (double)formatted / n},
                        {"mean_completion_length", length / n},
                        {"num_questions", problems.size()},
                        {"num_samples", k},
                        {"seconds", secs},
                        {"tokens_per_second", (double)res.stats.generated_tokens / std::max(secs, 1e-9)}};
  if (k > 1) out["pass@" + std::to_string(k)] = (double)any_correct / (double)problems.size();
  return out;
}

}  // namespace multiref
