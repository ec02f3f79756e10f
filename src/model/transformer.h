// The one config-driven decoder for Qwen2 and Llama (HF modeling_qwen2.py / modeling_llama.py): token
// embeddings, RMSNorm, RoPE (optionally llama3-scaled), grouped-query attention, SwiGLU MLP, tied or untied
// lm_head, or a `score` head for sequence classification. Submodule and parameter names equal the HF
// tensor keys, so named_parameters() is the checkpoint's key set and loading/saving are strict copies.
#pragma once
#include <torch/torch.h>

#include "model/model_config.h"

namespace multiref {

class KVCache;  // kv_cache.h

// Parameters are allocated uninitialized in the requested dtype/device: a checkpoint load then copies each
// tensor once, with no fp32 staging copy of the whole model (an 8B reward model must fit in bf16 alone).
// On CPU, bf16/f16 matrix products run in fp32: without AVX512-BF16/AMX, LibTorch's bf16 GEMM is ~25x
// slower than fp32 (measured: bench/bench_forward). Weights stay stored in bf16 (half the memory); each
// product upcasts its operands and rounds the result back, so activations keep the model dtype as in HF.
torch::ScalarType compute_dtype(const torch::Tensor& t);
// Where HF computes in fp32 whatever the model dtype (norms, softmax, logits): float64 for a float64 model (exactness
// checks), else float32.
inline torch::ScalarType accumulate_dtype(torch::ScalarType t) {
  return t == torch::kFloat64 ? torch::kFloat64 : torch::kFloat32;
}

// y = x W^T + b with bf16/f16 operands computed in the compute dtype. Under autograd it keeps only its own
// inputs for backward (x and W as stored, no fp32 copies) and converts them again there: letting autograd
// record the upcasts instead kept an fp32 copy of every weight matrix, ~2x the bf16 model, for backward.
// Same values and gradients as the recorded upcast (low_precision_linear_oracle, for tests).
torch::Tensor low_precision_linear(const torch::Tensor& x, const torch::Tensor& w, const torch::Tensor& b);
torch::Tensor low_precision_linear_oracle(const torch::Tensor& x, const torch::Tensor& w, const torch::Tensor& b);

struct LinearImpl : torch::nn::Module {
  LinearImpl(int64_t in, int64_t out, bool bias, const torch::TensorOptions& opts);
  torch::Tensor forward(const torch::Tensor& x);
  torch::Tensor weight, bias;
};
TORCH_MODULE(Linear);

// x through several Linears that read it (q/k/v, gate/up): when decoding on CPU one kernel call serves them all
// (small_rows_linear_group), else each layer's forward. Results as each layer's forward.
std::vector<torch::Tensor> linear_group(const torch::Tensor& x, const std::vector<LinearImpl*>& layers);

struct EmbeddingImpl : torch::nn::Module {
  EmbeddingImpl(int64_t num, int64_t dim, const torch::TensorOptions& opts);
  torch::Tensor forward(const torch::Tensor& ids) { return torch::embedding(weight, ids); }
  torch::Tensor weight;
};
TORCH_MODULE(Embedding);

struct RMSNormImpl : torch::nn::Module {
  RMSNormImpl(int64_t dim, double eps, const torch::TensorOptions& opts);
  torch::Tensor forward(const torch::Tensor& x);
  torch::Tensor weight;
  double eps;
};
TORCH_MODULE(RMSNorm);

// cos/sin tables for given positions, computed in fp32 like HF (then cast to the activations' dtype).
struct RotaryEmbedding {
  explicit RotaryEmbedding(const ModelConfig& c);
  // positions [B, T] (int64) -> cos, sin [B, T, head_dim]
  std::pair<torch::Tensor, torch::Tensor> operator()(const torch::Tensor& positions, torch::ScalarType dtype) const;
  torch::Tensor inv_freq;  // [head_dim/2] fp32, llama3 scaling applied
};

// Causal self-attention mask for a padded batch: key_mask [B, S] (1 = real token). Returned as a boolean
// "may attend" tensor [B, 1, T, S] for queries at the last T positions. A query row always sees itself, so
// padded query rows are never all-masked (no NaN; their outputs are ignored).
torch::Tensor causal_attention_mask(const torch::Tensor& key_mask, int64_t T);

struct AttentionImpl : torch::nn::Module {
  AttentionImpl(const ModelConfig& c, const torch::TensorOptions& opts);
  // x [B, T, H]; cos/sin [B, T, D]; allowed [B, 1, T, S]. Without a cache S = T; with one, this step's
  // keys and values are stored in `cache` (layer `layer`) and the queries attend to all S = length + T
  // cached positions.
  torch::Tensor forward(const torch::Tensor& x, const torch::Tensor& cos, const torch::Tensor& sin,
                        const torch::Tensor& allowed, KVCache* cache = nullptr, int64_t layer = 0);
  Linear q_proj{nullptr}, k_proj{nullptr}, v_proj{nullptr}, o_proj{nullptr};
  int64_t n_heads, n_kv, head_dim;
};
TORCH_MODULE(Attention);

struct MLPImpl : torch::nn::Module {
  MLPImpl(const ModelConfig& c, const torch::TensorOptions& opts);
  torch::Tensor forward(const torch::Tensor& x);
  Linear gate_proj{nullptr}, up_proj{nullptr}, down_proj{nullptr};
};
TORCH_MODULE(MLP);

struct DecoderLayerImpl : torch::nn::Module {
  DecoderLayerImpl(const ModelConfig& c, const torch::TensorOptions& opts);
  torch::Tensor forward(const torch::Tensor& x, const torch::Tensor& cos, const torch::Tensor& sin,
                        const torch::Tensor& allowed, KVCache* cache = nullptr, int64_t layer = 0);
  Attention self_attn{nullptr};
  MLP mlp{nullptr};
  RMSNorm input_layernorm{nullptr}, post_attention_layernorm{nullptr};
};
TORCH_MODULE(DecoderLayer);

// HF's `model.` prefix: Qwen2Model / LlamaModel.
struct DecoderImpl : torch::nn::Module {
  DecoderImpl(const ModelConfig& c, const torch::TensorOptions& opts);
  // input_ids [B, T], attention_mask [B, T] -> final-normed hidden states [B, T, H]. With a cache, the T
  // tokens continue the cached ones (attention_mask covers only the new tokens) and are appended to it.
  torch::Tensor forward(const torch::Tensor& input_ids, const torch::Tensor& attention_mask, KVCache* cache = nullptr);
  // Training with less memory: each layer keeps only its input for backward and recomputes its activations
  // there (HF's gradient_checkpointing). Same numbers and gradients; applies only when autograd records.
  bool gradient_checkpointing = false;
  Embedding embed_tokens{nullptr};
  torch::nn::ModuleList layers{nullptr};
  RMSNorm norm{nullptr};
  RotaryEmbedding rope;
};
TORCH_MODULE(Decoder);

// The whole checkpoint: `model.*` plus `lm_head` (untied causal LM) or `score` (sequence classification).
struct TransformerImpl : torch::nn::Module {
  TransformerImpl(const ModelConfig& c, const torch::TensorOptions& opts);

