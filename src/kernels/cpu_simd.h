// What the CPU kernels (cpu_small_matmul, cpu_decode_attention) share: the run-time AVX2/FMA check and the
// horizontal sum of an AVX register. Their translation units are built without -mavx2 (the binary runs on any
// x86-64), so vector code is compiled per function with target attributes and taken only after the check.
#pragma once

#if defined(__x86_64__)
#include <immintrin.h>
#endif

namespace multiref {

inline bool have_avx2_fma() {
#if defined(__x86_64__)
  static const bool ok = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
  return ok;
#else
  return false;
#endif
}

#if defined(__x86_64__)
__attribute__((target("avx2,fma"))) inline float hsum(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}
#endif

}  // namespace multiref
