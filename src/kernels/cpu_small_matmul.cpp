#include "kernels/cpu_small_matmul.h"

#include <ATen/Parallel.h>

#include <cstdlib>
#include <cstring>
#include <mutex>
#include <set>
#include <thread>
#include <vector>

#include "kernels/cpu_simd.h"
#include "kernels/matmul_dtype.h"
#include "util/common.h"

namespace multiref {

namespace {

constexpr int64_t kTile = 8;  // rows of x per pass over the weights (one AVX accumulator each)

// One weight matrix of a group sharing x: y[m, n] = sum_k x[m, k] w[n, k] + b[n], y [M, N] row-major.
template <typename W>
struct Product {
  const W* w;
  const float* b;  // or nullptr
  float* y;
  int64_t N;
};

inline float bf16_to_float(uint16_t h) {
  uint32_t bits = (uint32_t)h << 16;
  float f;
  std::memcpy(&f, &bits, sizeof f);
  return f;
}

// The value .to(bf16).to(fp32) gives (c10::BFloat16's round to nearest even): a bf16 model's outputs kept in fp32.
inline float round_to_bf16(float v) {
  uint32_t bits;
  std::memcpy(&bits, &v, sizeof bits);
  if ((bits & 0x7f800000u) == 0x7f800000u && (bits & 0x007fffffu)) return v;  // NaN stays NaN
  bits = (bits + 0x7fffu + ((bits >> 16) & 1u)) & 0xffff0000u;
  std::memcpy(&v, &bits, sizeof v);
  return v;
}

inline float finish(float v, bool round) {
  return round ? round_to_bf16(v) : v;
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
                 int64_t n1, bool rnd) {
  for (int64_t n = n0; n < n1; ++n) {
    const W* wr = w + n * K;
    for (int64_t m = 0; m < M; ++m) {
      const float* xr = x + m * K;
      float acc = 0;
      for (int64_t k = 0; k < K; ++k) acc += xr[k] * weight_at(wr, k);
      y[m * N + n] = finish(acc + (b ? b[n] : 0.0f), rnd);
    }
  }
}

#if defined(__x86_64__)
__attribute__((target("avx2,fma"))) inline __m256 load8(const float* p) {
  return _mm256_loadu_ps(p);
}
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
                                                   int64_t N, int64_t n0, int64_t n1, bool rnd) {
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
        y[m * N + n + r] = finish(s + (b ? b[n + r] : 0.0f), rnd);
      }
  }
  if constexpr (NR > 1) {
    if (n < n1) rows_avx2<W, MT, 1>(x, w + (n - n0) * K, b, y, K, N, n, n1, rnd);
  }
}

template <typename W>
void rows_avx2_dispatch(const float* x, const W* w, const float* b, float* y, int64_t M, int64_t K, int64_t N,
                        int64_t n0, int64_t n1, bool rnd) {
  // At most ~8 accumulators plus the weight registers: 16 ymm registers in all.
  switch (M) {
    case 1:
      return rows_avx2<W, 1, 4>(x, w, b, y, K, N, n0, n1, rnd);
    case 2:
      return rows_avx2<W, 2, 4>(x, w, b, y, K, N, n0, n1, rnd);
    case 3:
      return rows_avx2<W, 3, 2>(x, w, b, y, K, N, n0, n1, rnd);
    case 4:
      return rows_avx2<W, 4, 2>(x, w, b, y, K, N, n0, n1, rnd);
    case 5:
      return rows_avx2<W, 5, 1>(x, w, b, y, K, N, n0, n1, rnd);
    case 6:
      return rows_avx2<W, 6, 1>(x, w, b, y, K, N, n0, n1, rnd);
    case 7:
      return rows_avx2<W, 7, 1>(x, w, b, y, K, N, n0, n1, rnd);
    default:
      return rows_avx2<W, 8, 1>(x, w, b, y, K, N, n0, n1, rnd);
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
                                                      int64_t K, int64_t N, int64_t n0, int64_t cols, bool rnd) {
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
    for (int64_t j = 0; j < cols; ++j) y[m * N + n0 + j] = finish(out[m][j] + (b ? b[n0 + j] : 0.0f), rnd);
  }
}

