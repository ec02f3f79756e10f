// The batching module: every padded layout written out by hand, and the longest-first batching.
#include "model/batching.h"
#include "test_util.h"

using namespace multiref;
using namespace multiref::testing;

namespace {
torch::Tensor longs(std::vector<std::vector<int64_t>> rows) {
  std::vector<torch::Tensor> t;
  for (auto& r : rows) t.push_back(torch::tensor(r, torch::kLong));
  return torch::stack(t);
}
torch::Tensor floats(std::vector<std::vector<float>> rows) {
  std::vector<torch::Tensor> t;
  for (auto& r : rows) t.push_back(torch::tensor(r, torch::kFloat32));
  return torch::stack(t);
}
}  // namespace

TEST(Batching, PadRightAndLeft) {
  TokenRow a = {5, 6, 7}, b = {8}, e = {};
  auto r = pad_right({&a, &b, &e}, /*pad=*/9);
  EXPECT_TRUE(torch::equal(r.ids, longs({{5, 6, 7}, {8, 9, 9}, {9, 9, 9}})));
  EXPECT_TRUE(torch::equal(r.mask, longs({{1, 1, 1}, {1, 0, 0}, {0, 0, 0}})));
  EXPECT_EQ(r.tokens, 4);
  EXPECT_EQ(pad_right({&b}, 0, /*min_len=*/3).ids.size(1), 3);
  auto l = pad_left({&a, &b}, 4);
  EXPECT_TRUE(torch::equal(l.ids, longs({{0, 5, 6, 7}, {0, 0, 0, 8}})));
  EXPECT_TRUE(torch::equal(l.mask, longs({{0, 1, 1, 1}, {0, 0, 0, 1}})));
  expect_error([&] { pad_left({&a}, 2); }, {"3 tokens", "2 columns"});
}

TEST(Batching, AlignedPromptAndCompletion) {
  // Prompts end at column P-1 = 2, completions start at column P = 3: hidden P-1+t predicts completion token t.
  TokenRow p1 = {1, 2, 3}, p2 = {4}, c1 = {10}, c2 = {11, 12}, empty = {};
  auto b = pack_aligned({&p1, &p2, &p2}, {&c1, &c2, &empty});
  EXPECT_EQ(b.prompt_len, 3);
  EXPECT_TRUE(torch::equal(b.ids, longs({{1, 2, 3, 10, 0}, {0, 0, 4, 11, 12}, {0, 0, 4, 0, 0}})));
  EXPECT_TRUE(torch::equal(b.mask, longs({{1, 1, 1, 1, 0}, {0, 0, 1, 1, 1}, {0, 0, 1, 0, 0}})));
  EXPECT_TRUE(torch::equal(b.completion_mask, floats({{1, 0}, {1, 1}, {0, 0}})));
  EXPECT_EQ(b.tokens, 4 + 3 + 1);
  // At least one prompt and one completion column, even when every row is empty.
  auto z = pack_aligned({&empty}, {&empty});
  EXPECT_EQ(z.ids.sizes().vec(), (std::vector<int64_t>{1, 2}));
  expect_error([&] { pack_aligned({&p1}, {}); }, {"1 prompts", "0 completions"});
}

TEST(Batching, ContiguousCompletionBatch) {
  TokenRow p1 = {1, 2}, c1 = {3, 4}, p2 = {5}, c2 = {6}, empty = {};
  auto b = make_completion_batch({{&p1, &c1}, {&p2, &c2}, {&empty, &c2}, {&empty, &empty}}, torch::kCPU);
  EXPECT_TRUE(torch::equal(b.ids, longs({{1, 2, 3, 4}, {5, 6, 0, 0}, {6, 0, 0, 0}, {0, 0, 0, 0}})));
  EXPECT_TRUE(torch::equal(b.mask, longs({{1, 1, 1, 1}, {1, 1, 0, 0}, {1, 0, 0, 0}, {0, 0, 0, 0}})));
  // Column t predicts ids[t+1]: row 0's completion (columns 2, 3) is predicted by columns 1, 2; a completion
  // after an empty prompt has no predicting column.
  EXPECT_TRUE(torch::equal(b.completion_mask, floats({{0, 1, 1}, {1, 0, 0}, {0, 0, 0}, {0, 0, 0}})));
  EXPECT_EQ(b.tokens, 4 + 2 + 1);
}

TEST(Batching, LongestFirstBatchesAreStableAndCoverEveryIndex) {
  auto b = longest_first_batches({2, 5, 2, 7, 5, 1}, 4);
  ASSERT_EQ(b.size(), 2u);
  EXPECT_EQ(b[0], (std::vector<size_t>{3, 1, 4, 0}));  // 7, 5, 5 (input order), 2
  EXPECT_EQ(b[1], (std::vector<size_t>{2, 5}));
  EXPECT_TRUE(longest_first_batches({}, 3).empty());
  expect_error([] { longest_first_batches({1}, 0); }, {"batch_size"});
}
