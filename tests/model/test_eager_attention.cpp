// model/eager_attention: the attention whose backward recomputes the probabilities gives autograd's values and
// gradients (the oracle keeps the probabilities and lets autograd differentiate), with padding, causal masks and
// grouped query heads, in float64 and float32.
#include "model/eager_attention.h"
#include "model/transformer.h"
#include "test_util.h"

using namespace multiref;

namespace {

struct Case {
  torch::Tensor q, k, v, allowed;
};

// B=3 rows, KV=2 heads with R=3 query heads each, T=S=7, D=8; row 1 left-padded by 2, row 2 by 5.
Case make_case(torch::ScalarType dt) {
  torch::manual_seed(3);
  int64_t B = 3, KV = 2, R = 3, T = 7, D = 8;
  Case c;
  auto o = torch::TensorOptions().dtype(dt);
  c.q = (torch::randn({B, KV, R * T, D}, o) * 2).requires_grad_();
  c.k = (torch::randn({B, KV, T, D}, o) * 2).requires_grad_();
  c.v = torch::randn({B, KV, T, D}, o).requires_grad_();
  auto key_mask = torch::ones({B, T}, torch::kLong);
  key_mask[1].narrow(0, 0, 2).fill_(0);
  key_mask[2].narrow(0, 0, 5).fill_(0);
  c.allowed = causal_attention_mask(key_mask, T);
  return c;
}

double max_rel(const torch::Tensor& a, const torch::Tensor& b) {
  return ((a - b).abs().max() / b.abs().max().clamp_min(1e-30)).item<double>();
}

}  // namespace

TEST(EagerAttention, ValuesAndGradientsAreAutogradsWithoutKeepingTheProbabilities) {
  for (auto [dt, tol] : {std::pair<torch::ScalarType, double>{torch::kFloat64, 1e-13}, {torch::kFloat32, 1e-5}}) {
    auto c = make_case(dt);
    double scale = 1.0 / std::sqrt(8.0);
    auto g = torch::randn({3, 2, 21, 8}, torch::TensorOptions().dtype(dt));
    auto fast = eager_attention(c.q, c.k, c.v, c.allowed, scale);
    auto gf = torch::autograd::grad({fast}, {c.q, c.k, c.v}, {g});
    auto ref = eager_attention_reference(c.q, c.k, c.v, c.allowed, scale);
    auto gr = torch::autograd::grad({ref}, {c.q, c.k, c.v}, {g});
    EXPECT_LT(max_rel(fast, ref), tol) << dt;
    const char* names[] = {"dq", "dk", "dv"};
    for (int i = 0; i < 3; ++i) {
      EXPECT_LT(max_rel(gf[i], gr[i]), tol) << dt << " " << names[i];
      EXPECT_GT(gr[i].abs().max().item<double>(), 1e-3) << "a gradient that vanishes tests nothing";
    }
    // Keys no query may see (the padding of rows 1 and 2) get no gradient, as in autograd.
    EXPECT_EQ(gf[1][2].narrow(1, 0, 5).abs().max().item<double>(), 0.0);
  }
}

TEST(EagerAttention, FiniteDifferencesAgreeInFloat64) {
  auto c = make_case(torch::kFloat64);
  double scale = 0.3, h = 1e-6;
  auto w = torch::randn({3, 2, 21, 8}, torch::kFloat64);
  auto loss = [&](const torch::Tensor& q) {
    torch::NoGradGuard ng;
    return (eager_attention(q, c.k, c.v, c.allowed, scale) * w).sum().item<double>();
  };
  auto out = (eager_attention(c.q, c.k, c.v, c.allowed, scale) * w).sum();
  auto dq = torch::autograd::grad({out}, {c.q})[0];
  for (int64_t idx : {0, 17, 100, 333, 1000}) {
    auto qp = c.q.detach().clone(), qm = c.q.detach().clone();
    qp.view({-1})[idx] += h;
    qm.view({-1})[idx] -= h;
    double fd = (loss(qp) - loss(qm)) / (2 * h);
    EXPECT_NEAR(dq.view({-1})[idx].item<double>(), fd, 1e-7) << "element " << idx;
  }
}