// Pulls the weight rows of the next panel into L2, a share before each micro-kernel call on the current one:
// decoding streams the weights from memory, and without this the pack waits on each row's first lines (16
// short rows are more streams than the hardware prefetcher follows well). Into L2, not L1: a panel's rows
// of a long-K matrix (down_proj, 156 KB) would evict the packed panel. bench_matmul --rows 64 (weights
// streamed from memory), bf16, medians of three alternating runs (single runs vary by +-20% on this VM):
// q_proj 109 -> 129 GFLOP/s, gate_proj 106 -> 121, down_proj 138 -> 134 (long rows: the hardware
// prefetcher already follows them), lm_head 115 -> 122. In a decode profile the pack's share fell from 15%
// to 6%.
class PanelPrefetcher {
 public:
  PanelPrefetcher(const void* rows, int64_t n_rows, int64_t row_bytes, int64_t shares)
      : row_(static_cast<const char*>(rows)),
        row_bytes_(row_bytes),
        rows_left_(n_rows),
        per_share_((n_rows * ((row_bytes + 63) / 64) + shares - 1) / std::max<int64_t>(1, shares)) {}
  __attribute__((target("avx2,fma"))) void next_share() {
    for (int64_t i = 0; i < per_share_ && rows_left_ > 0; ++i) {
      _mm_prefetch(row_ + offset_, _MM_HINT_T1);
      offset_ += 64;
      if (offset_ >= row_bytes_) {  // next row
        row_ += row_bytes_;
        offset_ = 0;
        --rows_left_;
      }
    }
  }

 private:
  const char* row_;
  int64_t row_bytes_, rows_left_, per_share_, offset_ = 0;
};

// The weight rows of all products form one sequence of 16-row panels (a product's last panel may be short), split
// across threads in one parallel region: a group (q/k/v, gate/up) waits for its slowest thread once.
template <typename W>
void run_panels(const float* x, const std::vector<Product<W>>& ps, int64_t M, int64_t K, bool rnd) {
  std::vector<int64_t> first{0};  // first[j]: global index of product j's first panel
  for (const auto& pr : ps) first.push_back(first.back() + (pr.N + kPanel - 1) / kPanel);
  auto locate = [&](int64_t p, size_t j) {  // product of panel p, searching from j on
    while (p >= first[j + 1]) ++j;
    return j;
  };
  at::parallel_for(0, first.back(), 1, [&](int64_t p0, int64_t p1) {
    std::vector<float> panel(kPanel * K + 8);
    size_t j = locate(p0, 0);
    for (int64_t p = p0; p < p1; ++p) {
      j = locate(p, j);
      const auto& pr = ps[j];
      int64_t n0 = (p - first[j]) * kPanel, cols = std::min(kPanel, pr.N - n0);
      pack_panel(pr.w + n0 * K, K, cols, panel.data());
      const W* next = pr.w;
      int64_t next_rows = 0;
      if (p + 1 < p1) {
        size_t jn = locate(p + 1, j);
        int64_t nn0 = (p + 1 - first[jn]) * kPanel;
        next = ps[jn].w + nn0 * K;
        next_rows = std::min(kPanel, ps[jn].N - nn0);
      }
      PanelPrefetcher pf(next, next_rows, K * (int64_t)sizeof(W), (M + 5) / 6);
      const float* b = pr.b;
      float* y = pr.y;
      int64_t N = pr.N, m = 0;
      for (; m + 6 <= M; m += 6) {
        pf.next_share();
        panel_kernel<6>(x + m * K, panel.data(), b, y + m * N, K, N, n0, cols, rnd);
      }
      pf.next_share();
      switch (M - m) {
        case 5:
          panel_kernel<5>(x + m * K, panel.data(), b, y + m * N, K, N, n0, cols, rnd);
          break;
        case 4:
          panel_kernel<4>(x + m * K, panel.data(), b, y + m * N, K, N, n0, cols, rnd);
          break;
        case 3:
          panel_kernel<3>(x + m * K, panel.data(), b, y + m * N, K, N, n0, cols, rnd);
          break;
        case 2:
          panel_kernel<2>(x + m * K, panel.data(), b, y + m * N, K, N, n0, cols, rnd);
          break;
        case 1:
          panel_kernel<1>(x + m * K, panel.data(), b, y + m * N, K, N, n0, cols, rnd);
          break;
        default:
          break;
      }
    }
  });
}

