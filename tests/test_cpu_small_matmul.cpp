// The few-rows CPU matmul (decoding's linear layers) against torch::linear, fp32 and bf16 weights, vectorized and
// scalar, with tails in K and in the row tiles; and when it declines to run.
#include "cpu_small_matmul.h"

#include <thread>

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
          EXPECT_LT(max_abs_diff(nb, torch::linear(x.to(torch::kFloat64), w.to(torch::kFloat64))), 2e-5 * std::sqrt((double)K) * 4);
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
