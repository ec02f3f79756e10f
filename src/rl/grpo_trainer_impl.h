// GrpoTrainer's state, shared by its two source files: grpo_trainer.cpp (loading, rollouts and scoring, evaluation)
// and grpo_update.cpp (the micro-batches' losses and backward). Internal to rl/.
#pragma once
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "data/epoch_sampler.h"
#include "data/prompt_data.h"
#include "dist/comm.h"
#include "eval/task_rewards.h"
#include "generation/generation.h"
#include "io/hf_model.h"
#include "model/batching.h"
#include "model/logprobs.h"
#include "objectives/objectives.h"
#include "rl/grpo_trainer.h"
#include "tokenizer/chat_template.h"
#include "tokenizer/tokenizer.h"

namespace multiref {

// Tokens per no-grad scoring pass (rows x sequence length) unless --scoring_batch_tokens says: on a CPU the GEMMs are
// saturated long before this, on a GPU a step's whole batch usually fits in one.
constexpr int64_t kScoreTokensCpu = 4096, kScoreTokensCuda = 1 << 17;
// Tokens per forward+backward slice of a micro-batch on a CPU unless --update_batch_tokens says (rl/update_slices.h):
// ~1.3 MB of activations per token at Qwen2.5-0.5B's shape; GEMMs of a few hundred rows already run at full rate.
constexpr int64_t kUpdateTokensCpu = 1024;

// Log-probs of the completion tokens only [N, C] (= columns P-1.. of token_logprobs): prompt positions never go
// through the vocabulary projection, which is most of a scoring pass's time at Qwen's vocabulary.
inline torch::Tensor completion_logprobs(Transformer& model, const torch::Tensor& hidden, const torch::Tensor& ids,
                                         const torch::Tensor& mask, int64_t prompt_len) {
  int64_t C1 = ids.size(1) - prompt_len + 1;
  return token_logprobs_from_hidden(model, hidden.narrow(1, prompt_len - 1, C1), ids.narrow(1, prompt_len - 1, C1),
                                    mask.narrow(1, prompt_len - 1, C1));
}

struct GrpoTrainer::Impl {
  GrpoConfig cfg;
  torch::Device device = torch::kCPU;
  torch::ScalarType dtype = torch::kFloat32;
  LoadedModel policy;
  std::vector<LoadedModel> refs;
  std::shared_ptr<const Tokenizer> tok;  // null for a policy without one (prompt_ids data)
  std::string tok_dir;                   // where the tokenizer (and generation_config.json) are copied from
  std::optional<ChatFormat> chat;
  std::string system_prompt;
  std::vector<PromptRow> train, test;
  std::vector<std::unique_ptr<TaskPrompt>> train_prompts;  // made on first use, one per train row
  std::unique_ptr<EpochSampler> sampler;
  std::unique_ptr<TaskRewards> rewards;
  std::vector<int64_t> eos_ids;
  int64_t data_pos = 0;
  // The generation round the optimizer steps are using, and how many of its num_iterations steps have run.
  std::unique_ptr<Rollout> current;
  int iterations_done = 0;
  std::unique_ptr<Comm> comm;  // data parallel: this rank's share of every step (one rank: all of it)

  TaskPrompt make_prompt(const PromptRow& row) const {
    return task_prompt(row, tok.get(), chat ? &*chat : nullptr, system_prompt, cfg.max_prompt_length);
  }
  const TaskPrompt& train_prompt(size_t i) {
    if (!train_prompts[i]) train_prompts[i] = std::make_unique<TaskPrompt>(make_prompt(train[i]));
    return *train_prompts[i];
  }

  GenerationConfig gen_config(uint64_t seed, int64_t G) const {
    GenerationConfig g;
    g.max_new_tokens = cfg.max_completion_length;
    g.sampling.temperature = cfg.temperature;
    g.sampling.top_p = cfg.top_p;
    g.num_return_sequences = G;
    g.eos_ids = eos_ids;
    g.seed = seed;
    // One batch for the step's rollouts (this rank's N completions, prompts shared per group) unless capped; a cap
    // below G still decodes whole groups (the batch is rounded up to one prompt).
    int64_t N = (int64_t)cfg.per_device_train_batch_size * cfg.gradient_accumulation_steps;
    g.batch_size = cfg.generation_batch_size > 0 ? (int64_t)cfg.generation_batch_size : std::max(N, G);
    cfg.decode.apply(g, device);
    return g;
  }

  // The exact FKL term of samples [lo, hi) of a rollout's reference samples.
  FklSampleLoss fkl_loss(const std::vector<RefSample>& samples, int64_t lo, int64_t hi) {
    std::vector<const TokenRow*> pp, cc;
    std::vector<int64_t> which;
    std::vector<double> coef;
    for (int64_t j = lo; j < hi; ++j) {
      const auto& s = samples[(size_t)j];
      pp.push_back(&s.prompt);
      cc.push_back(&s.completion);
      which.push_back(s.ref);
      coef.push_back(s.coef);
    }
    auto b = pack_aligned(pp, cc, device);
    auto flp =
        completion_logprobs(policy.model, policy.model->hidden_states(b.ids, b.mask), b.ids, b.mask, b.prompt_len);
    auto frl = torch::zeros_like(flp);  // each sample's own reference's log-probs (the sampler's), for statistics
    for (int64_t j = lo; j < hi; ++j) {
      const auto& lp = samples[(size_t)j].lp;
      if (!lp.empty()) frl[j - lo].narrow(0, 0, (int64_t)lp.size()).copy_(torch::tensor(lp).to(frl.scalar_type()));
    }
    return fkl_ref_sample_loss(flp, frl, b.completion_mask, which, coef, (int64_t)refs.size(), cfg.gamma);
  }

  // Exact FKL: fresh completions from the references at the step's prompts, stratified by beta (reference i draws
  // m_i of them, each weighing beta_i / m_i), sampled from pi_i itself (temperature 1, no top-p). `prompts` are the
  // whole step's (every rank's); this rank draws samples [lo, hi) of the step's M, exactly as one rank drawing all M
  // would (each sample's random stream is its index in its reference's list).
  std::vector<RefSample> draw_ref_samples(int64_t step, const std::vector<const TaskPrompt*>& prompts, int64_t lo,
                                          int64_t hi) {
    auto counts = stratified_counts(cfg.weights, ref_sample_count((int64_t)prompts.size()));
    std::vector<RefSample> out;
    int64_t next = 0;  // prompts are dealt round-robin across all samples, so every reference sees every prompt
    for (size_t k = 0; k < refs.size(); ++k) {
      std::vector<std::vector<int64_t>> at;
      int64_t first = -1;  // index in reference k's list of this rank's first sample
      for (int64_t j = 0; j < counts[k]; ++j, ++next) {
        if (next < lo || next >= hi) continue;
        if (first < 0) first = j;
        at.push_back(prompts[(size_t)(next % (int64_t)prompts.size())]->ids);
      }
      if (at.empty()) continue;
      auto g = gen_config(stream_seed((uint64_t)cfg.seed, step, 8 + k), 1);
      g.sampling.temperature = 1.0;
      g.sampling.top_p = 1.0;
      g.first_sequence = first;
      auto res = generate(refs[k].model, at, g);
      for (size_t j = 0; j < at.size(); ++j)
        out.push_back(
            {at[j], res.sequences[j].ids, res.sequences[j].logprobs, (int64_t)k, cfg.weights[k] / (double)counts[k]});
    }
    return out;
  }
  int64_t ref_sample_count(int64_t prompts) const { return cfg.fkl_samples > 0 ? cfg.fkl_samples : prompts; }
};

}  // namespace multiref
