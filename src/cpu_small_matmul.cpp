#include "cpu_small_matmul.h"

#include <ATen/Parallel.h>

#include <cstring>

#if defined(__x86_64__)
#include <immintrin.h>
#endif

namespace multiref {

namespace {

constexpr int64_t kTile = 8;  // rows of x per pass over the weights (one AVX accumulator each)

inline float bf16_to_float(uint16_t h) {
  uint32_t bits = (uint32_t)h << 16;
  float f;
  std::memcpy(&f, &bits, sizeof f);
  return f;
}

template <typename W>
inline float weight_at(const W* w, int64_t i) {
  if constexpr (std::is_same_v<W, uint16_t>)
    return bf16_to_float(w[i]);
  else
    return w[i];
}

// Portable reference: y[m, n] for n in [n0, n1), m < M.
template <typename W>
void rows_scalar(const float* x, const W* w, const float* b, float* y, int64_t M, int64_t K, int64_t N, int64_t n0,
                 int64_t n1) {
  for (int64_t n = n0; n < n1; ++n) {
    const W* wr = w + n * K;
    for (int64_t m = 0; m < M; ++m) {
      const float* xr = x + m * K;
      float acc = 0;
      for (int64_t k = 0; k < K; ++k) acc += xr[k] * weight_at(wr, k);
      y[m * N + n] = acc + (b ? b[n] : 0.0f);
    }
  }
}

#if defined(__x86_64__)
__attribute__((target("avx2,fma"))) inline __m256 load8(const float* p) { return _mm256_loadu_ps(p); }
__attribute__((target("avx2,fma"))) inline __m256 load8(const uint16_t* p) {
  // bf16 -> fp32: the 16 bits become the high half of the float.
  __m256i v = _mm256_cvtepu16_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
  return _mm256_castsi256_ps(_mm256_slli_epi32(v, 16));
}
__attribute__((target("avx2,fma"))) inline float hsum(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}

// MT rows of x (MT <= kTile) against weight rows [n0, n1), NR weight rows at a time: each weight element is
// loaded once for all MT rows, and the MT x NR independent accumulators hide the FMA latency.
template <typename W, int MT, int NR>
__attribute__((target("avx2,fma"))) void rows_avx2(const float* x, const W* w, const float* b, float* y, int64_t K,
                                                   int64_t N, int64_t n0, int64_t n1) {
  int64_t K8 = K / 8 * 8;
  int64_t n = n0;
  for (; n + NR <= n1; n += NR) {
    __m256 acc[MT][NR];
    for (int m = 0; m < MT; ++m)
      for (int r = 0; r < NR; ++r) acc[m][r] = _mm256_setzero_ps();
    // Unrolled explicitly: at -O2 GCC keeps wv[] on the stack and the loop runs at ~60% of memory bandwidth.
#pragma GCC unroll 4
    for (int64_t k = 0; k < K8; k += 8) {
      __m256 wv[NR];
#pragma GCC unroll 8
      for (int r = 0; r < NR; ++r) wv[r] = load8(w + (n + r) * K + k);
#pragma GCC unroll 8
      for (int m = 0; m < MT; ++m) {
        __m256 xv = _mm256_loadu_ps(x + m * K + k);
#pragma GCC unroll 8
        for (int r = 0; r < NR; ++r) acc[m][r] = _mm256_fmadd_ps(xv, wv[r], acc[m][r]);
      }
    }
    for (int m = 0; m < MT; ++m)
      for (int r = 0; r < NR; ++r) {
        const W* wr = w + (n + r) * K;
        float s = hsum(acc[m][r]);
        for (int64_t k = K8; k < K; ++k) s += x[m * K + k] * weight_at(wr, k);
        y[m * N + n + r] = s + (b ? b[n + r] : 0.0f);
      }
  }
  if constexpr (NR > 1) {
    if (n < n1) rows_avx2<W, MT, 1>(x, w, b, y, K, N, n, n1);
  }
}

template <typename W>
void rows_avx2_dispatch(const float* x, const W* w, const float* b, float* y, int64_t M, int64_t K, int64_t N,
                        int64_t n0, int64_t n1) {
  // At most ~8 accumulators plus the weight registers: 16 ymm registers in all.
  switch (M) {
    case 1: return rows_avx2<W, 1, 4>(x, w, b, y, K, N, n0, n1);
    case 2: return rows_avx2<W, 2, 4>(x, w, b, y, K, N, n0, n1);
    case 3: return rows_avx2<W, 3, 2>(x, w, b, y, K, N, n0, n1);
    case 4: return rows_avx2<W, 4, 2>(x, w, b, y, K, N, n0, n1);
    case 5: return rows_avx2<W, 5, 1>(x, w, b, y, K, N, n0, n1);
    case 6: return rows_avx2<W, 6, 1>(x, w, b, y, K, N, n0, n1);
    case 7: return rows_avx2<W, 7, 1>(x, w, b, y, K, N, n0, n1);
    default: return rows_avx2<W, 8, 1>(x, w, b, y, K, N, n0, n1);
  }
}

bool have_avx2_fma() {
  static const bool ok = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
  return ok;
}
#else
bool have_avx2_fma() { return false; }
#endif

template <typename W>
void run(const float* x, const W* w, const float* b, float* y, int64_t M, int64_t K, int64_t N, bool vectorized) {
  // Split the weight rows across threads; each thread streams its slice once per tile of x rows. ~64 KB
  // of weights per task keeps the scheduling overhead small next to the memory traffic.
  int64_t grain = std::max<int64_t>(16, (64 * 1024) / std::max<int64_t>(1, K * (int64_t)sizeof(W)));
  at::parallel_for(0, N, grain, [&](int64_t n0, int64_t n1) {
    for (int64_t m0 = 0; m0 < M; m0 += kTile) {
      int64_t mt = std::min(kTile, M - m0);
#if defined(__x86_64__)
      if (vectorized) {
        rows_avx2_dispatch(x + m0 * K, w, b, y + m0 * N, mt, K, N, n0, n1);
        continue;
      }
#endif
      rows_scalar(x + m0 * K, w, b, y + m0 * N, mt, K, N, n0, n1);
    }
  });
}

torch::Tensor kernel(const torch::Tensor& x2, const torch::Tensor& w, const torch::Tensor& bias, bool vectorized) {
  int64_t M = x2.size(0), K = x2.size(1), N = w.size(0);
  auto y = torch::empty({M, N}, torch::kFloat32);
  auto bf = bias.defined() ? bias.to(torch::kFloat32).contiguous() : bias;
  const float* b = bf.defined() ? bf.data_ptr<float>() : nullptr;
  if (w.scalar_type() == torch::kBFloat16)
    run(x2.data_ptr<float>(), reinterpret_cast<const uint16_t*>(w.data_ptr<at::BFloat16>()), b, y.data_ptr<float>(), M,
        K, N, vectorized);
  else
    run(x2.data_ptr<float>(), w.data_ptr<float>(), b, y.data_ptr<float>(), M, K, N, vectorized);
  return y;
}

}  // namespace

torch::Tensor small_rows_linear_kernel(const torch::Tensor& x, const torch::Tensor& w, const torch::Tensor& bias,
                                       bool vectorized) {
  return kernel(x.to(torch::kFloat32).contiguous(), w.contiguous(), bias, vectorized && have_avx2_fma());
}

int64_t small_matmul_max_rows(torch::ScalarType weight_dtype) { return weight_dtype == torch::kBFloat16 ? 8 : 4; }

torch::Tensor small_rows_linear(const torch::Tensor& x, const torch::Tensor& w, const torch::Tensor& bias) {
  if (!x.is_cpu() || !w.is_cpu() || w.dim() != 2 || !w.is_contiguous()) return {};
  if (w.scalar_type() != torch::kFloat32 && w.scalar_type() != torch::kBFloat16) return {};
  int64_t K = w.size(1);
  if (x.size(-1) != K || x.numel() == 0 || x.numel() / K > small_matmul_max_rows(w.scalar_type())) return {};
  if (torch::GradMode::is_enabled() && (x.requires_grad() || w.requires_grad() || (bias.defined() && bias.requires_grad())))
    return {};  // the kernel has no backward
  if (!have_avx2_fma()) return {};
  auto sizes = x.sizes().vec();
  sizes.back() = w.size(0);
  return kernel(x.reshape({-1, K}).to(torch::kFloat32).contiguous(), w, bias, true).view(sizes);
}

}  // namespace multiref
