// Generation throughput of a model shape (random weights, built in-process), one JSON line per measurement.
//   bench_generate --mode decode  [--preset qwen2.5-0.5b] [--dtype float32|bfloat16] [--batch 1,8,64]
//                  [--prompt_len 128] [--new_tokens 256]
//       cached decode tokens/s at each batch size, and the uncached path at the same lengths. The uncached
//       path costs a full forward over prompt + t tokens for the t-th token; its first and last steps are
//       timed and integrated (trapezoid: the step cost is affine in the length, attention being a small part
//       at these lengths), since running it to the end at batch 64 would take hours on a laptop CPU.
//       --full_uncached runs it to the end instead.
//   bench_generate --mode rollout [--prompts 8] [--group 8] [--new_tokens 256] [--dtype ...]
//       a GRPO-shaped rollout: wall time, tokens/s and peak RSS (run once per process: RSS is per process).
// --device cuda runs on the GPU (bench/gpu_check.sh); --decode_loop compacting|static picks the decode loop.
// Sampling is plain temperature-1 sampling with no eos, so every sequence runs its full length.
#include <iostream>
#include <sstream>

#include "generation/decode_flags.h"
#include "generation/generation.h"
#include "io/hf_model.h"
#include "util/common.h"
#include "util/flags.h"
#include "util/runtime.h"

using namespace multiref;

namespace {

std::vector<std::vector<int64_t>> random_prompts(int64_t n, int64_t len, int64_t vocab, uint64_t seed) {
  std::vector<std::vector<int64_t>> p((size_t)n, std::vector<int64_t>((size_t)len));
  for (int64_t i = 0; i < n; ++i)
    for (int64_t t = 0; t < len; ++t)
      p[(size_t)i][(size_t)t] = (int64_t)(stream_uniform(seed, (uint64_t)i, (uint64_t)t) * (double)vocab);
  return p;
}

DecodeFlags decode_flags;
torch::Device bench_device = torch::kCPU;

GenerationConfig sampling_config(int64_t new_tokens, int64_t group, int64_t batch) {
  GenerationConfig g;
  decode_flags.apply(g, bench_device);
  g.max_new_tokens = new_tokens;
  g.num_return_sequences = group;
  g.batch_size = batch;
  g.seed = 1;
  return g;
}

}  // namespace

