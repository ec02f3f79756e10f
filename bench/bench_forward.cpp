// Forward and forward+backward throughput of a model shape (random weights), plus the machine's GEMM rate.
//   bench_forward [--preset qwen2.5-0.5b] [--arch qwen2] [--batch 4] [--seq 256] [--dtype float32|bfloat16]
//                 [--iters 2] [--threads 0] [--backward true]
// Prints one JSON line. Run once per dtype (peak RSS is per process): bench/run_benchmarks.sh does.
#include <iostream>

#include "io/hf_model.h"
#include "model/logprobs.h"
#include "util/common.h"
#include "util/flags.h"
#include "util/runtime.h"

using namespace multiref;

namespace {
// GFLOP/s of torch::mm on the model's own MLP shape, native in `dt`, and in fp32 after upcasting (what
// Linear does for bf16 on CPU).
double gemm_rate(int64_t M, int64_t K, int64_t N, torch::ScalarType dt, bool upcast, int iters) {
  auto a = torch::randn({M, K}).to(dt), b = torch::randn({N, K}).to(dt);
  auto run = [&] {
    if (upcast) return torch::linear(a.to(torch::kFloat32), b.to(torch::kFloat32)).to(dt);
    return torch::linear(a, b);
  };
  run();
  double best = 1e30;  // best of `iters`: the machine is shared, the fastest run is the rate
  for (int i = 0; i < iters; ++i) {
    double t0 = now_seconds();
    run();
    best = std::min(best, now_seconds() - t0);
  }
  return 2.0 * M * K * N / best / 1e9;
}
}  // namespace

int main(int argc, char** argv) {
  return run_main("bench_forward", [&]() -> int {
    std::string preset = "qwen2.5-0.5b", arch = "qwen2";
    int batch = 4, seq = 256, iters = 2, threads = 0;
    bool backward = true;
    DTypeChoice dtype_choice = DTypeChoice::Float32;
    FlagTable flags("bench_forward", "Forward / forward+backward tokens/s and peak RSS of a model shape.");
    flags.add("preset", &preset, "model shape (multiref init presets)");
    flags.add("arch", &arch, "qwen2 or llama");
    flags.add("batch", &batch, "sequences per batch");
    flags.add("seq", &seq, "tokens per sequence");
    flags.add("iters", &iters, "timed iterations (after one warm-up)");
    flags.add("threads", &threads, "CPU threads (0 = all cores)");
    flags.add("backward", &backward, "also time forward+backward");
    flags.add_enum("dtype", &dtype_choice, dtype_choices(), "weights dtype");
    flags.parse(argc, argv);
    if (flags.help_requested()) {
      std::cout << flags.help();
      return 0;
    }
    set_threads(threads);
    auto dt = resolve_dtype(dtype_choice, torch::kCPU);
    auto cfg = preset_config(arch, preset);
    int64_t tokens = (int64_t)batch * seq;
    nlohmann::json out = {{"preset", preset},
                          {"dtype", dtype_name(dt)},
                          {"batch", batch},
                          {"seq", seq},
                          {"threads", torch::get_num_threads()},
                          {"allocator", allocator_name()}};
    out["gemm_gflops_native"] =
        gemm_rate(tokens, cfg.hidden_size, cfg.intermediate_size, dt, false, dt == torch::kFloat32 ? 10 : 2);
    if (dt != torch::kFloat32)
      out["gemm_gflops_upcast"] = gemm_rate(tokens, cfg.hidden_size, cfg.intermediate_size, dt, true, 10);

    Transformer model(cfg, torch::TensorOptions().dtype(dt));
    init_weights(model, 0);
    auto ids = torch::randint(0, cfg.vocab_size, {batch, seq}, torch::kLong);
    auto mask = torch::ones({batch, seq}, torch::kLong);
    // Model FLOPs of one forward: 2 per matmul weight per token, plus QK^T and PV (full square).
    int64_t matmul_params = cfg.num_parameters() - (cfg.tie_word_embeddings ? 0 : cfg.vocab_size * cfg.hidden_size);
    double flops = 2.0 * (double)matmul_params * tokens +
                   4.0 * cfg.num_hidden_layers * batch * (double)seq * seq * cfg.num_attention_heads * cfg.head_dim;
    {
      torch::InferenceMode im;
      token_logprobs(model, ids, mask);
      double t0 = now_seconds();
      for (int i = 0; i < iters; ++i) token_logprobs(model, ids, mask);
      double s = (now_seconds() - t0) / iters;
      out["forward_tok_s"] = tokens / s;
      out["forward_gflops"] = flops / s / 1e9;
    }
    if (backward) {
      auto step = [&] {
        model->zero_grad();
        token_logprobs(model, ids, mask).sum().backward();
      };
      step();
      double t0 = now_seconds();
      for (int i = 0; i < iters; ++i) step();
      double s = (now_seconds() - t0) / iters;
      out["fwd_bwd_tok_s"] = tokens / s;
      out["fwd_bwd_gflops"] = 3 * flops / s / 1e9;
    }
    out["peak_rss_mib"] = peak_rss_bytes() / (1024.0 * 1024.0);
    std::cout << out.dump() << std::endl;
    return 0;
  });
}
