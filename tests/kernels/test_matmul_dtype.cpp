// bf16 matrix products, native or upcast to fp32 (kernels/matmul_dtype.h): both paths forced on any machine (native
// bf16 GEMM exists everywhere, only its speed differs), each against the float64 computation of the same bf16
// weights: logits and every gradient within bf16 tolerance, and the two paths within that tolerance of each other.
#include "io/hf_model.h"
#include "kernels/matmul_dtype.h"
#include "model/logprobs.h"
#include "test_util.h"

using namespace multiref;
using namespace multiref::testing;

namespace {

struct Pass {
  torch::Tensor logp;                // [B, T-1] token log-probs
  std::vector<torch::Tensor> grads;  // per parameter, float64
};

Pass forward_backward(Transformer& m, const torch::Tensor& ids, const torch::Tensor& mask, const torch::Tensor& w) {
  m->zero_grad();
  auto lp = token_logprobs(m, ids, mask);
  (lp * w.to(lp.scalar_type())).sum().backward();
  Pass r{lp.detach().to(torch::kFloat64), {}};
  for (auto& p : m->parameters()) r.grads.push_back(p.grad().to(torch::kFloat64));
  return r;
}

double rel(const torch::Tensor& a, const torch::Tensor& b) {
  return (a - b).norm().item<double>() / std::max(b.norm().item<double>(), 1e-30);
}

}  // namespace

TEST(MatmulDtype, NativeAndUpcastBf16AgreeWithFloat64) {
  auto before = bf16_matmul();
  auto c = preset_config("qwen2", "tiny");
  Transformer m32(c, torch::TensorOptions());
  init_weights(m32, 5, 0.05);
  // The bf16 model, and the float64 model of exactly its (rounded) weights.
  Transformer m16(c, torch::TensorOptions());
  Transformer m64(c, torch::TensorOptions().dtype(torch::kFloat64));
  {
    torch::NoGradGuard ng;
    auto src = m32->parameters();
    auto p16 = m16->parameters(), p64 = m64->parameters();
    for (size_t i = 0; i < src.size(); ++i) {
      p16[i].set_data(src[i].to(torch::kBFloat16));
      p64[i].copy_(src[i].to(torch::kBFloat16).to(torch::kFloat64));
    }
  }
  torch::manual_seed(1);
  auto ids = torch::randint(0, c.vocab_size, {3, 40}, torch::kLong);
  auto mask = torch::ones({3, 40}, torch::kLong);
  mask[2].narrow(0, 30, 10).zero_();
  auto w = torch::randn({3, 39});
  auto exact = forward_backward(m64, ids, mask, w);
  std::map<Bf16Matmul, Pass> runs;
  for (auto mode : {Bf16Matmul::Native, Bf16Matmul::Upcast}) {
    set_bf16_matmul(mode);
    EXPECT_EQ(matmul_dtype(m16->lm_head_weight()), mode == Bf16Matmul::Native ? torch::kBFloat16 : torch::kFloat32);
    auto r = forward_backward(m16, ids, mask, w);
    std::string name = mode == Bf16Matmul::Native ? "native" : "upcast";
    EXPECT_LT((r.logp - exact.logp).abs().max().item<double>(), 0.05) << name;
    for (size_t i = 0; i < r.grads.size(); ++i) EXPECT_LT(rel(r.grads[i], exact.grads[i]), 0.05) << name << " " << i;
    runs[mode] = r;
  }
  EXPECT_LT((runs[Bf16Matmul::Native].logp - runs[Bf16Matmul::Upcast].logp).abs().max().item<double>(), 0.05);
  // Other dtypes are never touched by the choice.
  EXPECT_EQ(matmul_dtype(m32->lm_head_weight()), torch::kFloat32);
  EXPECT_EQ(matmul_dtype(m64->lm_head_weight()), torch::kFloat64);
  EXPECT_EQ(matmul_dtype(torch::zeros({2, 2}, torch::kHalf)), torch::kFloat32);
  set_bf16_matmul(before);
}
