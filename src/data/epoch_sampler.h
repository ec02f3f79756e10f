// The order in which a trainer visits its n training items: positions 0, 1, 2, ... of an endless stream, epoch
// e = pos / n visiting a permutation of 0..n-1 drawn from (seed, e). Position is the whole state, so a run resumed
// at position p sees exactly the items the uninterrupted run would have. GRPO draws prompts from it, DPO pairs.
#pragma once
#include <cstdint>
#include <vector>

namespace multiref {

class EpochSampler {
 public:
  EpochSampler(int64_t n, uint64_t seed);
  // The item at stream position `pos` (>= 0).
  size_t at(int64_t pos);
  // Items at positions from, from + 1, ..., from + count - 1.
  std::vector<size_t> take(int64_t from, int64_t count);

 private:
  int64_t n_;
  uint64_t seed_;
  int64_t epoch_ = -1;  // the epoch whose permutation perm_ holds
  std::vector<size_t> perm_;
};

}  // namespace multiref
