// The few-rows CPU matmul (decoding's linear layers) against torch::linear, fp32 and bf16 weights, vectorized and
// scalar, with tails in K and in the row tiles; and when it declines to run.
#include <thread>

#include "kernels/cpu_small_matmul.h"
#include "test_util.h"

using namespace multiref;
using namespace multiref::testing;

TEST(SmallMatmul, EqualsTorchLinear) {
  torch::manual_seed(0);
  for (auto dt : {torch::kFloat32, torch::kBFloat16})
    for (int64_t M : {1, 3, 8, 9, 16, 23, 64})
      for (int64_t K : {8, 67, 896})
        for (int64_t N : {5, 16, 300}) {
          auto x = torch::randn({M, K});
          auto w = torch::randn({N, K}).to(dt);
          auto b = torch::randn({N}).to(dt);
          auto want = torch::linear(x.to(torch::kFloat64), w.to(torch::kFloat64), b.to(torch::kFloat64));
          for (bool vec : {true, false}) {
            auto got = small_rows_linear_kernel(x, w, b, vec);
            EXPECT_LT(max_abs_diff(got, want), 2e-5 * std::sqrt((double)K) * 4)
                << "dtype " << dt << " M " << M << " K " << K << " N " << N << (vec ? " avx2" : " scalar");
          }
          auto nb = small_rows_linear_kernel(x, w, torch::Tensor());
          EXPECT_LT(max_abs_diff(nb, torch::linear(x.to(torch::kFloat64), w.to(torch::kFloat64))),
                    2e-5 * std::sqrt((double)K) * 4);
        }
}

TEST(SmallMatmul, KeepsLeadingShapesAndDeclinesWhereItDoesNotApply) {
  auto w = torch::randn({7, 32});
  auto x = torch::randn({2, 1, 32});
  auto y = small_rows_linear(x, w, torch::Tensor());
  if (!y.defined()) GTEST_SKIP() << "no AVX2/FMA on this processor: the BLAS path is used";
  EXPECT_EQ(y.sizes(), torch::IntArrayRef({2, 1, 7}));
  EXPECT_LT(max_abs_diff(y, torch::linear(x, w)), 1e-5);
  EXPECT_FALSE(small_rows_linear(torch::randn({small_matmul_max_rows(torch::kFloat32) + 1, 32}), w, {}).defined())
      << "too many rows";
  EXPECT_FALSE(small_rows_linear(x, w.to(torch::kFloat64), {}).defined()) << "fp64 weights";
  auto wg = w.clone().requires_grad_(true);
  EXPECT_FALSE(small_rows_linear(x, wg, {}).defined()) << "autograd needs the differentiable path";
  {
    torch::NoGradGuard ng;
    EXPECT_TRUE(small_rows_linear(x, wg, {}).defined()) << "no autograd: fine";
  }
  EXPECT_FALSE(small_rows_linear(x, w.t().contiguous().t(), {}).defined()) << "non-contiguous weights";
}

TEST(SmallMatmul, RunsOnEveryThread) {
  // at::parallel_for is inlined into our code; built without -fopenmp it silently ran on one thread and decoding
  // used half the machine (CMakeLists.txt adds the flag).
  if (std::thread::hardware_concurrency() < 2) GTEST_SKIP() << "one core here";
  int before = torch::get_num_threads();  // test_main keeps tests to one thread
  torch::set_num_threads(2);
  int used = small_matmul_threads_used();
  torch::set_num_threads(before);
  EXPECT_EQ(used, 2);
}

TEST(SmallMatmul, WritesIntoTheGivenBufferAndRoundsAsTheBf16Conversion) {
  // Decoding's logits: written into a reused buffer, and for a bf16 head rounded in the store. The rounding's
  // oracle is torch's own fp32 -> bf16 conversion of the unrounded result.
  torch::manual_seed(1);
  for (auto dt : {torch::kBFloat16, torch::kFloat32})
    for (int64_t M : {1, 5, 9, 64})
      for (int64_t K : {67, 896})
        for (bool vec : {true, false}) {
          auto x = torch::randn({M, K});
          auto w = torch::randn({300, K}).to(dt);
          auto b = torch::randn({300}).to(dt);
          auto plain = small_rows_linear_kernel(x, w, b, vec);
          auto buf = torch::full({M, 300}, std::nanf(""));
          auto got = small_rows_linear_kernel(x, w, b, vec, {buf, /*round_to_weight_dtype=*/true});
          std::string what = std::string(dt == torch::kBFloat16 ? "bf16" : "fp32") + " M " + std::to_string(M) + " K " +
                             std::to_string(K) + (vec ? " avx2" : " scalar");
          EXPECT_EQ(got.data_ptr(), buf.data_ptr()) << what;
          auto want = dt == torch::kBFloat16 ? plain.to(torch::kBFloat16).to(torch::kFloat32) : plain;
          EXPECT_TRUE(torch::equal(buf, want)) << what << ": max diff " << max_abs_diff(buf, want);
          if (dt == torch::kBFloat16) {
            EXPECT_FALSE(torch::equal(buf, plain)) << what << ": nothing was rounded";
          }
        }
}

