#include "kernels/cpu_decode_attention.h"

#include <ATen/Parallel.h>

#include <cmath>
#include <limits>
#include <vector>

#include "kernels/cpu_simd.h"

namespace multiref {

namespace {

// scores[r * S + s] = q_r . k_s for every allowed s (others untouched).
void dot_scalar(const float* q, const float* k, int64_t sk, const bool* ok, float* scores, int64_t R, int64_t S,
                int64_t D) {
  for (int64_t s = 0; s < S; ++s) {
    if (!ok[s]) continue;
    const float* ks = k + s * sk;
    for (int64_t r = 0; r < R; ++r) {
      float acc = 0;
      for (int64_t d = 0; d < D; ++d) acc += q[r * D + d] * ks[d];
      scores[r * S + s] = acc;
    }
  }
}

// out[r] += sum_s p[r * S + s] v_s.
void pv_scalar(const float* p, const float* v, int64_t sv, const bool* ok, float* out, int64_t R, int64_t S,
               int64_t D) {
  for (int64_t s = 0; s < S; ++s) {
    if (!ok[s]) continue;
    const float* vs = v + s * sv;
    for (int64_t r = 0; r < R; ++r)
      for (int64_t d = 0; d < D; ++d) out[r * D + d] += p[r * S + s] * vs[d];
  }
}

#if defined(__x86_64__)

__attribute__((target("avx2,fma"))) void dot_avx2(const float* q, const float* k, int64_t sk, const bool* ok,
                                                  float* scores, int64_t R, int64_t S, int64_t D) {
  for (int64_t s = 0; s < S; ++s) {
    if (!ok[s]) continue;
    const float* ks = k + s * sk;
    for (int64_t r = 0; r < R; ++r) {
      const float* qr = q + r * D;
      __m256 a0 = _mm256_setzero_ps(), a1 = _mm256_setzero_ps();
      int64_t d = 0;
      for (; d + 16 <= D; d += 16) {
        a0 = _mm256_fmadd_ps(_mm256_loadu_ps(qr + d), _mm256_loadu_ps(ks + d), a0);
        a1 = _mm256_fmadd_ps(_mm256_loadu_ps(qr + d + 8), _mm256_loadu_ps(ks + d + 8), a1);
      }
      for (; d < D; d += 8) a0 = _mm256_fmadd_ps(_mm256_loadu_ps(qr + d), _mm256_loadu_ps(ks + d), a0);
      scores[r * S + s] = hsum(_mm256_add_ps(a0, a1));
    }
  }
}

__attribute__((target("avx2,fma"))) void pv_avx2(const float* p, const float* v, int64_t sv, const bool* ok, float* out,
                                                 int64_t R, int64_t S, int64_t D) {
  // One query head at a time keeps its D / 8 accumulators in registers; the block of values it reads again
  // for the next head is in L1/L2 (S x D fp32: 64 KB at S = 256, D = 64).
  for (int64_t r = 0; r < R; ++r) {
    for (int64_t d0 = 0; d0 < D; d0 += 64) {
      int64_t n = std::min<int64_t>(64, D - d0) / 8;
      __m256 acc[8];
      for (int i = 0; i < 8; ++i) acc[i] = _mm256_setzero_ps();
      for (int64_t s = 0; s < S; ++s) {
        if (!ok[s]) continue;
        __m256 ps = _mm256_broadcast_ss(p + r * S + s);
        const float* vs = v + s * sv + d0;
        for (int i = 0; i < n; ++i) acc[i] = _mm256_fmadd_ps(ps, _mm256_loadu_ps(vs + 8 * i), acc[i]);
      }
      for (int i = 0; i < n; ++i) _mm256_storeu_ps(out + r * D + d0 + 8 * i, acc[i]);
    }
  }
}
#endif

}  // namespace

torch::Tensor decode_attention_kernel(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v,
                                      const torch::Tensor& allowed, double scale, bool vectorized) {
  int64_t B = k.size(0), KV = k.size(1), S = k.size(2), D = k.size(3), H = q.size(1), R = H / KV;
  auto qc = q.contiguous();                                         // [B, H, 1, D]
  auto ok = allowed.reshape({B, S}).to(torch::kBool).contiguous();  // [B, S]
  auto out = torch::zeros({B, H, 1, D}, q.options());
  const float *qp = qc.data_ptr<float>(), *kp = k.data_ptr<float>(), *vp = v.data_ptr<float>();
  const bool* okp = ok.data_ptr<bool>();
  float* op = out.data_ptr<float>();
  int64_t kb = k.stride(0), kk = k.stride(1), ks = k.stride(2), vb = v.stride(0), vk = v.stride(1), vs = v.stride(2);
  bool vec = vectorized && have_avx2_fma() && D % 8 == 0;
  float sc = (float)scale;
  at::parallel_for(0, B * KV, 1, [&](int64_t t0, int64_t t1) {
    std::vector<float> scores((size_t)(R * S));
    for (int64_t t = t0; t < t1; ++t) {
      int64_t b = t / KV, h = t % KV;
      const float* q_t = qp + (b * H + h * R) * D;  // the R query heads of KV head h, [R, D]
      const float *k_t = kp + b * kb + h * kk, *v_t = vp + b * vb + h * vk;
      const bool* ok_b = okp + b * S;
      float* o_t = op + (b * H + h * R) * D;
#if defined(__x86_64__)
      if (vec)
        dot_avx2(q_t, k_t, ks, ok_b, scores.data(), R, S, D);
      else
#endif
        dot_scalar(q_t, k_t, ks, ok_b, scores.data(), R, S, D);
      // Softmax over the allowed positions, in fp32 (HF's eager attention). Every row has one allowed position
      // at least: the new token attends to itself.
      for (int64_t r = 0; r < R; ++r) {
        float* row = scores.data() + r * S;
        float mx = -std::numeric_limits<float>::infinity();
        for (int64_t s = 0; s < S; ++s)
          if (ok_b[s]) mx = std::max(mx, row[s] * sc);
        float sum = 0;
        for (int64_t s = 0; s < S; ++s) {
          row[s] = ok_b[s] ? std::exp(row[s] * sc - mx) : 0.0f;
          sum += row[s];
        }
        float inv = 1.0f / sum;
        for (int64_t s = 0; s < S; ++s) row[s] *= inv;
      }
#if defined(__x86_64__)
      if (vec) {
        pv_avx2(scores.data(), v_t, vs, ok_b, o_t, R, S, D);
        continue;
      }
#endif
      pv_scalar(scores.data(), v_t, vs, ok_b, o_t, R, S, D);
    }
  });
  return out;
}

torch::Tensor decode_attention(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v,
                               const torch::Tensor& allowed, double scale) {
  for (auto* t : {&q, &k, &v})
    if (!t->is_cpu() || t->scalar_type() != torch::kFloat32 || t->dim() != 4) return {};
  if (q.size(2) != 1 || k.size(3) % 8 != 0 || k.stride(3) != 1 || v.stride(3) != 1 || !have_avx2_fma()) return {};
  if (q.size(1) % k.size(1) != 0 || allowed.numel() != k.size(0) * k.size(2)) return {};
  if (torch::GradMode::is_enabled() && (q.requires_grad() || k.requires_grad() || v.requires_grad())) return {};
  return decode_attention_kernel(q, k, v, allowed, scale, true);
}

}  // namespace multiref