#endif

template <typename W>
void run(const float* x, const std::vector<Product<W>>& ps, int64_t M, int64_t K, bool vectorized, bool rnd) {
  // Split the weight rows (of all products, one after the other) across threads; each thread streams its slice
  // once per tile of x rows. ~64 KB of weights per task keeps the scheduling overhead small next to the memory
  // traffic.
  int64_t total = 0;
  for (const auto& pr : ps) total += pr.N;
  int64_t grain = std::max<int64_t>(16, (64 * 1024) / std::max<int64_t>(1, K * (int64_t)sizeof(W)));
  at::parallel_for(0, total, grain, [&](int64_t g0, int64_t g1) {
    int64_t base = 0;  // global index of this product's first row
    for (const auto& pr : ps) {
      int64_t n0 = std::max<int64_t>(g0 - base, 0), n1 = std::min(g1 - base, pr.N);
      base += pr.N;
      if (n0 >= n1) continue;
      for (int64_t m0 = 0; m0 < M; m0 += kTile) {
        int64_t mt = std::min(kTile, M - m0);
#if defined(__x86_64__)
        if (vectorized) {
          rows_avx2_dispatch(x + m0 * K, pr.w + n0 * K, pr.b, pr.y + m0 * pr.N, mt, K, pr.N, n0, n1, rnd);
          continue;
        }
#endif
        rows_scalar(x + m0 * K, pr.w, pr.b, pr.y + m0 * pr.N, mt, K, pr.N, n0, n1, rnd);
      }
    }
  });
}

template <typename W>
const W* weights_of(const torch::Tensor& w) {
  if constexpr (std::is_same_v<W, uint16_t>)
    return reinterpret_cast<const uint16_t*>(w.data_ptr<at::BFloat16>());
  else
    return w.data_ptr<float>();
}

// x2 [M, K] fp32 contiguous; ws: [N_i, K] contiguous, all fp32 or all bf16; biases[i] [N_i] or undefined;
// outs[i]: fp32 [M, N_i] contiguous to write into, or undefined for a new one. Returns the outputs.
template <typename W>
std::vector<torch::Tensor> kernel_as(const torch::Tensor& x2, const std::vector<torch::Tensor>& ws,
                                     const std::vector<torch::Tensor>& biases, bool vectorized,
                                     const std::vector<torch::Tensor>& outs, bool rnd) {
  int64_t M = x2.size(0), K = x2.size(1);
  std::vector<torch::Tensor> ys, bfs;
  std::vector<Product<W>> ps;
  for (size_t i = 0; i < ws.size(); ++i) {
    int64_t N = ws[i].size(0);
    ys.push_back(outs[i].defined() ? outs[i] : torch::empty({M, N}, torch::kFloat32));
    bfs.push_back(biases[i].defined() ? biases[i].to(torch::kFloat32).contiguous() : torch::Tensor());
    ps.push_back(
        {weights_of<W>(ws[i]), bfs[i].defined() ? bfs[i].data_ptr<float>() : nullptr, ys[i].data_ptr<float>(), N});
  }
#if defined(__x86_64__)
  if (vectorized && M > kTile) {
    run_panels(x2.data_ptr<float>(), ps, M, K, rnd);
    return ys;
  }
#endif
  run(x2.data_ptr<float>(), ps, M, K, vectorized, rnd);
  return ys;
}

std::vector<torch::Tensor> kernel(const torch::Tensor& x2, const std::vector<torch::Tensor>& ws,
                                  const std::vector<torch::Tensor>& biases, bool vectorized,
                                  const std::vector<torch::Tensor>& outs, bool rnd) {
  return ws[0].scalar_type() == torch::kBFloat16 ? kernel_as<uint16_t>(x2, ws, biases, vectorized, outs, rnd)
                                                 : kernel_as<float>(x2, ws, biases, vectorized, outs, rnd);
}

