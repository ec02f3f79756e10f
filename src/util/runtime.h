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

// Intra-op threads: n <= 0 means one per core. LibTorch 1.13 otherwise starts with 1 here.
void set_threads(int n);

}  // namespace multiref
