// The AdamW update alone: the fused CPU kernel (kernels/cpu_adamw) against its tensor-op oracle, on N parameters
// (default 100M, a fifth of Qwen2.5-0.5B) in bf16 with an fp32 master copy and in fp32. Prints JSON lines.
//   build/bench_adamw [N] [repeats]
#include <chrono>
#include <iostream>

#include "kernels/cpu_adamw.h"

using namespace multiref;

int main(int argc, char** argv) {
  int64_t n = argc > 1 ? std::atoll(argv[1]) : 100000000;
  int reps = argc > 2 ? std::atoi(argv[2]) : 3;
  for (auto dtype : {torch::kBFloat16, torch::kFloat32}) {
    auto w = torch::randn({n}) * 0.05;
    auto param = w.to(dtype), master = dtype == torch::kFloat32 ? torch::Tensor() : w.clone();
    auto m = torch::zeros({n}), v = torch::zeros({n}), g = (torch::randn({n}) * 0.1).to(dtype);
    for (bool fused : {false, true}) {
      double best = 1e30;
      for (int r = 0; r < reps; ++r) {
        AdamWUpdate u{1e-5, 0.9, 0.999, 1e-8, 0.0, 0.1, 0.001};
        auto t0 = std::chrono::steady_clock::now();
        if (fused)
          fused_adamw_step(param, g, master, m, v, u);
        else
          reference_adamw_step(param, g, master, m, v, u);
        best = std::min(best, std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
      }
      std::cout << "{\"bench\":\"adamw\",\"params\":" << n << ",\"dtype\":\""
                << (dtype == torch::kFloat32 ? "fp32" : "bf16") << "\",\"path\":\"" << (fused ? "fused" : "reference")
                << "\",\"seconds\":" << best << ",\"threads\":" << at::get_num_threads() << "}" << std::endl;
    }
  }
}
