// Cutting a token sequence at its front: prompts and conversations lose their beginning, never their end (the
// generation prompt, the response the reward reads at the last token).
#pragma once
#include <cstdint>
#include <vector>

namespace multiref {

// Keeps the last n elements of v; returns whether anything was cut.
template <typename T>
bool keep_last(std::vector<T>& v, int64_t n) {
  if (n < 0 || (int64_t)v.size() <= n) return false;
  v.erase(v.begin(), v.end() - n);
  return true;
}

}  // namespace multiref
