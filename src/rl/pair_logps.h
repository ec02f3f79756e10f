// Sequence log-probs of preference pairs: log pi(y|x) = sum over the response tokens of log pi(y_t | x, y_<t),
// for the policy (differentiable) and for references (no-grad, batched, cached on disk by ref_logps_cache.h).
#pragma once
#include <torch/torch.h>

#include <functional>
#include <string>
#include <vector>

#include "data/preference_data.h"
#include "model/logprobs.h"
#include "model/transformer.h"
#include "rl/ref_logps_cache.h"

namespace multiref {

// Chosen and rejected of B pairs as one right-padded batch (logprobs.h): rows 0..B-1 chosen, B..2B-1 rejected,
// completion_mask on the response tokens.
using PairBatch = CompletionBatch;
PairBatch make_pair_batch(const std::vector<const PairTokens*>& pairs, const torch::Device& device);

// [2B] float64: sum_t log pi(y_t) over each row's response tokens. Differentiable through the model.
torch::Tensor pair_sequence_logps(Transformer& model, const PairBatch& batch);

// The paper code's token-level mixtures of K references sharing one vocabulary, summed over the response:
// geometric: sum_t log G(y_t | s_t) (G renormalized per token, weights alpha); arithmetic: sum_t log
// sum_i beta_i pi_i(y_t | s_t). [2B] float64, no grad.
torch::Tensor pair_token_mixture_logps(std::vector<Transformer>& refs, const std::vector<double>& weights,
                                       bool geometric, const PairBatch& batch);

// Scores all pairs in batches of `batch_size` pairs (longest first, so padding stays small), reporting progress
// with `label` on stderr. `score` maps a batch to [2B] log-probs.
PairLogps score_pairs(const std::vector<PairTokens>& pairs, int64_t batch_size, const torch::Device& device,
                      const std::string& label, const std::function<torch::Tensor(const PairBatch&)>& score);

}  // namespace multiref
