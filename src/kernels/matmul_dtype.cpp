#include "kernels/matmul_dtype.h"

#include <atomic>
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <mutex>
#include <sstream>

#include "util/common.h"
#include "util/runtime.h"

namespace multiref {

namespace {

std::once_flag g_once;
std::atomic<int> g_mode{-1};  // -1: undecided
std::string g_reason;

// GFLOP/s of an [M, K] x [K, N] product, native bf16 or upcast to fp32 (the best of a few runs: shared machines).
double rate(bool native) {
  const int64_t M = 256, K = 896, N = 2048;  // a 0.5B model's MLP at a 256-token chunk: big enough to be honest
  torch::NoGradGuard ng;
  auto a = torch::randn({M, K}).to(torch::kBFloat16), b = torch::randn({N, K}).to(torch::kBFloat16);
  auto run = [&] {
    if (native) return torch::linear(a, b);
    return torch::linear(a.to(torch::kFloat32), b.to(torch::kFloat32)).to(torch::kBFloat16);
  };
  run();
  double best = 1e30;
  for (int i = 0; i < 3; ++i) {
    double t0 = now_seconds();
    run();
    best = std::min(best, now_seconds() - t0);
  }
  return 2.0 * (double)(M * K * N) / best / 1e9;
}

void decide() {
  if (bf16_matmul_flag() != Bf16MatmulChoice::Auto) {
    bool native = bf16_matmul_flag() == Bf16MatmulChoice::Native;
    g_mode = native ? (int)Bf16Matmul::Native : (int)Bf16Matmul::Upcast;
    g_reason = std::string(native ? "native" : "upcast") + " (--bf16_matmul)";
    return;
  }
  const char* env = std::getenv("MULTIREF_BF16_MATMUL");
  std::string e = env ? env : "";
  if (e == "native" || e == "upcast") {
    g_mode = e == "native" ? (int)Bf16Matmul::Native : (int)Bf16Matmul::Upcast;
    g_reason = e + " (MULTIREF_BF16_MATMUL)";
    return;
  }
  if (!e.empty() && e != "auto") fail("MULTIREF_BF16_MATMUL='", e, "': expected native, upcast or auto (the default)");
  if (!cpu_has_bf16_instructions()) {
    g_mode = (int)Bf16Matmul::Upcast;
    g_reason = "upcast (no avx512_bf16 / amx_bf16 on this CPU)";
    return;
  }
  double native = rate(true), upcast = rate(false);
  std::ostringstream why;
  why.precision(0);
  why << std::fixed << " (bf16 instructions; " << native << " vs " << upcast << " GFLOP/s upcast)";
  g_mode = native > 1.1 * upcast ? (int)Bf16Matmul::Native : (int)Bf16Matmul::Upcast;
  g_reason = (g_mode == (int)Bf16Matmul::Native ? "native" : "upcast") + why.str();
}

// Every way of deciding says so once: a run's log tells which path its numbers came from.
void decide_and_log() {
  decide();
  std::cerr << "multiref: bf16 matrix products run " << g_reason << " (--bf16_matmul native|upcast overrides)\n";
}

}  // namespace

bool cpu_has_bf16_instructions() {
  std::ifstream in("/proc/cpuinfo");
  for (std::string line; std::getline(in, line);)
    if (line.rfind("flags", 0) == 0)
      return line.find(" avx512_bf16") != std::string::npos || line.find(" amx_bf16") != std::string::npos;
  return false;
}

Bf16Matmul bf16_matmul() {
  if (g_mode.load() < 0) std::call_once(g_once, decide_and_log);
  return (Bf16Matmul)g_mode.load();
}

void set_bf16_matmul(Bf16Matmul mode, const std::string& why) {
  std::call_once(g_once, [] {});  // no measurement after an explicit choice
  g_mode = (int)mode;
  g_reason = std::string(mode == Bf16Matmul::Native ? "native (" : "upcast (") + why + ")";
}

std::string bf16_matmul_reason() {
  bf16_matmul();
  return g_reason;
}

torch::ScalarType matmul_dtype(const torch::Tensor& w) {
  auto s = w.scalar_type();
  if (!w.is_cpu()) return s;
  if (s == torch::kHalf) return torch::kFloat32;
  if (s == torch::kBFloat16) return bf16_matmul() == Bf16Matmul::Native ? torch::kBFloat16 : torch::kFloat32;
  return s;
}

}  // namespace multiref