int main(int argc, char** argv) {
  return run_main("bench_generate", [&]() -> int {
    std::string preset = "qwen2.5-0.5b", arch = "qwen2", mode = "decode";
    std::vector<std::string> batches = {"1", "8", "64"};
    int64_t prompt_len = 128, new_tokens = 256, prompts = 8, group = 8;
    int threads = 0;
    bool uncached = true, full_uncached = false;
    DTypeChoice dtype_choice = DTypeChoice::Float32;
    DeviceChoice device_choice = DeviceChoice::Cpu;
    FlagTable flags("bench_generate", "Cached vs uncached decode throughput, and a GRPO-shaped rollout.");
    flags.add("mode", &mode, "decode | rollout");
    flags.add("preset", &preset, "model shape (multiref init presets)");
    flags.add("arch", &arch, "qwen2 or llama");
    flags.add_enum("dtype", &dtype_choice, dtype_choices(), "weights dtype");
    flags.add("batch", &batches, "decode mode: batch sizes (sequences decoded together)");
    flags.add("prompt_len", &prompt_len, "prompt tokens per sequence");
    flags.add("new_tokens", &new_tokens, "new tokens per sequence");
    flags.add("uncached", &uncached, "decode mode: also time the uncached path");
    flags.add("full_uncached", &full_uncached, "decode mode: run the uncached path to the end instead of integrating");
    flags.add("prompts", &prompts, "rollout mode: prompts");
    flags.add("group", &group, "rollout mode: samples per prompt");
    flags.add("threads", &threads, "CPU threads (0 = all cores)");
    flags.add_enum("device", &device_choice, device_choices(), "where to run");
    decode_flags.register_flags(flags);
    flags.parse(argc, argv);
    if (flags.help_requested()) {
      std::cout << flags.help();
      return 0;
    }
    set_threads(threads);
    decode_flags.validate();
    bench_device = resolve_device(device_choice);
    auto dt = resolve_dtype(dtype_choice, bench_device);
    auto cfg = preset_config(arch, preset);
    Transformer model(cfg, torch::TensorOptions().dtype(dt));
    init_weights(model, 0);
    model->to(bench_device);
    model->eval();
    nlohmann::json base = {{"preset", preset},
                           {"dtype", dtype_name(dt)},
                           {"device", bench_device.str()},
                           {"decode_loop", decode_flags.is_static(bench_device) ? "static" : "compacting"},
                           {"threads", torch::get_num_threads()},
                           {"prompt_len", prompt_len},
                           {"new_tokens", new_tokens}};

    if (mode == "rollout") {
      auto p = random_prompts(prompts, prompt_len, cfg.vocab_size, 7);
      double t0 = now_seconds();
      auto res = generate(model, p, sampling_config(new_tokens, group, prompts * group));
      double wall = now_seconds() - t0;
      auto out = base;
      out["bench"] = "rollout";
      out["prompts"] = prompts;
      out["group"] = group;
      out["sequences"] = res.stats.sequences;
      out["generated_tokens"] = res.stats.generated_tokens;
      out["wall_s"] = wall;
      out["prefill_s"] = res.stats.prefill_seconds;
      out["decode_s"] = res.stats.decode_seconds;
      out["tok_s"] = res.stats.generated_tokens / wall;
      out["kv_cache_mib"] = res.stats.max_cache_bytes / 1048576.0;
      out["peak_rss_mib"] = peak_rss_bytes() / 1048576.0;
      std::cout << out.dump() << std::endl;
      return 0;
    }
    if (mode != "decode") fail("--mode: expected decode or rollout, got '", mode, "'");

    // Warm-up (allocator, OpenMP pool, first-touch of the weights).
    generate(model, random_prompts(1, 8, cfg.vocab_size, 0), sampling_config(4, 1, 1));
    for (auto& bs : batches) {
      int64_t B = parse_int(bs, "--batch");
      auto p = random_prompts(B, prompt_len, cfg.vocab_size, 11);
      auto out = base;
      out["bench"] = "decode";
      out["batch"] = B;
      auto res = generate(model, p, sampling_config(new_tokens, 1, B));
      out["cached_decode_tok_s"] = res.stats.decode_tokens_per_second();
      out["cached_prefill_s"] = res.stats.prefill_seconds;
      out["cached_decode_s"] = res.stats.decode_seconds;
      // All new tokens, the first (from the prefill) included: comparable with the uncached total.
      double cached_total = res.stats.prefill_seconds + res.stats.decode_seconds;
      out["cached_total_s"] = cached_total;
      if (uncached) {
        auto g = sampling_config(full_uncached ? new_tokens : 1, 1, B);
        g.use_cache = false;
        double unc_total;
        if (full_uncached) {
          auto r = generate(model, p, g);
          unc_total = r.stats.prefill_seconds + r.stats.decode_seconds;
        } else {
          // One uncached step = one forward over the whole sequence: time the first (length L) and the last
          // (length L + N - 1, a prompt that long) and integrate.
          auto r0 = generate(model, p, g);
          auto r1 = generate(model, random_prompts(B, prompt_len + new_tokens - 1, cfg.vocab_size, 11), g);
          double first = r0.stats.prefill_seconds, last = r1.stats.prefill_seconds;
          unc_total = (double)new_tokens * (first + last) / 2;
          out["uncached_first_step_s"] = first;
          out["uncached_last_step_s"] = last;
        }
        out["uncached_total_s"] = unc_total;
        out["uncached_tok_s"] = (double)(B * new_tokens) / unc_total;
        out["uncached_measured"] = full_uncached ? "full run" : "first/last steps, integrated";
        out["decode_speedup"] = res.stats.decode_tokens_per_second() / out["uncached_tok_s"].get<double>();
        out["end_to_end_speedup"] = unc_total / cached_total;
      }
      std::cout << out.dump() << std::endl;
    }
    return 0;
  });
}
