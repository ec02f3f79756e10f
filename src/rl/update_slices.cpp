#include "rl/update_slices.h"

#include <algorithm>

#include "util/common.h"

namespace multiref {

std::vector<RowSlice> plan_update_slices(const std::vector<int64_t>& prompt_lengths,
                                         const std::vector<int64_t>& completion_lengths, int64_t P, int64_t C,
                                         int64_t from, int64_t n, int64_t budget) {
  if (from < 0 || n < 1 || (size_t)(from + n) > prompt_lengths.size() ||
      prompt_lengths.size() != completion_lengths.size())
    fail("plan_update_slices: rows [", from, ", ", from + n, ") of ", prompt_lengths.size(), " prompt and ",
         completion_lengths.size(), " completion lengths");
  std::vector<RowSlice> out;
  RowSlice cur;
  int64_t longest_prompt = 0;
  auto close = [&] {
    if (cur.n > 0) out.push_back(cur);
  };
  for (int64_t i = from; i < from + n; ++i) {
    int64_t p = std::clamp<int64_t>(prompt_lengths[(size_t)i], 1, P);
    int64_t c = std::clamp<int64_t>(completion_lengths[(size_t)i], 1, C);
    int64_t lp = std::max(longest_prompt, p), lc = std::max(cur.completion, c);
    if (cur.n > 0 && budget > 0 && (cur.n + 1) * (lp + lc) > budget) {
      close();
      cur = RowSlice();
      cur.from = i;
      lp = p;
      lc = c;
    } else if (cur.n == 0) {
      cur.from = i;
    }
    ++cur.n;
    longest_prompt = lp;
    cur.left = P - lp;
    cur.completion = lc;
  }
  close();
  return out;
}

}  // namespace multiref
