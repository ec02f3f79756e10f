// The flags of `dpo_training` / `multiref dpo`: one struct, one flag table (which also prints --help), one
// validate() with fix-it messages. The resolved config is saved with every run and checkpoint.
#pragma once
#include <string>
#include <vector>

#include "objectives/losses.h"
#include "rl/references.h"
#include "train/optimizer.h"
#include "util/flags.h"
#include "util/runtime.h"

namespace multiref {

enum class TruncationMode { KeepEnd, KeepStart };
// exact: the sequence-level forms (RKL: reference log-prob sum_i alpha_i log pi_i(y|x); FKL: log-space ratios of
// the arithmetic mixture). token_mixture: the paper code's token-level mixtures (approximate; needs one vocabulary).
enum class DpoEstimator { Exact, TokenMixture };

struct DpoConfig {
  // The paper code's flags.
  std::string dataset = "ultrafeedback";
  std::string ref_a, ref_b;
  KLType kl_type = KLType::Rkl;
  double alpha = 0.5;   // RKL weight of ref_a (ref_b: 1 - alpha)
  double beta = 0.5;    // FKL weight of ref_a (ref_b: 1 - beta)
  double gamma = 0.1;   // KL coefficient (TRL's beta)
  std::string rm_name;  // reward model evaluated at the end of training (empty: none)
  std::string output_dir = "runs/dpo";
  int per_device_train_batch_size = 2;  // preference pairs per micro-batch
  int gradient_accumulation_steps = 16;
  double num_train_epochs = 1;
  bool bf16 = false;  // the seed's spelling of --dtype bfloat16
  DTypeChoice dtype = DTypeChoice::Auto;
  // K references and the policy.
  std::string policy;
  std::vector<std::string> refs;
  std::vector<double> ref_weights;
  std::string data_dir;
  // Optimization.
  double learning_rate = 5e-7;  // the paper code's
  LrSchedule lr_scheduler_type = LrSchedule::Linear;
  double warmup_ratio = 0.0;
  double weight_decay = 0.0;
  double adam_beta1 = 0.9, adam_beta2 = 0.999;
  double max_grad_norm = 1.0;
  int64_t max_skipped_steps = 10;
  int64_t max_steps = -1;  // > 0 overrides num_train_epochs
  // Data.
  int max_length = 1024;
  int max_prompt_length = 512;
  TruncationMode truncation_mode = TruncationMode::KeepEnd;
  DpoLossType loss_type = DpoLossType::Sigmoid;
  double label_smoothing = 0.0;
  DpoEstimator kl_estimator = DpoEstimator::Exact;
  bool precompute_ref_log_probs = true;
  std::string cache_dir;  // reference log-prob cache (default: $MULTIREF_CACHE, else ~/.cache/multiref)
  int64_t seed = 42;
  // Bookkeeping.
  int logging_steps = 1;
  int save_steps = 500;
  int save_total_limit = 2;
  int eval_steps = 0;
  int eval_samples = 200;
  int rm_num_prompts = 64;
  int rm_max_new_tokens = 256;
  std::string resume_from_checkpoint;
  bool gradient_checkpointing = false;
  int threads = 0;
  int dist_timeout = 600;  // seconds a multi-process run waits for another rank before failing
  int zero_stage = 0;      // 1: AdamW's state sharded over the ranks
  bool print_memory_plan = false;
  DeviceChoice device = DeviceChoice::Auto;
  std::string chat_template = "auto";

  void register_flags(FlagTable& t);
  void validate();

  // Filled by validate().
  ReferenceSet references;
  DpoReference reference_form = DpoReference::RklGeometric;
};

// $MULTIREF_CACHE, else $XDG_CACHE_HOME/multiref, else ~/.cache/multiref.
std::string default_cache_dir();

}  // namespace multiref
