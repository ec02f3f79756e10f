// Multi-reference KL quantities (arXiv:2502.01203). K references pi_1..pi_K with weights (alpha for reverse
// KL, beta for forward KL), a policy pi. Pure tensor functions; every one treats K >= 1 uniformly.
//
// Token level, at a prefix s:
//   geometric mixture   G(v|s)   = prod_i pi_i(v|s)^alpha_i / f(s),   f(s) = sum_v prod_i pi_i(v|s)^alpha_i <= 1
//   arithmetic mixture  pibar(v|s) = sum_i beta_i pi_i(v|s)
//   identity            sum_i alpha_i KL(pi||pi_i) = KL(pi||G) - log f(s)        (exact; tested)
// so a penalty against G alone (the paper's released code) drops -log f(s) >= 0: it is approximate.
#pragma once
#include <torch/torch.h>

#include <functional>
#include <string>
#include <utility>
#include <vector>

namespace multiref {

// Weights must be a probability vector of K entries: non-negative, summing to 1 within 1e-6. We refuse rather
// than silently renormalize, because a typo in a weight changes the objective. `flag` names the option in errors.
std::vector<double> validate_weights(const std::vector<double>& weights, size_t K, const std::string& flag);

// Full-vocabulary per-token quantities. Shapes: B = batch, T = positions, V = vocabulary, K = references.
struct VocabTerms {
  torch::Tensor kl_policy_ref;     // [K, B, T]  KL(pi || pi_i)
  torch::Tensor kl_ref_policy;     // [K, B, T]  KL(pi_i || pi)
  torch::Tensor kl_policy_geo;     // [B, T]     KL(pi || G)
  torch::Tensor neg_log_f;         // [B, T]     -log f(s) >= 0 (0 when all references agree)
  torch::Tensor log_geo_target;    // [B, T]     log G(y_t | s_t)
  torch::Tensor log_arith_target;  // [B, T]   log pibar(y_t | s_t)
};

// From full log-probabilities: policy_logp [B, T, V], ref_logp K x [B, T, V] (all log_softmax'ed), targets
// [B, T] (the token each position predicts). Differentiable in policy_logp. alpha weights G, beta pibar.
VocabTerms vocab_terms(const torch::Tensor& policy_logp, const std::vector<torch::Tensor>& ref_logp,
                       const torch::Tensor& targets, const std::vector<double>& alpha, const std::vector<double>& beta);

// The same over chunks of positions, so no [K, B, T, V] tensor exists beyond one chunk: each function returns
// the log-probabilities [B, n, V] of positions [start, start + n) of one model.
using LogpChunk = std::function<torch::Tensor(int64_t start, int64_t n)>;
VocabTerms vocab_terms_chunked(const LogpChunk& policy, const std::vector<LogpChunk>& refs,
                               const torch::Tensor& targets, const std::vector<double>& alpha,
                               const std::vector<double>& beta, int64_t chunk);

// Sequence- or token-level mixtures of per-reference log-probs (any shape [K, ...] -> [...]):
torch::Tensor geometric_logp(const torch::Tensor& ref_lp, const std::vector<double>& alpha);  // sum_i a_i lp_i
torch::Tensor arithmetic_logp(const torch::Tensor& ref_lp, const std::vector<double>& beta);  // log sum_i b_i e^lp_i

// Sampled per-token estimators of KL(pi || q) at y ~ pi, from log-ratio r = log q(y) - log pi(y):
//   k1 = -r (unbiased, can be negative), k2 = r^2 / 2 (biased, low variance), k3 = e^r - 1 - r (unbiased, >= 0).
enum class SampledKL { K1, K2, K3 };
torch::Tensor sampled_kl(const torch::Tensor& log_ratio, SampledKL k);

}  // namespace multiref
