// The one log-probability function: the policy and every reference are scored by it.
#pragma once
#include <torch/torch.h>

#include "model/batching.h"
#include "model/transformer.h"
#include "objectives/objectives.h"

namespace multiref {

// The vocabulary projection over chunks of positions, recomputed in backward. `fn` maps one chunk's hidden
// states [B, n, H] (positions [start, start + n)) and the LM head weight in the compute dtype [V, H] to tensors
// whose last dimension is the chunk's n positions; head_chunks concatenates them along it. Under autograd only
// `hidden` is kept for backward, which recomputes each chunk's logits: memory is O(chunk x V), not O(T x V)
// per row (at Qwen2.5's V = 151,936 the difference between fitting a step in 24 GB and not). Gradients reach
// `hidden` and the head weight (tied embeddings included). fn must be deterministic; it may run twice.
using HeadChunkFn = std::function<std::vector<torch::Tensor>(const torch::Tensor& hidden_chunk,
                                                             const torch::Tensor& head, int64_t start, int64_t n)>;
std::vector<torch::Tensor> head_chunks(Transformer& model, const torch::Tensor& hidden, int64_t chunk,
                                       const HeadChunkFn& fn);

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
// Under autograd the head is converted to the compute dtype once, for all chunks (see lm_head_compute_weight);
// without, each chunk reads the stored weights directly (cpu_small_matmul) and keeps no copy.
LogpChunk vocab_logp_chunks(Transformer& model, const torch::Tensor& hidden);

// The policy's token log-probs and full-vocabulary KL terms against K references at the same positions, in one
// pass of the policy's head over chunks (head_chunks: recomputed in backward, so no [B, C, V] tensor is kept).
//   hidden [B, C, H] predicts targets [B, C]; valid [B, C] (bool) marks real targets: token_lp is 0 elsewhere.
//   refs: K log-prob chunk functions over the same C positions (constants: evaluated without autograd).
// Values equal vocab_terms_chunked's (and the gather of its policy log-probs).
VocabTerms policy_vocab_terms(Transformer& policy, const torch::Tensor& hidden, const std::vector<LogpChunk>& refs,
                              const torch::Tensor& targets, const torch::Tensor& valid,
                              const std::vector<double>& alpha, const std::vector<double>& beta, int64_t chunk,
                              torch::Tensor* token_lp);

// The oracle: full logits, full fp32 log_softmax, gather. Kept for tests only.
torch::Tensor token_logprobs_naive(Transformer& model, const torch::Tensor& input_ids,
                                   const torch::Tensor& attention_mask);

}  // namespace multiref
