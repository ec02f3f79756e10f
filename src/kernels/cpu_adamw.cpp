#include "kernels/cpu_adamw.h"

#include <ATen/Parallel.h>
#include <c10/util/BFloat16.h>

#include <cmath>
#include <cstdlib>
#include <cstring>

#include "kernels/cpu_simd.h"

namespace multiref {

namespace {

bool turned_off() {
  static const bool off = [] {
    const char* e = std::getenv("MULTIREF_ADAMW");
    return e && std::strcmp(e, "reference") == 0;
  }();
  return off;
}

// The oracle's scalars, rounded to float as ATen rounds a double scalar for a float tensor op.
struct Coef {
  float b1, c1, b2, c2, decay, bc2, eps, step;
  explicit Coef(const AdamWUpdate& u)
      : b1((float)u.beta1),
        c1((float)(1 - u.beta1)),
        b2((float)u.beta2),
        c2((float)(1 - u.beta2)),
        decay((float)(1 - u.lr * u.weight_decay)),
        bc2((float)u.bias_correction2),
        eps((float)u.eps),
        step((float)(-u.lr / u.bias_correction1)) {}
};

// Elements [b, e) one at a time: the tails, and every element where AVX2 is missing.
template <typename G, typename P>
void update_scalar(P* param, const G* grad, float* w, float* m, float* v, int64_t b, int64_t e, const Coef& k,
                   bool round_out) {
  for (int64_t i = b; i < e; ++i) {
    float g = (float)grad[i];
    float mi = m[i] * k.b1 + k.c1 * g;
    float vi = v[i] * k.b2 + k.c2 * (g * g);
    float wi = w[i] * k.decay;  // decay 1 without weight decay: exact
    float denom = std::sqrt(vi / k.bc2) + k.eps;
    wi = wi + k.step * (mi / denom);
    m[i] = mi;
    v[i] = vi;
    w[i] = wi;
    if (round_out) param[i] = (P)wi;
  }
}

#if defined(__x86_64__)
__attribute__((target("avx2,fma"))) inline __m256 load8(const float* p) {
  return _mm256_loadu_ps(p);
}
__attribute__((target("avx2,fma"))) inline __m256 load8(const c10::BFloat16* p) {
  __m128i h = _mm_loadu_si128((const __m128i*)p);
  return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
}
// fp32 -> bf16, round to nearest even, NaN -> 0x7FC0: what c10::BFloat16(float) does.
__attribute__((target("avx2,fma"))) inline void store8_bf16(c10::BFloat16* p, __m256 x) {
  __m256i u = _mm256_castps_si256(x);
  __m256i lsb = _mm256_and_si256(_mm256_srli_epi32(u, 16), _mm256_set1_epi32(1));
  __m256i r = _mm256_srli_epi32(_mm256_add_epi32(u, _mm256_add_epi32(lsb, _mm256_set1_epi32(0x7FFF))), 16);
  __m256i nan = _mm256_castps_si256(_mm256_cmp_ps(x, x, _CMP_UNORD_Q));
  r = _mm256_blendv_epi8(r, _mm256_set1_epi32(0x7FC0), nan);
  __m256i packed = _mm256_permute4x64_epi64(_mm256_packus_epi32(r, r), 0xD8);
  _mm_storeu_si128((__m128i*)p, _mm256_castsi256_si128(packed));
}
inline void store8_bf16(float*, __m256) {}

template <typename G, typename P>
__attribute__((target("avx2,fma"))) void update_avx2(P* param, const G* grad, float* w, float* m, float* v, int64_t b,
                                                     int64_t e, const Coef& k, bool round_out) {
  const __m256 b1 = _mm256_set1_ps(k.b1), c1 = _mm256_set1_ps(k.c1), b2 = _mm256_set1_ps(k.b2),
               c2 = _mm256_set1_ps(k.c2), decay = _mm256_set1_ps(k.decay), bc2 = _mm256_set1_ps(k.bc2),
               eps = _mm256_set1_ps(k.eps), step = _mm256_set1_ps(k.step);
  int64_t i = b;
  for (; i + 8 <= e; i += 8) {
    __m256 g = load8(grad + i);
    __m256 mi = _mm256_add_ps(_mm256_mul_ps(_mm256_loadu_ps(m + i), b1), _mm256_mul_ps(c1, g));
    __m256 vi = _mm256_add_ps(_mm256_mul_ps(_mm256_loadu_ps(v + i), b2), _mm256_mul_ps(c2, _mm256_mul_ps(g, g)));
    __m256 wi = _mm256_mul_ps(_mm256_loadu_ps(w + i), decay);
    __m256 denom = _mm256_add_ps(_mm256_sqrt_ps(_mm256_div_ps(vi, bc2)), eps);
    wi = _mm256_add_ps(wi, _mm256_mul_ps(step, _mm256_div_ps(mi, denom)));
    _mm256_storeu_ps(m + i, mi);
    _mm256_storeu_ps(v + i, vi);
    _mm256_storeu_ps(w + i, wi);
    if (round_out) store8_bf16(param + i, wi);
  }
  update_scalar(param, grad, w, m, v, i, e, k, round_out);
}
#endif

template <typename G, typename P>
void update(P* param, const G* grad, float* w, float* m, float* v, int64_t n, const AdamWUpdate& u, bool round_out) {
  const Coef k(u);
  at::parallel_for(0, n, 1 << 16, [&](int64_t b, int64_t e) {
#if defined(__x86_64__)
    if (u.simd && have_avx2_fma()) return update_avx2(param, grad, w, m, v, b, e, k, round_out);
#endif
    update_scalar(param, grad, w, m, v, b, e, k, round_out);
  });
}

}  // namespace

void reference_adamw_step(const torch::Tensor& param, const torch::Tensor& grad, const torch::Tensor& master,
                          const torch::Tensor& m, const torch::Tensor& v, const AdamWUpdate& u) {
  torch::NoGradGuard ng;
  auto g = grad.to(torch::kFloat32);
  auto w = master.defined() ? master : param;
  m.mul_(u.beta1).add_(g, 1 - u.beta1);
  v.mul_(u.beta2).addcmul_(g, g, 1 - u.beta2);
  if (u.weight_decay != 0) w.mul_(1 - u.lr * u.weight_decay);  // decoupled decay (torch.optim.AdamW)
  auto denom = (v / u.bias_correction2).sqrt_().add_(u.eps);
  w.addcdiv_(m, denom, -u.lr / u.bias_correction1);
  if (master.defined()) param.copy_(master);
}

bool fused_adamw_applies(const torch::Tensor& param, const torch::Tensor& grad, const torch::Tensor& master,
                         const torch::Tensor& m, const torch::Tensor& v) {
  if (turned_off() || !param.device().is_cpu() || !grad.defined() || !grad.device().is_cpu()) return false;
  auto f32 = [&](const torch::Tensor& t) {
    return t.defined() && t.scalar_type() == torch::kFloat32 && t.is_contiguous() && t.numel() == param.numel();
  };
  if (!f32(m) || !f32(v) || !param.is_contiguous() || !grad.is_contiguous() || grad.numel() != param.numel())
    return false;
  if (grad.scalar_type() != torch::kFloat32 && grad.scalar_type() != torch::kBFloat16) return false;
  if (param.scalar_type() == torch::kFloat32) return !master.defined();
  return param.scalar_type() == torch::kBFloat16 && f32(master);
}

void fused_adamw_step(const torch::Tensor& param, const torch::Tensor& grad, const torch::Tensor& master,
                      const torch::Tensor& m, const torch::Tensor& v, const AdamWUpdate& u) {
  int64_t n = param.numel();
  float* mp = m.data_ptr<float>();
  float* vp = v.data_ptr<float>();
  bool bf16_param = param.scalar_type() == torch::kBFloat16;
  float* w = bf16_param ? master.data_ptr<float>() : param.data_ptr<float>();
  if (grad.scalar_type() == torch::kBFloat16) {
    const auto* g = grad.data_ptr<c10::BFloat16>();
    if (bf16_param)
      update(param.data_ptr<c10::BFloat16>(), g, w, mp, vp, n, u, true);
    else
      update(w, g, w, mp, vp, n, u, false);
  } else {
    const float* g = grad.data_ptr<float>();
    if (bf16_param)
      update(param.data_ptr<c10::BFloat16>(), g, w, mp, vp, n, u, true);
    else
      update(w, g, w, mp, vp, n, u, false);
  }
}

}  // namespace multiref
