// Batched autoregressive generation: the rollout engine of GRPO and of every evaluation.
//
// Prompts are sorted by length and decoded in batches of whole prompt groups. Each batch runs one prefill
// of its left-padded prompts (once per prompt, however many samples it has; long prompts in chunks of
// positions so memory stays bounded), copies each prompt's KV cache into the rows of its G samples, then
// decodes one token per row per step. A row finishes on an eos id, on
// a stop string, at max_new_tokens or at the model's context; finished rows are dropped from the batch (the
// cache is compacted once a quarter of its rows are done), so a long tail runs at the size of the tail.
//
// The uncached path (use_cache = false) recomputes the whole sequence for every token. It is the oracle of
// the cached one: same sampler, same random streams, so the same tokens come out.
#pragma once
#include <torch/torch.h>

#include <functional>
#include <string>
#include <vector>

#include "generation/sampler.h"
#include "model/transformer.h"

namespace multiref {

class Tokenizer;

// The ids that end a generation of the model in `model_dir`: config.json's and generation_config.json's eos ids,
// plus the tokenizer's EOS when a tokenizer is given and declares one (a chat tokenizer's end of turn, e.g.
// Qwen's <|im_end|>, which a base model's config may not list). The one rule of `multiref generate`, the
// evaluations, GRPO's rollouts and the demo, so they all stop where the same model would.
std::vector<int64_t> generation_eos_ids(const std::string& model_dir, const ModelConfig& config,
                                        const Tokenizer* tokenizer);

enum class FinishReason { Stop, Length };
const char* finish_reason_name(FinishReason r);  // "stop" | "length"

struct GenerationProgress {
  int64_t sequences_done = 0, sequences_total = 0, generated_tokens = 0;
  double seconds = 0;
};

struct GenerationConfig {
  int64_t max_new_tokens = 256;
  SamplingParams sampling;
  int64_t num_return_sequences = 1;  // G: samples per prompt (GRPO's num_generations), sharing one prefill
  std::vector<int64_t> eos_ids;      // a sampled eos id ends its sequence and is kept as its last token
  // A sequence also ends once its completion's text contains one of these (the completing token is kept,
  // the text is not cut). Needs `decode`.
  std::vector<std::string> stop_strings;
  std::function<std::string(const std::vector<int64_t>&)> decode;  // ids -> text (special tokens kept)
  uint64_t seed = 0;
  // Output row i draws from the random stream (seed, first_sequence + i): a data-parallel rank generating rows
  // [a, b) of a larger batch (first_sequence = a) draws exactly the tokens that batch would.
  int64_t first_sequence = 0;
  // Rows decoded together: max(1, batch_size / G) prompts with their G samples each. Results do not depend
  // on it (each sequence draws from its own random stream) beyond floating-point noise of batched matmuls.
  int64_t batch_size = 64;
  bool use_cache = true;  // false: the uncached oracle
  // The decode loop (cached only). Compacting (the default): tokens come to the host every step and finished rows
  // leave the batch (every so often). Static: fixed shapes every step — all rows stay, finished ones decoding on
  // unseen — with the uniforms drawn on the device (stream_uniforms) and the tokens, log-probs and end checks
  // (EOS, stop strings, budgets) read by the host only every `sync_every` steps: the loop a CUDA graph can
  // capture. The same tokens and log-probs either way.
  bool static_decode = false;
  int64_t sync_every = 8;
  // Optional: called for every new token of output row `seq` (streaming); progress every few decode steps
  // and after each batch.
  std::function<void(int64_t seq, int64_t token)> on_token;
  std::function<void(const GenerationProgress&)> on_progress;

  void validate() const;
};

struct Completion {
  std::vector<int64_t> ids;
  std::vector<float> logprobs;  // log p(ids[t] | prompt, ids[<t]) under the untempered model
  FinishReason finish = FinishReason::Length;
};

struct GenerationStats {
  int64_t prompts = 0, sequences = 0, prompt_tokens = 0, generated_tokens = 0;
  int64_t prefill_tokens = 0;  // tokens run through the prefill (padding included, each prompt once)
  int64_t decode_steps = 0;
  int64_t decode_tokens = 0;   // tokens sampled after the first of each sequence (one per row per step)
  double prefill_seconds = 0;  // prompt forward passes and first tokens
  double decode_seconds = 0;
  int64_t max_cache_bytes = 0;
  double decode_tokens_per_second() const { return decode_seconds > 0 ? decode_tokens / decode_seconds : 0; }
};

struct GenerationResult {
  std::vector<Completion> sequences;  // row p * G + g: sample g of prompt p, prompts in input order
  GenerationStats stats;
};

// prompts: token ids, each non-empty, in [0, vocab) and shorter than max_position_embeddings (else an
// Error naming the prompt). Runs on the model's device in its dtype, under InferenceMode.
GenerationResult generate(Transformer& model, const std::vector<std::vector<int64_t>>& prompts,
                          const GenerationConfig& cfg);

// Ends a sequence when its completion's text comes to contain a stop string. Decodes only the tail that
// can hold a new occurrence, so checking every step costs O(stop length), not O(completion length).
class StopStringMatcher {
 public:
  StopStringMatcher(std::vector<std::string> stops, std::function<std::string(const std::vector<int64_t>&)> decode);
  bool empty() const { return stops_.empty(); }
  // Whether the completion `ids` (whose previous tokens did not match) now contains a stop string.
  bool matches(const std::vector<int64_t>& ids) const;

 private:
  std::vector<std::string> stops_;
  std::function<std::string(const std::vector<int64_t>&)> decode_;
  size_t window_ = 0;  // tokens decoded: enough to hold the longest stop string plus the newest token
};

}  // namespace multiref
