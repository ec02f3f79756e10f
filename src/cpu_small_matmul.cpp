#include "cpu_small_matmul.h"

#include <ATen/Parallel.h>

#include <cstdlib>
#include <cstring>
#include <mutex>
#include <set>
#include <thread>
#include <vector>

#include "cpu_simd.h"

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

// MT rows of x (MT <= kTile) against weight rows [n0, n1), NR weight rows at a time: each weight element is
// loaded once for all MT rows, and the MT x NR independent accumulators hide the FMA latency. `w` points at
// row n0 (a slice of the weight matrix, or a converted copy of it); y and b are indexed by the global row n.
template <typename W, int MT, int NR>
__attribute__((target("avx2,fma"))) void rows_avx2(const float* x, const W* w, const float* b, float* y, int64_t K,
                                                   int64_t N, int64_t n0, int64_t n1) {
  int64_t K8 = K / 8 * 8;
  int64_t n = n0;
  for (; n + NR <= n1; n += NR) {
    const W* wn = w + (n - n0) * K;
    __m256 acc[MT][NR];
    for (int m = 0; m < MT; ++m)
      for (int r = 0; r < NR; ++r) acc[m][r] = _mm256_setzero_ps();
    // Unrolled explicitly: at -O2 GCC keeps wv[] on the stack and the loop runs at ~60% of memory bandwidth.
#pragma GCC unroll 4
    for (int64_t k = 0; k < K8; k += 8) {
      __m256 wv[NR];
#pragma GCC unroll 8
      for (int r = 0; r < NR; ++r) wv[r] = load8(wn + r * K + k);
#pragma GCC unroll 8
      for (int m = 0; m < MT; ++m) {
        __m256 xv = _mm256_loadu_ps(x + m * K + k);
#pragma GCC unroll 8
        for (int r = 0; r < NR; ++r) acc[m][r] = _mm256_fmadd_ps(xv, wv[r], acc[m][r]);
      }
    }
    for (int m = 0; m < MT; ++m)
      for (int r = 0; r < NR; ++r) {
        const W* wr = wn + r * K;
        float s = hsum(acc[m][r]);
        for (int64_t k = K8; k < K; ++k) s += x[m * K + k] * weight_at(wr, k);
        y[m * N + n + r] = s + (b ? b[n + r] : 0.0f);
      }
  }
  if constexpr (NR > 1) {
    if (n < n1) rows_avx2<W, MT, 1>(x, w + (n - n0) * K, b, y, K, N, n, n1);
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

// bf16 weights, more rows than one tile: one pass over the weights per 8 rows of x (8 passes at 64 rows) or an
// upcast fp32 copy of the whole matrix (3x the bytes of bf16, on fresh pages every call) both cost more than
// the arithmetic. Instead, each panel of 16 weight rows is converted once into a per-thread fp32 buffer, laid out
// k-major ([K][16], it stays in L2), and every row of x is multiplied against it there with the usual
// broadcast-FMA micro-kernel: MT rows x 16 outputs in 2*MT accumulators, no horizontal sums.
constexpr int64_t kPanel = 16;

template <typename W>
__attribute__((target("avx2,fma"))) void pack_panel(const W* w, int64_t K, int64_t rows, float* panel) {
  // panel[k * 16 + j] = w[j, k], rows past `rows` zero (the kernel then needs no column tail). 8 x 8 blocks are
  // converted and transposed in registers: the scalar strided copy cost as much as the multiply at 16 rows of x.
  int64_t K8 = K / 8 * 8;
  for (int64_t j0 = 0; j0 < kPanel; j0 += 8) {
    for (int64_t k0 = 0; k0 < K8; k0 += 8) {
      __m256 r[8];
#pragma GCC unroll 8
      for (int i = 0; i < 8; ++i) r[i] = j0 + i < rows ? load8(w + (j0 + i) * K + k0) : _mm256_setzero_ps();
      __m256 t[8], u[8];
#pragma GCC unroll 4
      for (int i = 0; i < 4; ++i) {
        t[2 * i] = _mm256_unpacklo_ps(r[2 * i], r[2 * i + 1]);
        t[2 * i + 1] = _mm256_unpackhi_ps(r[2 * i], r[2 * i + 1]);
      }
#pragma GCC unroll 2
      for (int h = 0; h < 2; ++h) {
        u[4 * h + 0] = _mm256_shuffle_ps(t[4 * h + 0], t[4 * h + 2], _MM_SHUFFLE(1, 0, 1, 0));
        u[4 * h + 1] = _mm256_shuffle_ps(t[4 * h + 0], t[4 * h + 2], _MM_SHUFFLE(3, 2, 3, 2));
        u[4 * h + 2] = _mm256_shuffle_ps(t[4 * h + 1], t[4 * h + 3], _MM_SHUFFLE(1, 0, 1, 0));
        u[4 * h + 3] = _mm256_shuffle_ps(t[4 * h + 1], t[4 * h + 3], _MM_SHUFFLE(3, 2, 3, 2));
      }
#pragma GCC unroll 4
      for (int i = 0; i < 4; ++i) {
        _mm256_storeu_ps(panel + (k0 + i) * kPanel + j0, _mm256_permute2f128_ps(u[i], u[4 + i], 0x20));
        _mm256_storeu_ps(panel + (k0 + 4 + i) * kPanel + j0, _mm256_permute2f128_ps(u[i], u[4 + i], 0x31));
      }
    }
    for (int64_t k = K8; k < K; ++k)
      for (int64_t j = j0; j < j0 + 8; ++j) panel[k * kPanel + j] = j < rows ? weight_at(w + j * K, k) : 0.0f;
  }
}

template <int MT>
__attribute__((target("avx2,fma"))) void panel_kernel(const float* x, const float* panel, const float* b, float* y,
                                                      int64_t K, int64_t N, int64_t n0, int64_t cols) {
  // Every loop over m is unrolled: an accumulator indexed by a run-time m would live on the stack.
  __m256 acc[MT][2];
#pragma GCC unroll 6
  for (int m = 0; m < MT; ++m) acc[m][0] = acc[m][1] = _mm256_setzero_ps();
#pragma GCC unroll 4
  for (int64_t k = 0; k < K; ++k) {
    __m256 w0 = _mm256_loadu_ps(panel + k * kPanel), w1 = _mm256_loadu_ps(panel + k * kPanel + 8);
#pragma GCC unroll 6
    for (int m = 0; m < MT; ++m) {
      __m256 xb = _mm256_broadcast_ss(x + m * K + k);
      acc[m][0] = _mm256_fmadd_ps(xb, w0, acc[m][0]);
      acc[m][1] = _mm256_fmadd_ps(xb, w1, acc[m][1]);
    }
  }
  alignas(32) float out[MT][kPanel];
#pragma GCC unroll 6
  for (int m = 0; m < MT; ++m) {
    _mm256_store_ps(out[m], acc[m][0]);
    _mm256_store_ps(out[m] + 8, acc[m][1]);
  }
  for (int m = 0; m < MT; ++m) {
    for (int64_t j = 0; j < cols; ++j) y[m * N + n0 + j] = out[m][j] + (b ? b[n0 + j] : 0.0f);
  }
}

template <typename W>
void run_panels(const float* x, const W* w, const float* b, float* y, int64_t M, int64_t K, int64_t N) {
  int64_t panels = (N + kPanel - 1) / kPanel;
  at::parallel_for(0, panels, 1, [&](int64_t p0, int64_t p1) {
    std::vector<float> panel(kPanel * K + 8);
    for (int64_t p = p0; p < p1; ++p) {
      int64_t n0 = p * kPanel, cols = std::min(kPanel, N - n0);
      pack_panel(w + n0 * K, K, cols, panel.data());
      int64_t m = 0;
      for (; m + 6 <= M; m += 6) panel_kernel<6>(x + m * K, panel.data(), b, y + m * N, K, N, n0, cols);
      switch (M - m) {
        case 5: panel_kernel<5>(x + m * K, panel.data(), b, y + m * N, K, N, n0, cols); break;
        case 4: panel_kernel<4>(x + m * K, panel.data(), b, y + m * N, K, N, n0, cols); break;
        case 3: panel_kernel<3>(x + m * K, panel.data(), b, y + m * N, K, N, n0, cols); break;
        case 2: panel_kernel<2>(x + m * K, panel.data(), b, y + m * N, K, N, n0, cols); break;
        case 1: panel_kernel<1>(x + m * K, panel.data(), b, y + m * N, K, N, n0, cols); break;
        default: break;
      }
    }
  });
}

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
        rows_avx2_dispatch(x + m0 * K, w + n0 * K, b, y + m0 * N, mt, K, N, n0, n1);
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
#if defined(__x86_64__)
  if (vectorized && M > kTile) {
    if (w.scalar_type() == torch::kBFloat16)
      run_panels(x2.data_ptr<float>(), reinterpret_cast<const uint16_t*>(w.data_ptr<at::BFloat16>()), b,
                 y.data_ptr<float>(), M, K, N);
    else
      run_panels(x2.data_ptr<float>(), w.data_ptr<float>(), b, y.data_ptr<float>(), M, K, N);
    return y;
  }
#endif
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

int small_matmul_threads_used(int64_t tasks) {
  std::mutex mu;
  std::set<std::thread::id> ids;
  at::parallel_for(0, tasks, 1, [&](int64_t, int64_t) {
    // Long enough that a second thread gets a chunk before the first is done with everything.
    volatile double sink = 0;
    for (int i = 0; i < 100000; ++i) sink = sink + i;
    std::lock_guard<std::mutex> lock(mu);
    ids.insert(std::this_thread::get_id());
  });
  return (int)ids.size();
}

int64_t small_matmul_max_rows(torch::ScalarType weight_dtype) {
  // MULTIREF_SMALL_MATMUL_MAX_ROWS overrides both limits (0 = never use the kernel): for tuning on other CPUs.
  static const int64_t override_rows = [] {
    const char* e = std::getenv("MULTIREF_SMALL_MATMUL_MAX_ROWS");
    return e && *e ? std::atoll(e) : -1;
  }();
  if (override_rows >= 0) return override_rows;
  return weight_dtype == torch::kBFloat16 ? 256 : 128;
}

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
