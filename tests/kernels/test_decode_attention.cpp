// The decode attention kernel against attention written out with plain tensor ops (HF's eager attention:
// repeat_kv, q k^T / sqrt(D), masked, softmax in fp32, times v), on cache-like strided views with padding.
#include <gtest/gtest.h>

#include <cmath>

#include "kernels/cpu_decode_attention.h"
#include "test_util.h"

using namespace multiref;
using namespace multiref::testing;

namespace {

torch::Tensor eager(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v,
                    const torch::Tensor& allowed) {
  int64_t R = q.size(1) / k.size(1), D = q.size(3);
  auto kr = k.repeat_interleave(R, 1), vr = v.repeat_interleave(R, 1);  // [B, H, S, D]
  auto s = torch::matmul(q.to(torch::kFloat64), kr.to(torch::kFloat64).transpose(-1, -2)) / std::sqrt((double)D);
  s = s.masked_fill(allowed.logical_not(), -INFINITY);
  return torch::matmul(torch::softmax(s, -1), vr.to(torch::kFloat64)).to(torch::kFloat32);
}

TEST(DecodeAttention, EqualsEagerAttentionOnCacheViewsWithPadding) {
  torch::manual_seed(0);
  for (auto [B, KV, R, D, S] :
       std::vector<std::array<int64_t, 5>>{{3, 2, 7, 64, 37}, {2, 1, 1, 24, 5}, {4, 2, 3, 128, 300}}) {
    int64_t cap = S + 11;  // a cache holds more positions than are filled: k and v are strided views
    auto kc = torch::randn({B, KV, cap, D}), vc = torch::randn({B, KV, cap, D});
    auto k = kc.narrow(2, 0, S), v = vc.narrow(2, 0, S);
    auto q = torch::randn({B, KV * R, 1, D}) * 2;
    auto allowed = torch::ones({B, 1, 1, S}, torch::kBool);
    for (int64_t b = 0; b < B; ++b)
      allowed[b].narrow(-1, 0, std::min<int64_t>(b * 3, S - 1)).fill_(false);  // left padding
    auto want = eager(q, k, v, allowed);
    for (bool vec : {true, false}) {
      auto got = decode_attention_kernel(q, k, v, allowed, 1.0 / std::sqrt((double)D), vec);
      ASSERT_EQ(got.sizes(), want.sizes());
      EXPECT_LT(max_abs_diff(got, want), 2e-5) << "B " << B << " R " << R << " D " << D << " S " << S << " vec " << vec;
    }
    EXPECT_TRUE(decode_attention(q, k, v, allowed, 1.0 / std::sqrt((double)D)).defined() || D % 8 != 0);
  }
}

TEST(DecodeAttention, DeclinesWhatItDoesNotHandle) {
  auto k = torch::randn({1, 1, 4, 8}), v = torch::randn({1, 1, 4, 8});
  auto allowed = torch::ones({1, 1, 1, 4}, torch::kBool);
  EXPECT_FALSE(
      decode_attention(torch::randn({1, 1, 2, 8}), k, v, torch::ones({1, 1, 2, 4}, torch::kBool), 1.0).defined())
      << "two query positions";
  EXPECT_FALSE(decode_attention(torch::randn({1, 1, 1, 8}).to(torch::kBFloat16), k, v, allowed, 1.0).defined());
  auto qg = torch::randn({1, 1, 1, 8}, torch::requires_grad());
  EXPECT_FALSE(decode_attention(qg, k, v, allowed, 1.0).defined()) << "autograd recording";
}

}  // namespace
