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
// Which term regularizes the policy, and where it enters (the loss, or subtracted from the reward). "Value" is what
// the term estimates; "gradient" is its expected gradient against the gradient of the paper's objective
// D = sum_i alpha_i KL(pi || pi_i) (rkl) or sum_i beta_i KL(pi_i || pi) (fkl) over whole completions. The gradient
// claims are measured by enumeration (tests/rl/test_grpo_exact.cpp), which also prints the gaps of the approximate
// ones (README, "Exactness").
//                   in the loss                                       in the reward (r - gamma sum_t k_t)
//   full            value exact; gradient exact: the trainer adds    -
//                   the KL-to-go as a detached negative reward
//   k1              value exact; gradient 0 in expectation (wrong)    value exact; gradient exact
//   k2              biased; gradient of the token-level KL only      biased; gradient approximate
//   k3              value exact; gradient of the token-level          value exact; gradient grad RKL - grad FKL
//                   forward KL to the arithmetic mixture (= TRL's     (approximate)
//                   k3 for K = 1: approximate)
//   mixture_k3      paper code: k3 against the token-renormalized    -
//                   geometric mixture G (drops -log f): approximate
//   ref_samples     fkl, exact in value and gradient: fresh samples   -
//                   from the references at every step
//   fkl_full        token-level FKL at the policy's prefixes: approx  -
//   fkl_mixture_k3  paper code: k3 against the token-level pibar       -
enum class KLPenalty { RklFull, RklK1, RklK2, RklK3, RklMixtureK3, FklRefSamples, FklFull, FklMixtureK3 };
std::vector<std::pair<std::string, KLPenalty>> kl_penalty_choices();  // CLI spellings
std::string kl_penalty_name(KLPenalty p);

enum class KLIn { Loss, Reward };
// Whether the penalty can be placed there at all (full-vocabulary, mixture and reference-sample terms cannot go
// in the reward).
bool kl_penalty_allowed_in(KLPenalty p, KLIn where);
// Whether the step's expected gradient is the objective's (with --loss_type dr_grpo, --scale_rewards false and a
// leave-one-out baseline): full and ref_samples in the loss, k1 in the reward.
bool kl_penalty_is_exact(KLPenalty p, KLIn where);
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

// The baseline subtracted from each reward. The group mean includes the sample itself, which scales the expected
// policy gradient by (1 - 1/G) (TRL's GRPO); leave-one-out, the mean of the *other* G - 1 rewards
// (= G/(G-1) (r - group mean)), does not depend on the sample: the expected gradient is the reward's own. With
// G = 1 leave-one-out has no other sample and the baseline is 0.
enum class AdvantageBaseline { GroupMean, LeaveOneOut };

// Rewards [N] (N = prompts x G, groups contiguous) -> advantages (r - baseline), divided by (group std + 1e-4)
// with scale_std (the unbiased std, as in TRL). float64 rewards stay float64, others are computed in float32.
torch::Tensor group_advantages(const torch::Tensor& rewards, int64_t G, bool scale_std,
                               AdvantageBaseline baseline = AdvantageBaseline::GroupMean);

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

// How many of M reference samples each reference draws (stratified, not i.i.d. picks): floor(beta_i M) plus the
// largest remainders, and at least one for every beta_i > 0 (so the total can exceed M). Reference i's samples
// each weigh beta_i / m_i: the weights of reference i add up to beta_i exactly, whatever M.
std::vector<int64_t> stratified_counts(const std::vector<double>& beta, int64_t M);

// Per-sample coefficients c_m of the FKL term: the sample's weight times the per-sequence scale that puts a
// sequence sum on the policy-gradient term's scale under `agg`: dr_grpo 1 / max_completion_length, token_mean
// (completions / tokens) of the policy's batch, sequence_mean 1 / (the sample's length).
std::vector<double> fkl_sample_coefficients(const std::vector<double>& weights, const std::vector<int64_t>& lengths,
                                            LossAggregation agg, int64_t max_completion_length,
                                            double policy_completions_per_token);

// The exact FKL term: gamma * sum_m c_m * sum_t -log pi(y_m,t), y_m drawn from reference ref_index[m] (coef: see
// fkl_sample_coefficients; with sum_m weight_m = 1 its expected gradient is -gamma/L sum_i beta_i E_{pi_i}[grad log
// pi] under dr_grpo). policy_lp [M, T] on the samples, their own references' log-probs ref_lp [M, T] (for the
// per-reference KL statistics: the mean of log pi_i(y) - log pi(y) over reference i's samples).
FklSampleLoss fkl_ref_sample_loss(const torch::Tensor& policy_lp, const torch::Tensor& ref_lp,
                                  const torch::Tensor& mask, const std::vector<int64_t>& ref_index,
                                  const std::vector<double>& coef, int64_t K, double gamma);

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
