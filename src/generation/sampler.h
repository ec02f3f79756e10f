// Next-token selection as Hugging Face's generate(do_sample=True) does it. The warpers run on fp32 logits
// in the order of transformers' _get_logits_processor: temperature, then top-k, then top-p, then min-p
// (min-p sees tempered, already truncated scores). Temperature 0 means greedy (argmax of the raw logits),
// where HF would refuse it.
//
// Randomness is counter-based: every sequence owns a stream of uniforms indexed by (seed, stream, step),
// and a token is drawn by inverting the CDF of the filtered distribution in vocabulary order. So a
// sequence's samples depend on its seed and its own logits only, not on which sequences share its batch,
// on the batch size, or on the device (no CPU/CUDA generator state to carry or to keep in step).
#pragma once
#include <torch/torch.h>

#include <cstdint>

namespace multiref {

struct SamplingParams {
  double temperature = 1.0;  // 0 = greedy; otherwise logits / temperature
  int64_t top_k = 0;         // keep the k highest scores (ties at the k-th kept, as HF); 0 = off
  double top_p = 1.0;        // keep the smallest top set holding >= top_p of the mass; 1 = off
  double min_p = 0.0;        // drop tokens below min_p * (the top token's probability); 0 = off

  bool greedy() const { return temperature == 0.0; }
  // Errors name the flag (--temperature, --top_k, --top_p, --min_p) and the accepted range.
  void validate() const;
};

// logits [B, V] (any float dtype) -> scores [B, V] fp32, removed tokens at -inf. The fast path: top-k by
// partial selection, top-p over the top-k (or a few hundred) candidates when they already hold the mass.
// Deciding that reads one flag on the host; with may_sync = false top-p always sorts the whole vocabulary, so the
// warpers never wait for the device (a static decode step, which a CUDA graph can capture). The same tokens kept.
torch::Tensor warp_logits(const torch::Tensor& logits, const SamplingParams& p, bool may_sync = true);
// The oracle: a literal transcription of HF's TemperatureLogitsWarper, TopKLogitsWarper, TopPLogitsWarper
// (ascending sort, cumulative mass <= 1 - top_p removed) and MinPLogitsWarper. Tests only.
torch::Tensor warp_logits_reference(const torch::Tensor& logits, const SamplingParams& p);

struct SampledTokens {
  torch::Tensor tokens;    // [B] int64
  torch::Tensor logprobs;  // [B] fp32: log_softmax(logits)[token], the untempered, unfiltered model
                           // log-probability (GRPO's "old" log-probs; equal to `score`'s)
};

// logits [B, V]; uniforms [B] in (0, 1), one per row (ignored when greedy). probs_scratch: an fp32 [B, V]
// contiguous tensor the sampling distribution may be written into (decoding passes one buffer for every step
// instead of allocating [B, V] each time), or undefined.
// may_sync: as warp_logits's (false: no host read between the logits and the tokens).
SampledTokens sample_tokens(const torch::Tensor& logits, const SamplingParams& p, const torch::Tensor& uniforms,
                            const torch::Tensor& probs_scratch = {}, bool may_sync = true);

// Draws rows by inverse CDF: probs [B, V] (rows sum to ~1), uniforms [B] -> [B] int64, the first token whose
// cumulative probability (accumulated in fp64, in vocabulary order) reaches u * total. Never a token of
// probability 0, since u > 0.
torch::Tensor inverse_cdf_sample(const torch::Tensor& probs, const torch::Tensor& uniforms);

// The uniform in (0, 1) of stream `stream` at step `step` under `seed` (splitmix64 hashing; 53 bits).
double stream_uniform(uint64_t seed, uint64_t stream, uint64_t step);
// The same for many at once, computed where `streams` and `steps` ([B] int64, any device) live: [B] fp64, bit for
// bit stream_uniform's (two's-complement int64 arithmetic wraps as uint64 does). Decoding can then draw its
// uniforms without a round trip to the host.
torch::Tensor stream_uniforms(uint64_t seed, const torch::Tensor& streams, const torch::Tensor& steps);

}  // namespace multiref
