// Eager attention over folded query rows (LibTorch 1.13's path; 2.x runs at::scaled_dot_product_attention), with a
// backward that recomputes the probabilities instead of keeping them.
//
// Why: the probabilities are [B, heads, T, S] fp32 per layer — T^2 per head, the largest activation of a training
// forward at GRPO's lengths (0.5B shape, 4 x 400 tokens: 36 MB a layer, 0.86 GB over 24 layers; 3.2 GB at 768
// tokens). Recomputing them costs one more q k^T and softmax per layer in backward, a few percent of the layer's
// FLOPs (the MLP's matmuls are ~40x larger at these lengths). Values and gradients are the autograd formula's.
#pragma once
#include <torch/torch.h>

namespace multiref {

// q [B, KV, R*T, D] (row r*T + t: query t of the r-th query head of KV head kv), k, v [B, KV, S, D],
// allowed [B, 1, T, S] (bool: query t may attend key s), scale (1/sqrt(D)) -> [B, KV, R*T, D].
// The softmax runs in fp32 for half-precision inputs (HF's), in the inputs' dtype otherwise.
torch::Tensor eager_attention(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v,
                              const torch::Tensor& allowed, double scale);

// The oracle: the same formula left to autograd (which keeps the probabilities). Tests only.
torch::Tensor eager_attention_reference(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v,
                                        const torch::Tensor& allowed, double scale);

}  // namespace multiref
