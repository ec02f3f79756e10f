// Training losses of both pipelines as pure tensor functions returning {loss, stats}. `gamma` is the KL
// coefficient everywhere (TRL's beta). Shapes: N = sequences, T = completion positions, K = references,
// G = group size.
//
// Stats are typed (per-reference ones as vectors indexed like the references) and stay on the loss's device as
// detached 0-dim float64 tensors: a trainer sums a step's worth and reads them from the device once
// (train/step_stats.h), not one .item() (one device sync) per statistic.
#pragma once
#include <torch/torch.h>

#include <map>
#include <string>
#include <utility>
#include <vector>

#include "objectives/objectives.h"

namespace multiref {

// ---- KL penalties of the online objective -----------------------------------------------------------------
// Which term regularizes the policy. Exact ones implement the paper's objective; approximate ones are kept to
// reproduce the paper's released code and single-reference practice.
enum class KLPenalty {
  RklFull,        // exact: sum_i alpha_i KL(pi || pi_i) over the full vocabulary at each visited prefix
  RklK1,          // exact in expectation: sum_i alpha_i k1(log pi_i/pi) at the sampled token
  RklK2,          // approximate (biased): sum_i alpha_i k2
  RklK3,          // exact in expectation, >= 0: sum_i alpha_i k3 (= TRL's estimator for K = 1)
  RklMixtureK3,   // approximate (paper code): k3 against the token-renormalized geometric mixture G; drops -log f
  FklRefSamples,  // exact: gamma sum_i beta_i KL(pi_i || pi), trained on samples drawn from the references
  FklFull,        // approximate: token-level sum_i beta_i KL(pi_i || pi) at the policy's own prefixes
  FklMixtureK3,   // approximate (paper code): k3 against the token-level arithmetic mixture pibar
};
std::vector<std::pair<std::string, KLPenalty>> kl_penalty_choices();  // CLI spellings
std::string kl_penalty_name(KLPenalty p);
bool kl_penalty_is_exact(KLPenalty p);
bool kl_penalty_is_fkl(KLPenalty p);
bool kl_penalty_needs_vocab(KLPenalty p);  // full-vocabulary or token-mixture terms: references must share a vocab

// Per-token penalty [N, T] (differentiable in the policy) of a token-level penalty, and per-reference diagnostic
// KLs [K] (means over valid tokens, in the direction of the penalty). policy_lp/ref_lp are the log-probs of
// the sampled tokens ([N, T] and [K, N, T]); `vocab` is needed by the Full and MixtureK3 penalties.
struct TokenPenalty {
  torch::Tensor per_token;                // [N, T]
  std::vector<torch::Tensor> per_ref_kl;  // K x 0-dim float64, detached
};
TokenPenalty token_penalty(KLPenalty p, const torch::Tensor& policy_lp, const torch::Tensor& ref_lp,
                           const torch::Tensor& mask, const std::vector<double>& weights, const VocabTerms* vocab);

// ---- GRPO -------------------------------------------------------------------------------------------------
enum class LossAggregation {
  TokenMean,     // mean over all completion tokens of the batch (TRL "bnpo" / DAPO)
  SequenceMean,  // mean over tokens of each sequence, then over sequences (original GRPO)
  DrGrpo,        // sum over tokens / (N * max_completion_length): Dr. GRPO's constant normalizer
};
std::vector<std::pair<std::string, LossAggregation>> loss_aggregation_choices();

// Rewards [N] (N = prompts x G, groups contiguous) -> advantages (r - group mean) / (group std + 1e-4) with
// scale_std, else r - group mean. std is the unbiased one, as in TRL.
torch::Tensor group_advantages(const torch::Tensor& rewards, int64_t G, bool scale_std);

struct GrpoLossConfig {
  double epsilon_low = 0.2, epsilon_high = 0.2;
  double gamma = 0.0;  // coefficient of the per-token KL penalty inside the loss (0 when the KL is in the reward)
  LossAggregation aggregation = LossAggregation::TokenMean;
  int64_t max_completion_length = 0;  // DrGrpo's normalizer
};

// Fractions of completion tokens whose ratio was clipped (TRL's clip_ratio/low_mean, high_mean, region_mean) and
// the mean per-token penalty (undefined without one).
struct GrpoLossStats {
  torch::Tensor clip_low, clip_high, clip_region;  // 0-dim float64, detached
  torch::Tensor kl;                                // 0-dim float64, detached; undefined without a penalty
};
struct GrpoLoss {
  torch::Tensor loss;  // scalar, differentiable
  GrpoLossStats stats;
};

// policy_lp, old_lp [N, T] log-probs of the sampled tokens; advantages [N]; mask [N, T];
// kl_per_token [N, T] or undefined.
GrpoLoss grpo_loss(const torch::Tensor& policy_lp, const torch::Tensor& old_lp, const torch::Tensor& advantages,
                   const torch::Tensor& mask, const torch::Tensor& kl_per_token, const GrpoLossConfig& cfg);

struct FklSampleStats {
  std::vector<torch::Tensor> kl;  // [K] mean of log pi_i(y) - log pi(y) over reference i's samples (undefined: none)
  torch::Tensor nll;              // mean of -log pi(y) over all samples
};
struct FklSampleLoss {
  torch::Tensor loss;  // scalar, differentiable
  FklSampleStats stats;
};

// The exact FKL term: gamma * mean over reference samples of -log pi(y) (sequence sums). policy_lp [M, T] on
// samples drawn from reference ref_index[m] (drawn with probability beta_i), their own log-probs ref_lp [M, T].
FklSampleLoss fkl_ref_sample_loss(const torch::Tensor& policy_lp, const torch::Tensor& ref_lp,
                                  const torch::Tensor& mask, const std::vector<int64_t>& ref_index, int64_t K,
                                  double gamma);

// ---- DPO --------------------------------------------------------------------------------------------------
enum class DpoLossType { Sigmoid, Ipo, Hinge };
std::vector<std::pair<std::string, DpoLossType>> dpo_loss_choices();

enum class DpoReference {
  RklGeometric,     // exact RKL: reference log-prob sum_i alpha_i log pi_i(y|x) (sequence level)
  FklArithmetic,    // exact FKL: margin pibar(y_l)/pi(y_l) - pibar(y_w)/pi(y_w), pibar = sum_i beta_i pi_i (sequence
                    // level)
  TokenGeometric,   // approximate (paper code): standard DPO against sum_t log G(y_t), token-renormalized mixture
  TokenArithmetic,  // approximate (paper code): standard DPO against sum_t log pibar_t(y_t), token-level mixture
};

struct DpoLossConfig {
  double gamma = 0.1;
  DpoLossType type = DpoLossType::Sigmoid;
  double label_smoothing = 0.0;
  // FKL: log-ratios above this are continued as cap + log1p(u - cap) before exponentiating, so the loss and its
  // gradients stay finite for log-ratios up to +-1e4 (exact below the cap).
  double fkl_log_ratio_cap = 40.0;
};

// Implicit rewards of a batch (means over pairs; TRL's rewards/chosen, rejected, margins, accuracies).
struct DpoRewardStats {
  torch::Tensor chosen, rejected, margin, accuracy;  // 0-dim float64, detached
};
struct DpoLossStats {
  DpoRewardStats rewards;                    // against the loss's reference (mixture)
  torch::Tensor logp_chosen, logp_rejected;  // policy sequence log-probs (TRL's logps/chosen, rejected)
  std::vector<DpoRewardStats> per_ref;       // [K] against each reference row alone
};
struct DpoLoss {
  torch::Tensor loss;  // scalar, differentiable
  DpoLossStats stats;
};

// policy_chosen/rejected [B] sequence log-probs; ref_chosen/rejected [K, B] per-reference sequence log-probs
// (for the token-mixture references: [1, B] holding sum_t log mixture). weights: alpha (RKL) or beta (FKL).
DpoLoss dpo_loss(const torch::Tensor& policy_chosen, const torch::Tensor& policy_rejected,
                 const torch::Tensor& ref_chosen, const torch::Tensor& ref_rejected, const std::vector<double>& weights,
                 DpoReference ref, const DpoLossConfig& cfg);

}  // namespace multiref
