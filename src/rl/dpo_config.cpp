#include "rl/dpo_config.h"

#include <cstdlib>

#include "train/trainer_flags.h"
#include "util/common.h"
#include "util/dtype_flag.h"

namespace multiref {

void DpoConfig::register_flags(FlagTable& t) {
  t.add("dataset", &dataset,
        "ultrafeedback (reads DATA_DIR/ultrafeedback/*.jsonl; names with eval/test are held "
        "out) or a path to a jsonl file of {prompt, chosen, rejected}");
  t.add("ref_a", &ref_a, "first reference model (directory or hub id)");
  t.add("ref_b", &ref_b, "second reference model (optional: K = 1 without it)");
  t.add_enum("kl_type", &kl_type, {{"rkl", KLType::Rkl}, {"fkl", KLType::Fkl}},
             "rkl: reference log-prob sum_i alpha_i log pi_i(y|x); fkl: mixture pibar = sum_i beta_i pi_i in the "
             "ratio pibar(y)/pi(y)");
  t.add("alpha", &alpha, "RKL weight of ref_a; ref_b gets 1 - alpha");
  t.add("beta", &beta, "FKL weight of ref_a; ref_b gets 1 - beta");
  t.add("gamma", &gamma, "KL coefficient (TRL's beta)");
  t.add("rm_name", &rm_name,
        "reward model (sequence classifier) scoring the trained policy at the end "
        "(output_dir/eval_rm.json); empty: skip");
  t.add("output_dir", &output_dir, "output directory: checkpoints, metrics, final model");
  t.add("per_device_train_batch_size", &per_device_train_batch_size, "preference pairs per micro-batch");
  t.add("gradient_accumulation_steps", &gradient_accumulation_steps, "micro-batches per optimizer step");
  t.add("num_train_epochs", &num_train_epochs, "passes over the training pairs (fractions allowed)");
  register_dtype_flags(t, &dtype, &bf16);
  register_model_flags(t, *this);
  register_optimizer_flags(t, *this, "the steps");
  t.add("max_steps", &max_steps, "optimizer steps; > 0 overrides --num_train_epochs");
  t.add("max_length", &max_length, "prompt + response tokens at most (TRL's truncation)");
  t.add("max_prompt_length", &max_prompt_length, "prompt tokens kept when prompt + response exceed --max_length");
  t.add_enum("truncation_mode", &truncation_mode,
             {{"keep_end", TruncationMode::KeepEnd}, {"keep_start", TruncationMode::KeepStart}},
             "which end of a too-long prompt is kept");
  t.add_enum("loss_type", &loss_type, dpo_loss_choices(), "sigmoid (DPO), ipo or hinge");
  t.add("label_smoothing", &label_smoothing, "conservative DPO: assumed probability that a label is flipped");
  t.add_enum("kl_estimator", &kl_estimator,
             {{"exact", DpoEstimator::Exact}, {"token_mixture", DpoEstimator::TokenMixture}},
             "exact (sequence-level mixtures) or token_mixture (the paper code's token-level mixtures, approximate; "
             "needs one shared vocabulary)");
  t.add("precompute_ref_log_probs", &precompute_ref_log_probs,
        "score the references once before training (cached on disk) and free them; false: score each batch");
  t.add("cache_dir", &cache_dir, "reference log-prob cache (default: $MULTIREF_CACHE, else ~/.cache/multiref)");
  t.add("seed", &seed, "random seed (data order)");
  register_checkpoint_flags(t, *this, "output_dir");
  t.add("eval_steps", &eval_steps, "DPO loss and accuracies on the held-out pairs every N steps (0 = off)");
  t.add("eval_samples", &eval_samples, "held-out pairs per evaluation");
  t.add("rm_num_prompts", &rm_num_prompts, "--rm_name: held-out prompts generated and scored");
  t.add("rm_max_new_tokens", &rm_max_new_tokens, "--rm_name: new tokens per generated response");
  register_run_flags(t, *this, "auto (each model's own), chatml, llama3, llama3.1, plain (all models)");
}

void DpoConfig::validate() {
  resolve_bf16_alias(dtype, bf16);
  if (dtype == DTypeChoice::Float16)
    fail("--dtype float16: training in float16 needs loss scaling, which dpo_training does not do; use bfloat16");
  bool rkl = kl_type == KLType::Rkl;
  references = resolve_references({ref_a, ref_b, refs, ref_weights, alpha, beta}, rkl);
  if (policy.empty()) policy = references.ids[0];
  if (!(gamma > 0)) fail("--gamma must be > 0 for DPO (it scales the implicit reward), got ", gamma);
  if (per_device_train_batch_size < 1) fail("--per_device_train_batch_size must be >= 1");
  if (gradient_accumulation_steps < 1) fail("--gradient_accumulation_steps must be >= 1");
  if (!(num_train_epochs > 0) && max_steps <= 0) fail("--num_train_epochs must be > 0 (or give --max_steps)");
  if (max_steps == 0 || max_steps < -1) fail("--max_steps must be > 0, or -1 to train --num_train_epochs");
  if (max_prompt_length < 1 || max_length <= max_prompt_length)
    fail("--max_length (", max_length, ") must exceed --max_prompt_length (", max_prompt_length, ") >= 1");
  validate_optimizer_flags(*this);
  if (!(label_smoothing >= 0 && label_smoothing < 0.5)) fail("--label_smoothing must lie in [0, 0.5)");
  if (label_smoothing > 0 && loss_type != DpoLossType::Sigmoid)
    fail("--label_smoothing applies to --loss_type sigmoid only");
  validate_checkpoint_flags(*this);
  if (eval_steps < 0 || eval_samples < 1) fail("--eval_steps must be >= 0 and --eval_samples >= 1");
  if (rm_num_prompts < 1 || rm_max_new_tokens < 1) fail("--rm_num_prompts and --rm_max_new_tokens must be >= 1");
  validate_run_flags(*this);
  if (kl_estimator == DpoEstimator::Exact)
    reference_form = rkl ? DpoReference::RklGeometric : DpoReference::FklArithmetic;
  else
    reference_form = rkl ? DpoReference::TokenGeometric : DpoReference::TokenArithmetic;
}

std::string default_cache_dir() {
  if (const char* e = std::getenv("MULTIREF_CACHE"); e && *e) return e;
  if (const char* e = std::getenv("XDG_CACHE_HOME"); e && *e) return join_path(e, "multiref");
  if (const char* e = std::getenv("HOME"); e && *e) return join_path(join_path(e, ".cache"), "multiref");
  return ".cache/multiref";
}

}  // namespace multiref
