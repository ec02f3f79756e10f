#include "rl/grpo_config.h"

#include <unistd.h>

#include "objectives/objectives.h"
#include "rl/references.h"
#include "train/trainer_flags.h"
#include "util/common.h"
#include "util/dtype_flag.h"

namespace multiref {

void GrpoConfig::register_flags(FlagTable& t) {
  t.add("dataset", &dataset,
        "gsm8k (DATA_DIR/gsm8k/{train,test}.jsonl), a .jsonl of prompt rows, or a directory holding train.jsonl "
        "and optionally test.jsonl; a row is {\"prompt\": text}, {\"messages\": [...]}, {\"prompt_ids\": [...]} or "
        "GSM8K's {\"question\", \"answer\"}, and its other fields go to the rewards");
  t.add("system_prompt", &system_prompt,
        "system turn before each {\"prompt\"} row; auto = the paper code's prompt on GSM8K rows, none elsewhere");
  t.add("ref_a", &ref_a, "first reference model (directory or hub id)");
  t.add("ref_b", &ref_b, "second reference model (optional: K = 1 without it)");
  t.add("alpha", &alpha, "RKL weight of ref_a; ref_b gets 1 - alpha (ignored without --ref_b)");
  t.add("beta", &beta, "FKL weight of ref_a; ref_b gets 1 - beta (ignored without --ref_b)");
  t.add_enum("kl_type", &kl_type, {{"rkl", KLType::Rkl}, {"fkl", KLType::Fkl}},
             "rkl: gamma sum_i alpha_i KL(pi||pi_i); fkl: gamma sum_i beta_i KL(pi_i||pi)");
  t.add("gamma", &gamma, "KL coefficient (TRL's beta)");
  t.add("model_out", &model_out, "output directory: checkpoints, metrics, final model");
  t.add("per_device_train_batch_size", &per_device_train_batch_size,
        "completions per micro-batch (TRL semantics: counts completions, not prompts)");
  t.add("gradient_accumulation_steps", &gradient_accumulation_steps,
        "micro-batches per optimizer step; one generation round makes batch x accumulation completions");
  t.add("max_steps", &max_steps, "optimizer steps");
  register_dtype_flags(t, &dtype, &bf16);
  register_model_flags(t, *this);
  t.add("num_generations", &num_generations, "G: completions per prompt (the group)");
  t.add("max_prompt_length", &max_prompt_length, "prompts are left-truncated to this many tokens");
  t.add("max_completion_length", &max_completion_length, "new tokens per completion");
  t.add("temperature", &temperature, "sampling temperature of the rollouts");
  t.add("top_p", &top_p, "nucleus sampling of the rollouts (1 = off)");
  t.add("generation_batch_size", &generation_batch_size,
        "rollout completions decoded together, whole groups (0: all of the step's on this rank, one batch: as TRL)");
  decode.register_flags(t);
  t.add("scoring_batch_tokens", &scoring_batch_tokens,
        "rows x length per no-grad pass of the references and the old policy (0: 4096 on CPU, 131072 on CUDA); lower "
        "it to save memory, raise it on a large GPU");
  t.add("update_batch_tokens", &update_batch_tokens,
        "rows x length per forward+backward pass within a micro-batch (0: 1024 on CPU, the whole micro-batch on "
        "CUDA): the same gradient with one slice's activations in memory at a time; each slice drops its padding");
  register_optimizer_flags(t, *this, "--max_steps");
  t.add("num_iterations", &num_iterations, "mu: optimizer steps on each generation batch (clipped ratio)");
  t.add("epsilon", &epsilon, "clip range of the ratio (lower, and upper unless --epsilon_high)");
  t.add("epsilon_high", &epsilon_high, "upper clip range (0 = --epsilon)");
  t.add("kl_estimator", &kl_estimator,
        "exact (rkl: full in the loss, k1 in the reward; fkl: ref_samples) | full | k1 | k2 | k3 (TRL's) | "
        "mixture_k3 (paper code) | ref_samples | fkl_full | fkl_mixture_k3; which are exact: README, Exactness");
  t.add_enum("kl_in", &kl_in, {{"loss", KLIn::Loss}, {"reward", KLIn::Reward}},
             "where the KL enters: the loss, or subtracted from the reward (k1, k2, k3 only)");
  t.add_enum("advantage_baseline", &advantage_baseline,
             {{"auto", BaselineChoice::Auto},
              {"group_mean", BaselineChoice::GroupMean},
              {"leave_one_out", BaselineChoice::LeaveOneOut}},
             "what each reward is compared with: the group's mean (TRL; scales the reward's gradient by 1 - 1/G) or "
             "the mean of the other G - 1; auto: leave_one_out with an exact KL estimator, else group_mean");
  t.add_enum("loss_type", &loss_type, loss_aggregation_choices(), "how per-token losses are averaged");
  t.add("scale_rewards", &scale_rewards, "divide group-centred rewards by the group std");
  register_reward_flags(t);
  t.add("fkl_samples", &fkl_samples,
        "exact FKL: completions drawn from the references at every step, at the step's prompts, split across the "
        "references in proportion beta (0: one per prompt, at least one per reference)");
  t.add("seed", &seed, "random seed (data order, sampling)");
  register_checkpoint_flags(t, *this, "model_out");
  t.add("eval_steps", &eval_steps, "evaluate on the test split every N steps (0 = off)");
  t.add("eval_samples", &eval_samples, "test prompts per evaluation (greedy)");
  register_run_flags(t, *this, "auto (from the policy's tokenizer), chatml, llama3, llama3.1, plain");
}

void GrpoConfig::validate() {
  resolve_bf16_alias(dtype, bf16);
  if (dtype == DTypeChoice::Float16)
    fail("--dtype float16: training in float16 needs loss scaling, which gsm8k_grpo does not do; use bfloat16");
  bool rkl = kl_type == KLType::Rkl;
  auto set = resolve_references({ref_a, ref_b, refs, ref_weights, alpha, beta}, rkl);
  ref_ids = set.ids;
  ref_names = set.names;
  weights = set.weights;
  if (policy.empty()) policy = ref_ids[0];
  if (!(gamma >= 0)) fail("--gamma must be >= 0, got ", gamma);
  if (per_device_train_batch_size < 1) fail("--per_device_train_batch_size must be >= 1");
  if (gradient_accumulation_steps < 1) fail("--gradient_accumulation_steps must be >= 1");
  if (num_generations < 1) fail("--num_generations must be >= 1");
  int64_t batch = (int64_t)per_device_train_batch_size * gradient_accumulation_steps;
  if (batch % num_generations != 0)
    fail("--per_device_train_batch_size x --gradient_accumulation_steps = ", batch,
         " completions per step is not a multiple of --num_generations ", num_generations,
         " (each prompt's group must be complete)");
  if (max_steps < 1) fail("--max_steps must be >= 1");
  if (max_prompt_length < 1 || max_completion_length < 1)
    fail("--max_prompt_length and --max_completion_length must be >= 1");
  {
    // A step's rollout holds every completion's tokens (ids and mask, 16 bytes) with their log-probs under the
    // policy and each reference (4 bytes each) at once. A batch that cannot fit in this machine's memory is refused
    // here, before anything loads: a typo of 10^9 otherwise runs silently for minutes before failing.
    double tokens = (double)batch * (double)(max_prompt_length + max_completion_length);
    double bytes = tokens * (16.0 + 4.0 * (double)(set.names.size() + 1));
    double ram = (double)sysconf(_SC_PHYS_PAGES) * (double)sysconf(_SC_PAGE_SIZE);
    if (ram > 0 && bytes > ram)
      fail("--per_device_train_batch_size x --gradient_accumulation_steps = ", batch, " completions of up to ",
           max_prompt_length + max_completion_length, " tokens per step need at least ", bytes / 1e9,
           " GB for the rollout alone, more than this machine's ", ram / 1e9,
           " GB of memory: lower --gradient_accumulation_steps (the seed uses 8)");
  }
  if (!(temperature > 0)) fail("--temperature must be > 0 for GRPO rollouts (sampling), got ", temperature);
  if (!(top_p > 0 && top_p <= 1)) fail("--top_p must lie in (0, 1], got ", top_p);
  if (generation_batch_size < 0)
    fail("--generation_batch_size must be >= 0 (0: the step's completions in one batch), got ", generation_batch_size);
  decode.validate();
  if (scoring_batch_tokens < 0) fail("--scoring_batch_tokens must be >= 0 (0: automatic), got ", scoring_batch_tokens);
  if (update_batch_tokens < 0) fail("--update_batch_tokens must be >= 0 (0: automatic), got ", update_batch_tokens);
  validate_optimizer_flags(*this);
  if (num_iterations < 1) fail("--num_iterations must be >= 1");
  if (!(epsilon >= 0) || !(epsilon_high >= 0)) fail("--epsilon and --epsilon_high must be >= 0");
  if (epsilon_high == 0) epsilon_high = epsilon;
  if (fkl_samples < 0) fail("--fkl_samples must be >= 0 (0: one per prompt)");
  validate_checkpoint_flags(*this);
  if (eval_steps < 0 || eval_samples < 1) fail("--eval_steps must be >= 0 and --eval_samples >= 1");
  validate_reward_flags();
  std::string est = kl_estimator;
  if (est == "exact") est = !rkl ? "ref_samples" : kl_in == KLIn::Loss ? "full" : "k1";
  bool found = false;
  for (auto& [name, p] : kl_penalty_choices())
    if (name == est) penalty = p, found = true;
  if (!found)
    fail("--kl_estimator '", kl_estimator,
         "': expected exact, full, k1, k2, k3, mixture_k3, ref_samples, fkl_full or fkl_mixture_k3");
  if (kl_penalty_is_fkl(penalty) != !rkl)
    fail("--kl_estimator ", est, " is a ", rkl ? "forward" : "reverse", "-KL estimator but --kl_type is ",
         rkl ? "rkl" : "fkl");
  if (!kl_penalty_allowed_in(penalty, kl_in))
    fail("--kl_in reward --kl_estimator ", est, ": only a per-token sampled estimate can be subtracted from the ",
         "reward; use k1 (exact there), k2 or k3, or --kl_in loss");
  bool exact = kl_penalty_is_exact(penalty, kl_in);
  // Exact terms are expectations under pi itself: samples from a tempered or truncated pi would bias them (and the
  // reward's gradient), so they refuse rather than quietly optimize another distribution.
  if (exact && gamma > 0 && (temperature != 1.0 || top_p != 1.0))
    fail("--kl_estimator ", kl_estimator, " (", est,
         ", exact) samples from the policy itself: it needs --temperature "
         "1 --top_p 1 (got ",
         temperature, ", ", top_p, "); an approximate estimator (k3) allows others");
  baseline = advantage_baseline == BaselineChoice::GroupMean     ? AdvantageBaseline::GroupMean
             : advantage_baseline == BaselineChoice::LeaveOneOut ? AdvantageBaseline::LeaveOneOut
             : exact                                             ? AdvantageBaseline::LeaveOneOut
                                                                 : AdvantageBaseline::GroupMean;
  validate_run_flags(*this);
}

}  // namespace multiref
