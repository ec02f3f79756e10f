// Device, dtype and thread settings shared by every command.
#pragma once
#include <torch/torch.h>

#include <string>
#include <utility>
#include <vector>

namespace multiref {

enum class DeviceChoice { Auto, Cpu, Cuda };
enum class DTypeChoice { Auto, Float32, BFloat16, Float16, Float64 };

std::vector<std::pair<std::string, DeviceChoice>> device_choices();
std::vector<std::pair<std::string, DTypeChoice>> dtype_choices();

// auto = cuda when available, else cpu. Asking for cuda without it is an error saying so.
torch::Device resolve_device(DeviceChoice d);
// auto = bfloat16 on CUDA, float32 on CPU. float16 on CPU is an error (no fast CPU kernels).
torch::ScalarType resolve_dtype(DTypeChoice d, const torch::Device& device);
std::string dtype_name(torch::ScalarType t);  // "float32" | "bfloat16" | "float16" | "float64"

// --bf16_matmul, a flag of every command that takes --dtype (util/dtype_flag.h): how bf16 matrix products run on
// the CPU (kernels/matmul_dtype.h decides and explains). Process-wide, like the thread count; auto by default.
enum class Bf16MatmulChoice { Auto, Native, Upcast };
std::vector<std::pair<std::string, Bf16MatmulChoice>> bf16_matmul_choices();
Bf16MatmulChoice& bf16_matmul_flag();

// Intra-op threads: n <= 0 means one per core. LibTorch 1.13 otherwise starts with 1 here.
void set_threads(int n);

// The memory allocator serving this process: "jemalloc 5.3.0-0-g54eaed1d8b56 (freed memory kept for reuse)" when
// the executable was built with jemalloc (util/malloc_conf.cpp says why), else "glibc malloc".
std::string allocator_name();

// Hands the allocator's free pages back to the system (jemalloc keeps them for reuse, util/malloc_conf.cpp), at a
// boundary after which the freed memory would mostly sit unused: models loaded (their files' buffers), a rollout
// scored (generation's caches), a micro-batch's backward done (its activations, in other sizes than the next's).
// Kept, it adds to the next phase's peak resident memory through fragmentation (measured at the seed's GRPO step:
// 15.7 -> 14.2 GiB together with model/flat_parameters.h); the next phase faults in fresh pages instead, on huge
// pages one fault per 2 MiB. Returns the bytes of resident memory released (0 without jemalloc: glibc is asked to
// trim its heap). MULTIREF_KEEP_FREE_MEMORY=1 in the environment turns it off, for A/B measurements.
int64_t release_free_memory();

}  // namespace multiref
