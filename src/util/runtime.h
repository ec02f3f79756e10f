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

}  // namespace multiref
