// The CPU linear-layer paths at the row counts of decoding (batch B = rows) on a model's own weight shapes:
// the few-rows kernel (cpu_small_matmul), and what Linear does otherwise (OpenBLAS; bf16 upcast to fp32 first).
//   bench_matmul [--preset qwen2.5-0.5b] [--dtype bfloat16] [--rows 1,8,16,32,64,128,256] [--iters 5] [--copies 24]
// One JSON line per (shape, rows): GFLOP/s and weight GB/s of each path. Sets small_matmul_max_rows. Each call
// takes the next of --copies copies of the weights, so they come from memory as in decoding, not from the L3
// cache (with --copies 1 the small shapes stay cached and measure the kernel's arithmetic alone).
#include <iostream>

#include "io/hf_model.h"
#include "kernels/cpu_small_matmul.h"
#include "util/common.h"
#include "util/flags.h"
#include "util/runtime.h"

using namespace multiref;

int main(int argc, char** argv) {
  return run_main("bench_matmul", [&]() -> int {
    std::string preset = "qwen2.5-0.5b", arch = "qwen2";
    std::vector<std::string> rows = {"1", "8", "16", "32", "64", "128", "256"};
    int iters = 5, threads = 0, copies = 24;
    DTypeChoice dtype_choice = DTypeChoice::BFloat16;
    FlagTable flags("bench_matmul", "Few-rows kernel vs BLAS linear on a model's weight shapes.");
    flags.add("preset", &preset, "model shape (multiref init presets)");
    flags.add("arch", &arch, "qwen2 or llama");
    flags.add("rows", &rows, "row counts (sequences decoded together)");
    flags.add("iters", &iters, "timed iterations per path (best is reported)");
    flags.add("threads", &threads, "CPU threads (0 = all cores)");
    flags.add("copies", &copies,
              "distinct copies of each weight matrix, used in turn (as a model's layers are), so that the weights "
              "stream from memory as in decoding (the LM head: at most 2)");
    flags.add_enum("dtype", &dtype_choice, dtype_choices(), "weights dtype");
    flags.parse(argc, argv);
    if (flags.help_requested()) {
      std::cout << flags.help();
      return 0;
    }
    set_threads(threads);
    torch::InferenceMode im;
    auto dt = resolve_dtype(dtype_choice, torch::kCPU);
    auto cfg = preset_config(arch, preset);
    int64_t H = cfg.hidden_size, I = cfg.intermediate_size;
    std::vector<std::pair<std::string, std::pair<int64_t, int64_t>>> shapes = {
        {"q_proj", {cfg.num_attention_heads * cfg.head_dim, H}},
        {"gate_proj", {I, H}},
        {"down_proj", {H, I}},
        {"lm_head", {cfg.vocab_size, H}}};
    auto best_of = [&](const std::function<void()>& f) {
      f();
      double best = 1e30;
      for (int i = 0; i < iters; ++i) {
        double t0 = now_seconds();
        f();
        best = std::min(best, now_seconds() - t0);
      }
      return best;
    };
    for (auto& [name, nk] : shapes) {
      auto [N, K] = nk;
      std::vector<torch::Tensor> ws;
      for (int c = 0; c < (name == "lm_head" ? std::min(copies, 2) : std::max(copies, 1)); ++c)
        ws.push_back(torch::randn({N, K}).to(dt));
      size_t turn = 0;
      auto next_w = [&]() -> const torch::Tensor& { return ws[turn++ % ws.size()]; };
      const auto& w = ws[0];
      for (auto& rs : rows) {
        int64_t M = std::stoll(rs);
        auto x = torch::randn({M, K});
        double flop = 2.0 * M * N * K, bytes = (double)w.numel() * w.element_size();
        double t_kernel = best_of([&] { small_rows_linear_kernel(x, next_w(), torch::Tensor()); });
        double t_blas = best_of([&] {
          if (dt == torch::kFloat32)
            torch::linear(x, next_w());
          else
            torch::linear(x, next_w().to(torch::kFloat32));
        });
        nlohmann::json out = {{"shape", name},
                              {"N", N},
                              {"K", K},
                              {"rows", M},
                              {"dtype", dtype_name(dt)},
                              {"kernel_gflops", flop / t_kernel / 1e9},
                              {"kernel_weight_gbs", bytes / t_kernel / 1e9},
                              {"blas_gflops", flop / t_blas / 1e9},
                              {"kernel_over_blas", t_blas / t_kernel}};
        std::cout << out.dump() << std::endl;
      }
    }
    return 0;
  });
}
