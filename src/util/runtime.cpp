#include "util/runtime.h"

#include <dlfcn.h>
#include <malloc.h>

#include <cstdlib>
#include <fstream>
#include <iterator>
#include <thread>

#include "util/common.h"

namespace multiref {

std::vector<std::pair<std::string, DeviceChoice>> device_choices() {
  return {{"auto", DeviceChoice::Auto}, {"cpu", DeviceChoice::Cpu}, {"cuda", DeviceChoice::Cuda}};
}

std::vector<std::pair<std::string, DTypeChoice>> dtype_choices() {
  return {{"auto", DTypeChoice::Auto},
          {"float32", DTypeChoice::Float32},
          {"bfloat16", DTypeChoice::BFloat16},
          {"float16", DTypeChoice::Float16},
          {"float64", DTypeChoice::Float64}};
}

torch::Device resolve_device(DeviceChoice d) {
  switch (d) {
    case DeviceChoice::Cpu:
      return torch::kCPU;
    case DeviceChoice::Cuda:
      if (!torch::cuda::is_available())
        fail(
            "--device cuda: no CUDA device is visible to this LibTorch build (use --device cpu, or build "
            "against a CUDA LibTorch)");
      return torch::Device(torch::kCUDA, 0);
    case DeviceChoice::Auto:
      break;
  }
  return torch::cuda::is_available() ? torch::Device(torch::kCUDA, 0) : torch::Device(torch::kCPU);
}

torch::ScalarType resolve_dtype(DTypeChoice d, const torch::Device& device) {
  switch (d) {
    case DTypeChoice::Float32:
      return torch::kFloat32;
    case DTypeChoice::BFloat16:
      return torch::kBFloat16;
    case DTypeChoice::Float16:
      if (device.is_cpu()) fail("--dtype float16 is GPU-only; on CPU use bfloat16 or float32");
      return torch::kFloat16;
    case DTypeChoice::Float64:  // exactness checks and research: every computation in double
      return torch::kFloat64;
    case DTypeChoice::Auto:
      break;
  }
  return device.is_cuda() ? torch::kBFloat16 : torch::kFloat32;
}

std::string dtype_name(torch::ScalarType t) {
  switch (t) {
    case torch::kFloat32:
      return "float32";
    case torch::kBFloat16:
      return "bfloat16";
    case torch::kFloat16:
      return "float16";
    case torch::kFloat64:
      return "float64";
    default:
      return c10::toString(t);
  }
}

std::vector<std::pair<std::string, Bf16MatmulChoice>> bf16_matmul_choices() {
  return {{"auto", Bf16MatmulChoice::Auto}, {"native", Bf16MatmulChoice::Native}, {"upcast", Bf16MatmulChoice::Upcast}};
}

Bf16MatmulChoice& bf16_matmul_flag() {
  static Bf16MatmulChoice choice = Bf16MatmulChoice::Auto;
  return choice;
}

void set_threads(int n) {
  if (n <= 0) n = (int)std::max(1u, std::thread::hardware_concurrency());
  torch::set_num_threads(n);
}

namespace {

// jemalloc's control function where the executable links jemalloc, else null. Looked up rather than linked: the
// libraries stay free of jemalloc; only executables link it.
using Mallctl = int (*)(const char*, void*, size_t*, void*, size_t);
Mallctl jemalloc_mallctl() {
  static const auto fn = reinterpret_cast<Mallctl>(dlsym(RTLD_DEFAULT, "mallctl"));
  return fn;
}

}  // namespace

std::string allocator_name() {
  auto mallctl = jemalloc_mallctl();
  if (!mallctl) return "glibc malloc";
  const char* version = nullptr;
  size_t n = sizeof(version);
  std::string name = "jemalloc";
  if (mallctl("version", &version, &n, nullptr, 0) == 0 && version) name += std::string(" ") + version;
  std::vector<std::string> notes;
  ssize_t decay = 0;
  n = sizeof(decay);
  if (mallctl("opt.dirty_decay_ms", &decay, &n, nullptr, 0) == 0)
    notes.push_back(decay < 0 ? "freed memory kept for reuse"
                              : "freed memory returned after " + std::to_string(decay) + " ms");
  const char* thp = nullptr;
  n = sizeof(thp);
  if (mallctl("opt.thp", &thp, &n, nullptr, 0) == 0 && thp) {
    // The kernel's mode is the bracketed word of this file ("always [madvise] never").
    std::ifstream f("/sys/kernel/mm/transparent_hugepage/enabled");
    std::string modes((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
    auto l = modes.find('['), r = modes.find(']');
    std::string kernel =
        l != std::string::npos && r != std::string::npos && r > l ? modes.substr(l + 1, r - l - 1) : "unknown";
    notes.push_back(std::string("huge pages ") + thp + ", kernel THP " + kernel);
  }
  for (size_t i = 0; i < notes.size(); ++i) name += (i ? "; " : " (") + notes[i];
  return name + (notes.empty() ? "" : ")");
}

int64_t release_free_memory() {
  static const bool keep = std::getenv("MULTIREF_KEEP_FREE_MEMORY") != nullptr;
  if (keep) return 0;
  auto mallctl = jemalloc_mallctl();
  if (!mallctl) {
    malloc_trim(0);
    return 0;
  }
  auto resident = [&]() -> int64_t {
    uint64_t epoch = 1;
    size_t n = sizeof(epoch);
    mallctl("epoch", &epoch, &n, &epoch, n);  // refreshes the statistics
    size_t r = 0;
    n = sizeof(r);
    return mallctl("stats.resident", &r, &n, nullptr, 0) == 0 ? (int64_t)r : 0;
  };
  int64_t before = resident();
  mallctl("arena.4096.purge", nullptr, nullptr, nullptr, 0);  // 4096 = MALLCTL_ARENAS_ALL
  return std::max<int64_t>(0, before - resident());
}

}  // namespace multiref
