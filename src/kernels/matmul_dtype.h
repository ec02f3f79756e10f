// Which dtype a bf16 model's matrix products run in on the CPU, decided once per process. LibTorch's native bf16
// GEMM (oneDNN) is ~3.5x faster than an fp32 upcast where the CPU has bf16 instructions (avx512_bf16, amx_bf16:
// 759 vs 205 GFLOP/s measured on an AVX-512 BF16 EPYC) and ~150x slower without them (1.4 GFLOP/s on AVX2-only
// CPUs), so neither can be hard-wired: `auto` takes native bf16 only when the CPU has the instructions *and* a short
// measurement at the model's scale confirms it, and says so once on stderr. `--bf16_matmul native|upcast` (a flag of
// every command that takes --dtype: util/runtime.h) or MULTIREF_BF16_MATMUL=native|upcast forces a path (experiments,
// and the tests of both paths on any machine). Attention and the KV cache keep their own rule (compute_dtype): the
// decoding kernels are fp32.
#pragma once
#include <torch/torch.h>

#include <string>

namespace multiref {

enum class Bf16Matmul { Native, Upcast };

// The process's choice (decided on first use, thread-safe).
Bf16Matmul bf16_matmul();
// For tests, benchmarks and the flag: overrides the choice from now on; `why` is what bf16_matmul_reason() cites.
void set_bf16_matmul(Bf16Matmul mode, const std::string& why = "set");
// How the choice was made, e.g. "native (avx512_bf16; 712 vs 198 GFLOP/s)" or "upcast (MULTIREF_BF16_MATMUL)".
std::string bf16_matmul_reason();

// The dtype a linear layer's product with weight `w` runs in: bf16 weights on the CPU per bf16_matmul(), f16
// weights on the CPU in fp32, everything else in its own dtype.
torch::ScalarType matmul_dtype(const torch::Tensor& w);

// Whether this CPU has bf16 matrix instructions (avx512_bf16 or amx_bf16 in /proc/cpuinfo).
bool cpu_has_bf16_instructions();

}  // namespace multiref
