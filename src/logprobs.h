// The one log-probability function: the policy and every reference are scored by it.
#pragma once
#include <torch/torch.h>

#include "objectives.h"
#include "transformer.h"

namespace multiref {

// Per-token log p(ids[t] | ids[<t]) for a padded batch.
//   input_ids [B, T] int64, attention_mask [B, T] (1 = token) -> [B, T-1] fp32, column t-1 holding the
//   log-prob of ids[t]; positions whose target is padding are 0.
// The vocabulary projection and log-softmax run over chunks of positions, so at most
// `max_chunk_elements` logits exist at once (no [B, T, V] fp32 tensor). Differentiable.
torch::Tensor token_logprobs(Transformer& model, const torch::Tensor& input_ids, const torch::Tensor& attention_mask,
                             int64_t max_chunk_elements = 1 << 24);

// Same quantity from logits [B, T, V] given hidden [B, T, H] already computed.
torch::Tensor token_logprobs_from_hidden(Transformer& model, const torch::Tensor& hidden,
                                         const torch::Tensor& input_ids, const torch::Tensor& attention_mask,
                                         int64_t max_chunk_elements = 1 << 24);

// Full-vocabulary log-probabilities of chunks of positions of `hidden` [B, T, H]: the function returns
// log_softmax [B, n, V] (fp32) of positions [start, start + n), as objectives.h's vocab_terms_chunked takes them.
// The head is converted to the compute dtype once, for all chunks (see lm_head_compute_weight).
LogpChunk vocab_logp_chunks(Transformer& model, const torch::Tensor& hidden);

// The oracle: full logits, full fp32 log_softmax, gather. Kept for tests only.
torch::Tensor token_logprobs_naive(Transformer& model, const torch::Tensor& input_ids,
                                   const torch::Tensor& attention_mask);

}  // namespace multiref
