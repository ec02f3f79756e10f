// y = x W^T (+ b) for a few rows on CPU: the matmuls of incremental decoding, one token per sequence.
//
// At a handful of rows a linear layer only streams its weight matrix through the core once, so its speed is
// memory bandwidth. OpenBLAS's sgemm is several times below that at M = 1..16 (it packs the whole weight
// matrix for a product that uses each element once), and bf16 weights went through a full fp32 copy first
// (transformer.h: CPU bf16 GEMM runs in fp32). This kernel reads each weight once, bf16 converted to fp32 in
// registers, multiplying in fp32 as the rest of the CPU path does. Bf16 decoding thus streams half the bytes
// of fp32 decoding instead of 2.5x more.
#pragma once
#include <torch/torch.h>

namespace multiref {

// Rows up to which the kernel is used: beyond, OpenBLAS's blocking wins (fp32 weights), or upcasting the weights
// once and using it does (bf16). Measured on a 2-core AVX2 machine with a Qwen2.5-0.5B MLP (bench_generate).
int64_t small_matmul_max_rows(torch::ScalarType weight_dtype);

// x [..., K] (any float dtype), w [N, K] fp32 or bf16 contiguous, bias [N] or undefined -> [..., N] fp32.
// Returns an undefined tensor when the kernel does not apply (not CPU, more rows than small_matmul_max_rows,
// other dtypes, autograd recording, or a processor without AVX2/FMA); the caller then takes the BLAS path.
torch::Tensor small_rows_linear(const torch::Tensor& x, const torch::Tensor& w, const torch::Tensor& bias);

// The kernel itself, for tests: always runs, any number of rows; `vectorized` false (or no AVX2/FMA) takes the
// portable scalar loop.
torch::Tensor small_rows_linear_kernel(const torch::Tensor& x, const torch::Tensor& w, const torch::Tensor& bias,
                                       bool vectorized = true);

}  // namespace multiref
