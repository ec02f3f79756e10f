// Attention of one new token per sequence over its KV cache, on CPU (incremental decoding).
//
// The general path (transformer.cpp) runs it as two batched matmuls, which OpenBLAS executes as B x KV tiny
// GEMMs of R x D by D x S: at batch 64 and S = 256 that took ~9 ms per layer (~7 GFLOP/s, call overhead), against
// ~1 ms to stream the cache slice once. This kernel reads each cached key and value once per (sequence, KV head)
// for all R query heads of that KV head, in fp32 like the general path.
#pragma once
#include <torch/torch.h>

namespace multiref {

// q [B, KV * R, 1, D] (query head h uses KV head h / R), k and v [B, KV, S, D] (unit stride in D; views into a
// cache are fine), allowed [B, 1, 1, S] bool, all fp32 on CPU. Returns [B, KV * R, 1, D] =
// softmax(q k^T * scale, masked) v, or an undefined tensor when the kernel does not apply (not CPU fp32, more
// than one query position, autograd recording, D not a multiple of 8, no AVX2/FMA): the caller's path then runs.
torch::Tensor decode_attention(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v,
                               const torch::Tensor& allowed, double scale);

// The kernel itself, for tests: always runs (`vectorized` false: the portable scalar loops).
torch::Tensor decode_attention_kernel(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v,
                                      const torch::Tensor& allowed, double scale, bool vectorized = true);

}  // namespace multiref