  // Positions come from the mask (cumsum - 1), so left- and right-padded batches give the same numbers as
  // unpadded sequences. input_ids [B, T] int64, attention_mask [B, T] (1 = token, 0 = pad) -> [B, T, H]
  // With a KV cache (generation.h): the tokens extend the cached sequences (padding only on the left of the
  // first call) and the same numbers come out as from the uncached forward over the whole sequence.
  torch::Tensor hidden_states(const torch::Tensor& input_ids, const torch::Tensor& attention_mask,
                              KVCache* cache = nullptr);
  // hidden [..., H] -> logits [..., V] in the model dtype (causal LM only)
  torch::Tensor logits_from_hidden(const torch::Tensor& hidden);
  // The same values in fp32 (a bf16 head's logits exactly representable in bf16), written into `into` ([..., V]
  // fp32 contiguous) when given: decoding reuses one buffer per batch for them.
  torch::Tensor logits_fp32_from_hidden(const torch::Tensor& hidden, const torch::Tensor& into = {});
  // The LM head's weight in the compute dtype (an fp32 copy for bf16 weights on CPU). Chunked log-prob code
  // converts once and passes it to every chunk: autograd then keeps one copy for backward instead of one per
  // chunk (545 MB each for Qwen2.5-0.5B's tied head, which made a training step run out of memory).
  torch::Tensor lm_head_compute_weight();
  torch::Tensor logits_from_hidden(const torch::Tensor& hidden, const torch::Tensor& compute_weight);
  // Full logits [B, T, V]; the oracle path. Training and scoring use logprobs.h, which never materializes
  // [B, T, V] at once.
  torch::Tensor forward(const torch::Tensor& input_ids, const torch::Tensor& attention_mask);
  // Sequence classification: score head on the last non-pad token -> [B, num_labels] fp32.
  torch::Tensor sequence_scores(const torch::Tensor& input_ids, const torch::Tensor& attention_mask);
  // The LM head's weight [V, H] (the embedding matrix when tied).
  torch::Tensor lm_head_weight() const;

  ModelConfig config;
  Decoder model{nullptr};
  Linear lm_head{nullptr}, score{nullptr};
};
TORCH_MODULE(Transformer);

}  // namespace multiref
