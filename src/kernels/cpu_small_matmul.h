// y = x W^T (+ b) for up to a few hundred rows on CPU: the matmuls of incremental decoding, one token per sequence.
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
// once and using it does (bf16). Up to 8 rows the kernel streams the weights once per 8 rows; beyond, it packs
// 16-row panels (fp32, in L2) and multiplies every row against each. Measured on a 2-core AVX2 machine on
// Qwen2.5-0.5B's weight shapes (bench_matmul): at 64 rows 1.1-1.4x OpenBLAS fp32, 1.2-3.3x bf16-upcast + OpenBLAS.
int64_t small_matmul_max_rows(torch::ScalarType weight_dtype);

// Where the result goes. Decoding's logits ([rows, vocabulary], 39 MB at 64 rows of Qwen2) are written into
// one buffer reused every step instead of a fresh allocation (glibc maps and faults in every block over 32 MB),
// and a bf16 head's logits are rounded in the store instead of a round trip through a bf16 copy.
struct SmallRowsOutput {
  torch::Tensor into;                  // fp32 [..., N] contiguous to write into; undefined: a new tensor
  bool round_to_weight_dtype = false;  // bf16 weights: store the values .to(bf16).to(fp32) would give
};

// x [..., K] (any float dtype), w [N, K] fp32 or bf16 contiguous, bias [N] or undefined -> [..., N] fp32.
// Returns an undefined tensor when the kernel does not apply (not CPU, more rows than small_matmul_max_rows,
// other dtypes, autograd recording, or a processor without AVX2/FMA); the caller then takes the BLAS path.
torch::Tensor small_rows_linear(const torch::Tensor& x, const torch::Tensor& w, const torch::Tensor& bias,
                                const SmallRowsOutput& output = {});

// Several products of the same x (a layer's q/k/v, or gate/up): their weight rows are split across threads in
// one parallel region, so the threads wait for each other once per group instead of once per matrix, and x is
// converted once. Same results as one small_rows_linear per weight, bit for bit. Empty when the kernel does not
// apply to every one of them, or their dtypes differ.
std::vector<torch::Tensor> small_rows_linear_group(const torch::Tensor& x, const std::vector<torch::Tensor>& ws,
                                                   const std::vector<torch::Tensor>& biases);

// The kernel itself, for tests: always runs, any number of rows; `vectorized` false (or no AVX2/FMA) takes the
// portable scalar loop.
torch::Tensor small_rows_linear_kernel(const torch::Tensor& x, const torch::Tensor& w, const torch::Tensor& bias,
                                       bool vectorized = true, const SmallRowsOutput& output = {});

// Distinct threads one at::parallel_for over `tasks` items ran on here: at::get_num_threads() when this file was
// built with OpenMP (CMakeLists.txt), 1 when its pragma was silently ignored. For tests and benchmarks.
int small_matmul_threads_used(int64_t tasks = 1024);

}  // namespace multiref