bool kernel_applies(const torch::Tensor& x, const torch::Tensor& w, const torch::Tensor& bias) {
  if (!x.is_cpu() || !w.is_cpu() || w.dim() != 2 || !w.is_contiguous()) return false;
  if (w.scalar_type() != torch::kFloat32 && w.scalar_type() != torch::kBFloat16) return false;
  int64_t K = w.size(1);
  if (x.size(-1) != K || x.numel() == 0 || x.numel() / K > small_matmul_max_rows(w.scalar_type())) return false;
  if (torch::GradMode::is_enabled() &&
      (x.requires_grad() || w.requires_grad() || (bias.defined() && bias.requires_grad())))
    return false;  // the kernel has no backward
  return have_avx2_fma();
}

std::vector<int64_t> output_sizes(const torch::Tensor& x, const torch::Tensor& w) {
  auto sizes = x.sizes().vec();
  sizes.back() = w.size(0);
  return sizes;
}

// Checks `output.into` against the result's shape: [rows (folded leading dims), N] as `sizes`.
torch::Tensor output_rows(const SmallRowsOutput& output, torch::IntArrayRef sizes) {
  const auto& out = output.into;
  if (!out.defined()) return {};
  if (out.scalar_type() != torch::kFloat32 || !out.is_cpu() || !out.is_contiguous() || out.sizes() != sizes)
    fail("small_rows_linear: `into` must be a contiguous fp32 CPU tensor of shape ", sizes, ", got ", out.sizes(), " (",
         out.scalar_type(), out.is_contiguous() ? "" : ", not contiguous", ")");
  return out.view({-1, sizes.back()});
}

bool rounds(const SmallRowsOutput& output, const torch::Tensor& w) {
  return output.round_to_weight_dtype && w.scalar_type() == torch::kBFloat16;
}

}  // namespace

torch::Tensor small_rows_linear_kernel(const torch::Tensor& x, const torch::Tensor& w, const torch::Tensor& bias,
                                       bool vectorized, const SmallRowsOutput& output) {
  auto sizes = output_sizes(x, w);
  return kernel(x.reshape({-1, x.size(-1)}).to(torch::kFloat32).contiguous(), {w.contiguous()}, {bias},
                vectorized && have_avx2_fma(), {output_rows(output, sizes)}, rounds(output, w))[0]
      .view(sizes);
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
  // Against an fp32 GEMM (an upcast bf16 one too) the kernel wins up to ~128-256 rows; against a native bf16 GEMM
  // on a CPU with bf16 instructions (3.5x the upcast's rate) only for decoding-sized batches.
  if (weight_dtype == torch::kBFloat16) return bf16_matmul() == Bf16Matmul::Native ? 16 : 256;
  return 128;
}

torch::Tensor small_rows_linear(const torch::Tensor& x, const torch::Tensor& w, const torch::Tensor& bias,
                                const SmallRowsOutput& output) {
  if (!kernel_applies(x, w, bias)) return {};
  auto sizes = output_sizes(x, w);
  return kernel(x.reshape({-1, w.size(1)}).to(torch::kFloat32).contiguous(), {w}, {bias}, true,
                {output_rows(output, sizes)}, rounds(output, w))[0]
      .view(sizes);
}

std::vector<torch::Tensor> small_rows_linear_group(const torch::Tensor& x, const std::vector<torch::Tensor>& ws,
                                                   const std::vector<torch::Tensor>& biases) {
  if (ws.empty() || biases.size() != ws.size())
    fail("small_rows_linear_group: one bias (or undefined tensor) per weight expected, got ", biases.size(), " for ",
         ws.size(), " weights");
  for (size_t i = 0; i < ws.size(); ++i)
    if (!kernel_applies(x, ws[i], biases[i]) || ws[i].scalar_type() != ws[0].scalar_type()) return {};
  auto ys = kernel(x.reshape({-1, x.size(-1)}).to(torch::kFloat32).contiguous(), ws, biases, true,
                   std::vector<torch::Tensor>(ws.size()), false);
  for (size_t i = 0; i < ws.size(); ++i) ys[i] = ys[i].view(output_sizes(x, ws[i]));
  return ys;
}

}  // namespace multiref