TEST(SmallMatmul, RoundingHandlesTiesOverflowAndSubnormals) {
  // y = x I with bf16 identity weights is x exactly, so the output is x's rounding: ties to even (1 + 2^-8
  // lies halfway between bf16 neighbours 1 and 1 + 2^-7), overflow to infinity, subnormals, signs.
  std::vector<float> v = {1.0f + 0x1p-8f,    1.0f + 3 * 0x1p-8f,
                          -(1.0f + 0x1p-8f), 1.0f + 0x1p-8f + 0x1p-20f,
                          3.4e38f,           -3.4e38f,
                          3.38e38f,          1e-40f,
                          -3e-39f,           0.0f,
                          123.456f,          0x1p-126f};
  int64_t K = (int64_t)v.size();
  auto x = torch::diag(torch::tensor(v));  // row i: v[i] at column i
  auto w = torch::eye(K).to(torch::kBFloat16);
  auto want = x.to(torch::kBFloat16).to(torch::kFloat32);
  for (bool vec : {true, false})
    for (int64_t rows : {K, (int64_t)4}) {  // the panel path (more than 8 rows) and the row-tile path
      auto xs = x.narrow(0, 0, rows);
      auto got = small_rows_linear_kernel(xs, w, torch::Tensor(), vec, {torch::empty({rows, K}), true});
      EXPECT_TRUE(torch::equal(got, want.narrow(0, 0, rows))) << (vec ? "avx2" : "scalar") << " rows " << rows << "\n"
                                                              << got.diag() << "\n"
                                                              << want.diag();
    }
  EXPECT_TRUE(std::isinf(want[4][4].item<float>())) << "the oracle itself: 3.4e38 overflows bf16";
}

TEST(SmallMatmul, IntoMustFitTheResult) {
  auto w = torch::randn({7, 32});
  auto x = torch::randn({3, 32});
  if (!small_rows_linear(x, w, {}).defined()) GTEST_SKIP() << "no AVX2/FMA on this processor";
  expect_error([&] { small_rows_linear(x, w, {}, {torch::empty({3, 8})}); }, {"`into`", "[3, 7]", "[3, 8]"});
  expect_error([&] { small_rows_linear(x, w, {}, {torch::empty({3, 7}, torch::kFloat64)}); }, {"fp32"});
  expect_error([&] { small_rows_linear(x, w, {}, {torch::empty({7, 3}).t()}); }, {"not contiguous"});
}

TEST(SmallMatmul, GroupEqualsOneCallPerWeight) {
  // q/k/v and gate/up go through one call; each output must be what its own call gives, bit for bit (same
  // arithmetic per element), on both kernel paths, with panels and row splits crossing matrix boundaries.
  torch::manual_seed(2);
  for (auto dt : {torch::kFloat32, torch::kBFloat16})
    for (int64_t M : {1, 3, 9, 64})
      for (int64_t K : {67, 896}) {
        auto x = torch::randn({M, K});
        std::vector<torch::Tensor> ws, bs;
        for (int64_t N : {5, 300, 16, 33}) {
          ws.push_back(torch::randn({N, K}).to(dt));
          bs.push_back(N == 16 ? torch::Tensor() : torch::randn({N}).to(dt));
        }
        auto ys = small_rows_linear_group(x, ws, bs);
        if (ys.empty()) GTEST_SKIP() << "no AVX2/FMA on this processor";
        ASSERT_EQ(ys.size(), ws.size());
        for (size_t i = 0; i < ws.size(); ++i) {
          std::string what = std::string(dt == torch::kBFloat16 ? "bf16" : "fp32") + " M " + std::to_string(M) + " K " +
                             std::to_string(K) + " product " + std::to_string(i);
          EXPECT_TRUE(torch::equal(ys[i], small_rows_linear(x, ws[i], bs[i]))) << what;
          auto want = torch::linear(x.to(torch::kFloat64), ws[i].to(torch::kFloat64),
                                    bs[i].defined() ? bs[i].to(torch::kFloat64) : torch::Tensor());
          EXPECT_LT(max_abs_diff(ys[i], want), 2e-5 * std::sqrt((double)K) * 4) << what;
        }
      }
}

TEST(SmallMatmul, GroupDeclinesUnlessEveryProductQualifies) {
  auto x = torch::randn({2, 1, 32});
  auto w = torch::randn({7, 32});
  auto ys = small_rows_linear_group(x, {w, w}, {{}, {}});
  if (ys.empty()) GTEST_SKIP() << "no AVX2/FMA on this processor";
  EXPECT_EQ(ys[1].sizes(), torch::IntArrayRef({2, 1, 7})) << "leading dimensions kept";
  EXPECT_TRUE(small_rows_linear_group(x, {w, w.to(torch::kBFloat16)}, {{}, {}}).empty()) << "mixed dtypes";
  EXPECT_TRUE(small_rows_linear_group(x, {w, w.to(torch::kFloat64)}, {{}, {}}).empty()) << "an fp64 weight";
  EXPECT_TRUE(small_rows_linear_group(x, {w, torch::randn({7, 31})}, {{}, {}}).empty()) << "a weight of other K";
  expect_error([&] { small_rows_linear_group(x, {w, w}, {{}}); }, {"one bias", "1 for 2 weights"});
}
