// The epoch sampler both trainers draw from: every epoch a permutation, the stream a pure function of the position
// (so resuming anywhere sees the same items), and the same order as the trainers' former per-position reshuffle.
#include <gtest/gtest.h>

#include <algorithm>
#include <numeric>
#include <random>
#include <set>

#include "data/epoch_sampler.h"
#include "test_util_core.h"
#include "util/common.h"

using namespace multiref;
using namespace multiref::testing;

namespace {
// The order the GRPO and DPO trainers drew before the sampler existed (GRPO rebuilt and reshuffled this for every
// prompt): position p is element p % n of the permutation of epoch p / n, shuffled by mt19937_64(stream_seed(seed,
// epoch, 0)). Written out independently of EpochSampler, as the oracle of "nothing changes".
size_t former_order(int64_t n, uint64_t seed, int64_t pos) {
  std::vector<size_t> perm((size_t)n);
  for (size_t i = 0; i < perm.size(); ++i) perm[i] = i;
  std::mt19937_64 rng(stream_seed(seed, pos / n, 0));
  std::shuffle(perm.begin(), perm.end(), rng);
  return perm[(size_t)(pos % n)];
}
}  // namespace

TEST(EpochSampler, EveryEpochIsAPermutationAndEpochsDiffer) {
  EpochSampler s(10, 42);
  auto a = s.take(0, 10), b = s.take(10, 10), c = s.take(20, 10);
  for (auto* e : {&a, &b, &c}) {
    std::vector<size_t> sorted = *e;
    std::sort(sorted.begin(), sorted.end());
    std::vector<size_t> want(10);
    std::iota(want.begin(), want.end(), size_t{0});
    EXPECT_EQ(sorted, want);
  }
  EXPECT_NE(a, b);
  EXPECT_NE(b, c);
}

TEST(EpochSampler, IsAPureFunctionOfPositionAndMatchesTheFormerOrder) {
  for (int64_t n : {1, 3, 7, 16}) {
    EpochSampler s(n, 7);
    std::vector<size_t> forward;
    for (int64_t p = 0; p < 5 * n + 2; ++p) forward.push_back(s.at(p));
    // Random access (a resumed run starts anywhere; crossing epochs backwards rebuilds the permutation).
    EpochSampler r(n, 7);
    for (int64_t p = 5 * n + 1; p >= 0; p -= 2) EXPECT_EQ(r.at(p), forward[(size_t)p]) << n << " " << p;
    for (int64_t p = 0; p < 5 * n + 2; ++p) EXPECT_EQ(forward[(size_t)p], former_order(n, 7, p)) << n << " " << p;
    EXPECT_EQ(s.take(n - 1, 3),
              (std::vector<size_t>{forward[(size_t)n - 1], forward[(size_t)n], forward[(size_t)n + 1]}));
  }
  EXPECT_NE(EpochSampler(50, 1).take(0, 50), EpochSampler(50, 2).take(0, 50)) << "the seed matters";
}

TEST(EpochSampler, NeedsItems) {
  expect_error([] { EpochSampler(0, 1); }, {"no items"});
}
