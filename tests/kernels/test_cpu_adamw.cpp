// The fused CPU AdamW update against its tensor-op oracle: fp32 parameters, bf16 parameters with an fp32 master
// copy, bf16 and fp32 gradients, with and without weight decay, over several steps and sizes that do not divide
// the vector width or the parallel grain.
#include "kernels/cpu_adamw.h"
#include "test_util.h"

using namespace multiref;

namespace {
struct State {
  torch::Tensor param, master, m, v;
};
State make(int64_t n, torch::ScalarType dtype, uint64_t seed) {
  torch::manual_seed(seed);
  State s;
  auto w = torch::randn({n}) * 0.05;
  s.param = w.to(dtype);
  if (dtype != torch::kFloat32) s.master = w.clone();
  s.m = torch::zeros({n});
  s.v = torch::zeros({n});
  return s;
}
State copy(const State& s) {
  return {s.param.clone(), s.master.defined() ? s.master.clone() : torch::Tensor(), s.m.clone(), s.v.clone()};
}
// The largest difference relative to the largest value: an ulp-sized difference of any element stays ~1e-7 however
// close to zero that element is (a moment after cancellation), while a wrong formula shows at once.
double max_rel(const torch::Tensor& a, const torch::Tensor& b) {
  auto d = (a.to(torch::kFloat64) - b.to(torch::kFloat64)).abs().max();
  return (d / b.to(torch::kFloat64).abs().max()).item<double>();
}
}  // namespace

TEST(FusedAdamW, MatchesTheTensorOpOracle) {
  for (bool simd : {true, false})  // AVX2 (where the CPU has it) and the scalar loop
    for (auto dtype : {torch::kFloat32, torch::kBFloat16})
      for (int64_t n : {1, 7, 33, 65537, 300001})
        for (double wd : {0.0, 0.1}) {
          State a = make(n, dtype, 7 + n), b = copy(a);
          for (int step = 1; step <= 4; ++step) {
            auto grad = (torch::randn({n}) * (step == 2 ? 1e-6 : 0.3)).to(dtype);  // step 2: gradients near eps
            AdamWUpdate u{1e-3, 0.9, 0.999, 1e-8, wd, 1 - std::pow(0.9, step), 1 - std::pow(0.999, step), simd};
            ASSERT_TRUE(fused_adamw_applies(a.param, grad, a.master, a.m, a.v));
            fused_adamw_step(a.param, grad, a.master, a.m, a.v, u);
            reference_adamw_step(b.param, grad, b.master, b.m, b.v, u);
          }
          std::string what = std::string(simd ? "simd " : "scalar ") + (dtype == torch::kFloat32 ? "fp32" : "bf16") +
                             " n=" + std::to_string(n) + " wd=" + std::to_string(wd);
          EXPECT_LT(max_rel(a.m, b.m), 1e-6) << what;
          EXPECT_LT(max_rel(a.v, b.v), 1e-6) << what;
          auto wa = a.master.defined() ? a.master : a.param, wb = b.master.defined() ? b.master : b.param;
          EXPECT_LT((wa - wb).abs().max().item<double>(), 1e-7) << what;
          // The weights moved by about lr each step: the comparison is not of unchanged values.
          EXPECT_GT((wa - make(n, dtype, 7 + n).param.to(torch::kFloat32)).abs().max().item<double>(), 1e-3) << what;
          if (dtype == torch::kBFloat16) {
            // Rounded into the bf16 parameter as copy_ rounds: equal wherever the masters round alike.
            EXPECT_TRUE(torch::equal(a.param, a.master.to(torch::kBFloat16))) << what;
          }
        }
}

TEST(FusedAdamW, DeclinesWhatItDoesNotHandle) {
  auto p = torch::zeros({8}), g = torch::zeros({8}), m = torch::zeros({8}), v = torch::zeros({8});
  EXPECT_TRUE(fused_adamw_applies(p, g, torch::Tensor(), m, v));
  EXPECT_FALSE(fused_adamw_applies(p, g, torch::zeros({8}), m, v));                     // fp32 param with a master
  EXPECT_FALSE(fused_adamw_applies(p.to(torch::kBFloat16), g, torch::Tensor(), m, v));  // bf16 without a master
  EXPECT_FALSE(fused_adamw_applies(p, g.to(torch::kFloat64), torch::Tensor(), m, v));
  EXPECT_FALSE(fused_adamw_applies(p, torch::zeros({4, 2}).t(), torch::Tensor(), m, v));  // not contiguous
  EXPECT_FALSE(fused_adamw_applies(p, torch::Tensor(), torch::Tensor(), m, v));
}
