// Large tensors that live together, allocated together: a model's parameters, an optimizer's moments and master
// copies, each set in one allocation of which every tensor is a view.
//
// Why: allocated one by one, each large tensor costs more resident memory than its bytes. jemalloc's large size
// classes are a quarter of a power of two apart (Qwen2.5-0.5B's 8.3 MiB MLP matrices take 10 MiB classes), and with
// transparent huge pages (util/malloc_conf.cpp) the last 2 MiB page of each is backed whole. At the seed's GRPO
// shape (0.5B policy with fp32 master and moments, 0.5B and 1.5B references: ~1,000 large tensors) that was
// ~1.4 GiB of resident memory over the tensors' bytes, measured with /proc/self/smaps_rollup.
#pragma once
#include <torch/torch.h>

#include <vector>

namespace multiref {

// Views with the given shapes into one new contiguous buffer of `opts` (each view starts 64-byte aligned);
// zero-filled when `zero`, else uninitialized.
std::vector<torch::Tensor> flat_tensors(const std::vector<std::vector<int64_t>>& shapes,
                                        const torch::TensorOptions& opts, bool zero);

// Moves `module`'s parameters (recursively) into one buffer per dtype and device, values kept: each parameter
// becomes a view (Tensor::set_data; the Parameter objects, their names and requires_grad are unchanged).
// Returns the number of buffers.
int64_t pack_parameters(torch::nn::Module& module);

}  // namespace multiref
