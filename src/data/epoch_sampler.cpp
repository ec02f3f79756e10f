#include "data/epoch_sampler.h"

#include <algorithm>
#include <numeric>
#include <random>

#include "util/common.h"

namespace multiref {

EpochSampler::EpochSampler(int64_t n, uint64_t seed) : n_(n), seed_(seed) {
  if (n < 1) fail("EpochSampler: no items to sample from");
}

size_t EpochSampler::at(int64_t pos) {
  int64_t epoch = pos / n_;
  if (epoch != epoch_) {
    perm_.resize((size_t)n_);
    std::iota(perm_.begin(), perm_.end(), size_t{0});
    std::mt19937_64 rng(stream_seed(seed_, epoch, 0));
    std::shuffle(perm_.begin(), perm_.end(), rng);
    epoch_ = epoch;
  }
  return perm_[(size_t)(pos % n_)];
}

std::vector<size_t> EpochSampler::take(int64_t from, int64_t count) {
  std::vector<size_t> out;
  out.reserve((size_t)std::max<int64_t>(count, 0));
  for (int64_t p = from; p < from + count; ++p) out.push_back(at(p));
  return out;
}

}  // namespace multiref
