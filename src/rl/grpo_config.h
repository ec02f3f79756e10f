// The flags of `gsm8k_grpo` / `multiref grpo`: one struct, one flag table (which also prints --help), one
// validate() with fix-it messages. The resolved config is saved with every run and checkpoint.
#pragma once
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "eval/task_rewards.h"
#include "generation/decode_flags.h"
#include "objectives/losses.h"
#include "rl/references.h"
#include "train/optimizer.h"
#include "util/flags.h"
#include "util/runtime.h"

namespace multiref {

// --advantage_baseline: auto is leave-one-out where the KL term is exact (the step's gradient is then the
// objective's), the group mean (TRL) otherwise.
enum class BaselineChoice { Auto, GroupMean, LeaveOneOut };

// The reward flags (--reward, --reward_model, --reward_program, ...) come from RewardFlags.
struct GrpoConfig : RewardFlags {
  // The paper code's flags.
  std::string dataset = "gsm8k";
  std::string ref_a, ref_b;
  double alpha = 0.5;  // RKL weight of ref_a (ref_b: 1 - alpha)
  double beta = 0.5;   // FKL weight of ref_a (ref_b: 1 - beta)
  KLType kl_type = KLType::Rkl;
  double gamma = 0.1;  // KL coefficient
  std::string model_out = "runs/grpo";
  int per_device_train_batch_size = 4;  // completions per micro-batch (TRL semantics)
  int gradient_accumulation_steps = 8;
  int64_t max_steps = 2000;
  bool bf16 = false;  // the seed's spelling of --dtype bfloat16
  DTypeChoice dtype = DTypeChoice::Auto;
  // K references and the policy.
  std::string policy;                  // default: the first reference (the paper code starts from ref_a)
  std::vector<std::string> refs;       // --refs M1,M2,...: replaces ref_a/ref_b
  std::vector<double> ref_weights;     // their weights (default: uniform)
  std::string data_dir;                // default: $MULTIREF_DATA or ./data
  std::string system_prompt = "auto";  // for {"prompt"} rows; auto: the paper's on GSM8K, none elsewhere
  // Generation.
  int num_generations = 8;
  int max_prompt_length = 512;
  int max_completion_length = 256;
  double temperature = 1.0;
  double top_p = 1.0;
  int generation_batch_size = 0;  // rollout rows decoded together (0: the step's completions on this rank)
  DecodeFlags decode;
  int scoring_batch_tokens = 0;  // tokens per no-grad scoring pass (0: 4096 on CPU, 131072 on CUDA)
  int update_batch_tokens = 0;   // tokens per forward+backward slice of a micro-batch (0: 1024 on CPU, all on CUDA)
  // Optimization.
  double learning_rate = 1e-6;
  LrSchedule lr_scheduler_type = LrSchedule::Linear;
  double warmup_ratio = 0.0;
  double weight_decay = 0.0;
  double adam_beta1 = 0.9, adam_beta2 = 0.999;
  double max_grad_norm = 1.0;
  int64_t max_skipped_steps = 10;
  int num_iterations = 1;  // mu: optimizer steps per generation batch
  double epsilon = 0.2;
  double epsilon_high = 0.0;  // 0: same as epsilon
  std::string kl_estimator = "exact";
  KLIn kl_in = KLIn::Loss;
  LossAggregation loss_type = LossAggregation::TokenMean;
  bool scale_rewards = true;
  int fkl_samples = 0;  // exact FKL: reference samples per step (0: one per prompt, at least one per reference)
  BaselineChoice advantage_baseline = BaselineChoice::Auto;
  int64_t seed = 42;
  // Bookkeeping.
  int logging_steps = 1;
  int save_steps = 100;
  int save_total_limit = 2;
  int eval_steps = 0;
  int eval_samples = 64;
  std::string resume_from_checkpoint;
  bool gradient_checkpointing = false;
  int threads = 0;
  int dist_timeout = 600;  // seconds a multi-process run waits for another rank before failing
  int zero_stage = 0;      // 1: AdamW's state sharded over the ranks
  bool print_memory_plan = false;
  DeviceChoice device = DeviceChoice::Auto;
  std::string chat_template = "auto";

  void register_flags(FlagTable& t);
  // Checks every flag and the combination; resolves the reference list, weights and penalty.
  void validate();

  // Filled by validate().
  std::vector<std::string> ref_ids;                             // K model ids
  std::vector<std::string> ref_names;                           // metric names: ref_a, ref_b or ref_0, ref_1, ...
  std::vector<double> weights;                                  // alpha (rkl) or beta (fkl), one per reference
  KLPenalty penalty = KLPenalty::RklFull;                       // --kl_estimator resolved against --kl_type and --kl_in
  AdvantageBaseline baseline = AdvantageBaseline::LeaveOneOut;  // --advantage_baseline resolved
};

}  // namespace multiref
