// Multi-reference objectives against closed forms, hand computations, brute force, published values
// (torchtune's DPO and PPO tests) and finite differences.
#include <fstream>
#include <random>

#include "objectives/closed_form.h"
#include "objectives/losses.h"
#include "objectives/objectives.h"
#include "test_util.h"

using namespace multiref;
using namespace multiref::testing;

namespace {

torch::Tensor dbl(std::vector<double> v) {
  return torch::tensor(v, torch::kFloat64);
}

// Finite-difference check of d f(x) / dx for a scalar function of one tensor (double precision).
void expect_grad_matches_fd(const std::function<torch::Tensor(const torch::Tensor&)>& f, torch::Tensor x, double tol,
                            const std::string& what) {
  x = x.to(torch::kFloat64).detach().requires_grad_(true);
  auto g = torch::autograd::grad({f(x)}, {x})[0];
  auto flat = x.detach().reshape({-1});
  double eps = 1e-6;
  for (int64_t i = 0; i < flat.numel(); ++i) {
    auto xp = flat.clone(), xm = flat.clone();
    xp[i] += eps;
    xm[i] -= eps;
    double num = (f(xp.view(x.sizes())).item<double>() - f(xm.view(x.sizes())).item<double>()) / (2 * eps);
    EXPECT_NEAR(g.reshape({-1})[i].item<double>(), num, tol * std::max(1.0, std::fabs(num)))
        << what << " element " << i;
  }
}

std::vector<double> normalize(std::vector<double> v) {
  double s = 0;
  for (double x : v) s += x;
  for (double& x : v) x /= s;
  return v;
}

}  // namespace

// ---- token-level quantities ---------------------------------------------------------------------------------

TEST(Objectives, RklMixtureIdentityAndDisagreement) {
  // sum_i a_i KL(pi||pi_i) = KL(pi||G) - log f, on random distributions over V = 7, B = 2, T = 3, K = 3.
  torch::manual_seed(0);
  auto lp = torch::log_softmax(torch::randn({2, 3, 7}, torch::kFloat64), -1);
  std::vector<torch::Tensor> refs;
  for (int i = 0; i < 3; ++i) refs.push_back(torch::log_softmax(torch::randn({2, 3, 7}, torch::kFloat64), -1));
  std::vector<double> a = {0.2, 0.5, 0.3};
  auto tgt = torch::randint(0, 7, {2, 3}, torch::kLong);
  auto v = vocab_terms(lp, refs, tgt, a, a);
  auto weighted = 0.2 * v.kl_policy_ref[0] + 0.5 * v.kl_policy_ref[1] + 0.3 * v.kl_policy_ref[2];
  EXPECT_LT(max_abs_diff(weighted, v.kl_policy_geo + v.neg_log_f), 1e-5);
  EXPECT_GT(v.neg_log_f.min().item<double>(), 0.0) << "different references disagree: -log f > 0";
  // Identical references: no disagreement, and G is that reference.
  auto same = vocab_terms(lp, {refs[0], refs[0], refs[0]}, tgt, a, a);
  EXPECT_LT(same.neg_log_f.abs().max().item<double>(), 1e-6);
  EXPECT_LT(max_abs_diff(same.kl_policy_geo, same.kl_policy_ref[0]), 1e-6);
  EXPECT_LT(max_abs_diff(same.log_arith_target, refs[0].gather(-1, tgt.unsqueeze(-1)).squeeze(-1)), 1e-6);
}

TEST(Objectives, HandComputedTwoTokenVocabulary) {
  // V = 2: pi = (0.5, 0.5), pi_1 = (0.9, 0.1), pi_2 = (0.1, 0.9), alpha = beta = (0.5, 0.5).
  // prod pi_i^a = (0.3, 0.3) -> f = 0.6, G = (0.5, 0.5): KL(pi||G) = 0, -log f = -log 0.6 = 0.5108256.
  // KL(pi||pi_1) = 0.5 log(0.5/0.9) + 0.5 log(0.5/0.1) = 0.5108256 (= KL(pi||pi_2) by symmetry).
  // KL(pi_1||pi) = 0.9 log 1.8 + 0.1 log 0.2 = 0.3680642. pibar = (0.5, 0.5) -> log pibar(y=0) = log 0.5.
  auto lp = dbl({0.5, 0.5}).log().view({1, 1, 2});
  auto r1 = dbl({0.9, 0.1}).log().view({1, 1, 2}), r2 = dbl({0.1, 0.9}).log().view({1, 1, 2});
  auto v = vocab_terms(lp, {r1, r2}, torch::zeros({1, 1}, torch::kLong), {0.5, 0.5}, {0.5, 0.5});
  EXPECT_NEAR(v.kl_policy_geo.item<double>(), 0.0, 1e-6);
  EXPECT_NEAR(v.neg_log_f.item<double>(), 0.5108256, 1e-6);
  EXPECT_NEAR(v.kl_policy_ref[0].item<double>(), 0.5108256, 1e-6);
  EXPECT_NEAR(v.kl_ref_policy[1].item<double>(), 0.3680642, 1e-6);
  EXPECT_NEAR(v.log_arith_target.item<double>(), std::log(0.5), 1e-6);
  EXPECT_NEAR(v.log_geo_target.item<double>(), std::log(0.5), 1e-6);
}

TEST(Objectives, ChunkedEqualsNaive) {
  torch::manual_seed(1);
  auto lp = torch::log_softmax(torch::randn({2, 9, 11}), -1);
  std::vector<torch::Tensor> refs = {torch::log_softmax(torch::randn({2, 9, 11}), -1),
                                     torch::log_softmax(torch::randn({2, 9, 11}), -1)};
  auto tgt = torch::randint(0, 11, {2, 9}, torch::kLong);
  std::vector<double> a = {0.7, 0.3}, b = {0.4, 0.6};
  auto naive = vocab_terms(lp, refs, tgt, a, b);
  auto chunk_of = [](const torch::Tensor& t) { return [t](int64_t s, int64_t n) { return t.narrow(1, s, n); }; };
  auto fast = vocab_terms_chunked(chunk_of(lp), {chunk_of(refs[0]), chunk_of(refs[1])}, tgt, a, b, 4);
  EXPECT_LT(max_abs_diff(naive.kl_policy_ref, fast.kl_policy_ref), 1e-6);
  EXPECT_LT(max_abs_diff(naive.kl_ref_policy, fast.kl_ref_policy), 1e-6);
  EXPECT_LT(max_abs_diff(naive.kl_policy_geo, fast.kl_policy_geo), 1e-6);
  EXPECT_LT(max_abs_diff(naive.neg_log_f, fast.neg_log_f), 1e-6);
  EXPECT_LT(max_abs_diff(naive.log_geo_target, fast.log_geo_target), 1e-6);
  EXPECT_LT(max_abs_diff(naive.log_arith_target, fast.log_arith_target), 1e-6);
}

TEST(Objectives, SampledEstimatorsMatchExactKL) {
  // Under y ~ pi, E[k1] = E[k3] = KL(pi||q) exactly; k2 is biased. Exact expectation by enumeration, then a
  // seeded Monte Carlo estimate within 4 standard errors.
  auto pi = dbl(normalize({0.1, 0.4, 0.2, 0.05, 0.25})), q = dbl(normalize({0.3, 0.1, 0.2, 0.3, 0.1}));
  double kl = (pi * (pi.log() - q.log())).sum().item<double>();
  auto r = q.log() - pi.log();
  EXPECT_NEAR((pi * sampled_kl(r, SampledKL::K1)).sum().item<double>(), kl, 1e-12);
  EXPECT_NEAR((pi * sampled_kl(r, SampledKL::K3)).sum().item<double>(), kl, 1e-12);
  EXPECT_GT(std::fabs((pi * sampled_kl(r, SampledKL::K2)).sum().item<double>() - kl), 1e-3);
  auto gen = at::detail::createCPUGenerator(1234);
  auto ys = torch::multinomial(pi, 200000, /*replacement=*/true, gen);
  for (auto k : {SampledKL::K1, SampledKL::K3}) {
    auto s = sampled_kl(r.index_select(0, ys), k);
    double se = s.std().item<double>() / std::sqrt(200000.0);
    EXPECT_NEAR(s.mean().item<double>(), kl, 4 * se);
  }
}

TEST(Objectives, WeightsAreValidated) {
  expect_error([] { validate_weights({0.5}, 2, "--ref_weights"); },
               {"--ref_weights", "1 weights given for 2 references"});
  expect_error([] { validate_weights({1.2, -0.2}, 2, "--ref_weights"); }, {">= 0"});
  expect_error([] { validate_weights({0.5, 0.6}, 2, "--alpha"); }, {"--alpha", "sum to 1.1"});
  EXPECT_NO_THROW(validate_weights({0.25, 0.75}, 2, "w"));
}

// ---- closed forms -------------------------------------------------------------------------------------------

TEST(ClosedForm, RklOptimumSatisfiesStationarityAndBeatsEveryPolicy) {
  std::vector<std::vector<double>> refs = {{0.5, 0.3, 0.2}, {0.1, 0.2, 0.7}};
  std::vector<double> a = {0.3, 0.7}, r = {1.0, 0.5, -0.2};
  double g = 0.4;
  auto o = rkl_optimum(refs, a, r, g);
  // Stationarity: r(y) + g sum_i a_i log pi_i(y) - g log pi*(y) is the same for every y (= g log Z = value).
  for (size_t y = 0; y < 3; ++y) {
    double s = r[y] - g * std::log(o.policy[y]);
    for (size_t i = 0; i < 2; ++i) s += g * a[i] * std::log(refs[i][y]);
    EXPECT_NEAR(s, o.value, 1e-9);
  }
  EXPECT_NEAR(o.value, g * o.log_Z, 1e-9);
  // Brute force over a grid of the 2-simplex.
  double best = -1e300;
  for (int i = 0; i <= 400; ++i)
    for (int j = 0; i + j <= 400; ++j) {
      std::vector<double> p = {i / 400.0, j / 400.0, (400 - i - j) / 400.0};
      best = std::max(best, objective_value("rkl", p, refs, a, r, g));
    }
  EXPECT_GE(o.value, best - 1e-12);
  EXPECT_NEAR(o.value, best, 1e-3);
}

TEST(ClosedForm, FklOptimumSatisfiesStationarityAndBeatsEveryPolicy) {
  std::vector<std::vector<double>> refs = {{0.5, 0.3, 0.2}, {0.1, 0.2, 0.7}};
  std::vector<double> b = {0.6, 0.4}, r = {1.0, 0.5, -0.2};
  double g = 0.4;
  auto o = fkl_optimum(refs, b, r, g);
  // Stationarity: r(y) + g pibar(y) / pi*(y) = lambda for every y.
  for (size_t y = 0; y < 3; ++y) {
    double bar = 0.6 * refs[0][y] + 0.4 * refs[1][y];
    EXPECT_NEAR(r[y] + g * bar / o.policy[y], o.lambda, 1e-9);
  }
  EXPECT_GT(o.lambda, 1.0);
  EXPECT_LE(o.lambda, 1.0 + g);
  double best = -1e300;
  for (int i = 1; i < 400; ++i)
    for (int j = 1; i + j < 400; ++j) {
      std::vector<double> p = {i / 400.0, j / 400.0, (400 - i - j) / 400.0};
      best = std::max(best, objective_value("fkl", p, refs, b, r, g));
    }
  EXPECT_GE(o.value, best - 1e-12);
  EXPECT_NEAR(o.value, best, 1e-3);
}

TEST(ClosedForm, SingleReferenceAndOneHotWeights) {
  std::vector<double> p1 = {0.6, 0.3, 0.1}, p2 = {0.2, 0.2, 0.6}, r = {0.0, 1.0, 2.0};
  double g = 0.5;
  // K = 1: the classical pi* = pi_1 e^{r/g} / Z.
  auto o = rkl_optimum({p1}, {1.0}, r, g);
  double z = 0;
  for (size_t y = 0; y < 3; ++y) z += p1[y] * std::exp(r[y] / g);
  for (size_t y = 0; y < 3; ++y) EXPECT_NEAR(o.policy[y], p1[y] * std::exp(r[y] / g) / z, 1e-12);
  EXPECT_NEAR(o.log_F, 0.0, 1e-12);
  // One-hot weights reproduce each single-reference optimum; zero reward reproduces the reference itself.
  for (auto [w, ref] : {std::make_pair(std::vector<double>{1, 0}, p1), std::make_pair(std::vector<double>{0, 1}, p2)}) {
    auto multi = rkl_optimum({p1, p2}, w, r, g), single = rkl_optimum({ref}, {1.0}, r, g);
    auto fmulti = fkl_optimum({p1, p2}, w, r, g), fsingle = fkl_optimum({ref}, {1.0}, r, g);
    auto flat = fkl_optimum({p1, p2}, w, {0, 0, 0}, g);
    for (size_t y = 0; y < 3; ++y) {
      EXPECT_NEAR(multi.policy[y], single.policy[y], 1e-12);
      EXPECT_NEAR(fmulti.policy[y], fsingle.policy[y], 1e-12);
      EXPECT_NEAR(flat.policy[y], ref[y], 1e-12);
    }
  }
}

TEST(ClosedForm, BadProblems) {
  expect_error([] { rkl_optimum({{1.0, 0.0}, {0.0, 1.0}}, {0.5, 0.5}, {0, 0}, 1.0); }, {"share no support"});
  expect_error([] { rkl_optimum({{0.5, 0.5}}, {1.0}, {0, 0}, 0.0); }, {"gamma", "> 0"});
  expect_error([] { fkl_optimum({{0.5, 0.4}}, {1.0}, {0, 0}, 1.0); }, {"refs[0] sums to 0.9"});
  expect_error([] { fkl_optimum({{0.5, 0.5}}, {1.0}, {0, 0, 0}, 1.0); }, {"refs[0] has 2 probabilities", "3"});
  expect_error([] { fkl_optimum({{0.5, 0.5}, {0.5, 0.5}}, {1.0}, {0, 0}, 1.0); }, {"1 weights given for 2"});
}

// ---- losses -------------------------------------------------------------------------------------------------

TEST(Losses, TorchtuneDpoValues) {
  // pytorch/torchtune tests/torchtune/rlhf/loss/test_dpo_loss.py, beta = 0.1 (our gamma).
  std::vector<double> pc = {-0.5, -10, -1}, pr = {-0.1, -30, -21}, rc = {-0.5, -10.1, -0.1}, rr = {-0.1, -20.1, -0.1};
  std::vector<double> sigmoid = {0.693147, 0.313262, 0.126928}, hinge = {1, 0, 0};
  DpoLossConfig cfg;
  cfg.gamma = 0.1;
  for (int i = 0; i < 3; ++i) {
    auto one = [&](double v) { return dbl({v}); };
    auto loss = dpo_loss(one(pc[i]), one(pr[i]), one(rc[i]).view({1, 1}), one(rr[i]).view({1, 1}), {1.0},
                         DpoReference::RklGeometric, cfg);
    EXPECT_NEAR(loss.loss.item<double>(), sigmoid[i], 1e-6) << i;
    // Two identical references with any weights are the same single reference.
    auto two = dpo_loss(one(pc[i]), one(pr[i]), dbl({rc[i], rc[i]}).view({2, 1}), dbl({rr[i], rr[i]}).view({2, 1}),
                        {0.3, 0.7}, DpoReference::RklGeometric, cfg);
    EXPECT_NEAR(two.loss.item<double>(), sigmoid[i], 1e-6) << i;
    DpoLossConfig h = cfg;
    h.type = DpoLossType::Hinge;
    EXPECT_NEAR(dpo_loss(one(pc[i]), one(pr[i]), one(rc[i]).view({1, 1}), one(rr[i]).view({1, 1}), {1.0},
                         DpoReference::RklGeometric, h)
                    .loss.item<double>(),
                hinge[i], 1e-9);
  }
}

TEST(Losses, DpoIsLog2WhenPolicyEqualsTheReferenceMixture) {
  auto rc = dbl({-12.0, -3.5, -40.0, -7.0}).view({2, 2}), rr = dbl({-9.0, -20.0, -11.0, -2.5}).view({2, 2});
  std::vector<double> w = {0.3, 0.7};
  // RKL: the mixture reference is sum_i a_i log pi_i(y).
  auto pc = 0.3 * rc[0] + 0.7 * rc[1], pr = 0.3 * rr[0] + 0.7 * rr[1];
  EXPECT_NEAR(dpo_loss(pc, pr, rc, rr, w, DpoReference::RklGeometric, {}).loss.item<double>(), std::log(2.0), 1e-9);
  // FKL: pibar(y) = sum_i b_i pi_i(y).
  auto bc = torch::log(0.3 * rc[0].exp() + 0.7 * rc[1].exp()), br = torch::log(0.3 * rr[0].exp() + 0.7 * rr[1].exp());
  auto f = dpo_loss(bc, br, rc, rr, w, DpoReference::FklArithmetic, {});
  EXPECT_NEAR(f.loss.item<double>(), std::log(2.0), 1e-9);
  EXPECT_NEAR(f.stats.rewards.margin.item<double>(), 0.0, 1e-9);
}

TEST(Losses, FklDpoHandCase) {
  // One pair, one reference: u_w = log pibar/pi (y_w) = -1, u_l = +1 -> margin e^1 - e^-1 = 2.3504024,
  // loss = softplus(-gamma * 2.3504024) with gamma = 0.5: log(1 + e^-1.1752012) = log(1.3087560) = 0.2690777.
  auto loss = dpo_loss(dbl({-4.0}), dbl({-6.0}), dbl({-5.0}).view({1, 1}), dbl({-5.0}).view({1, 1}), {1.0},
                       DpoReference::FklArithmetic, DpoLossConfig{0.5});
  EXPECT_NEAR(loss.loss.item<double>(), 0.2690777, 1e-6);
  // Implicit rewards: -gamma pibar/pi; per reference -gamma pi_i/pi (FKL), not gamma log(pi/pi_i) (RKL's).
  EXPECT_NEAR(loss.stats.rewards.chosen.item<double>(), -0.5 * std::exp(-1.0), 1e-12);
  EXPECT_NEAR(loss.stats.per_ref[0].chosen.item<double>(), -0.5 * std::exp(-1.0), 1e-12);
  EXPECT_NEAR(loss.stats.per_ref[0].rejected.item<double>(), -0.5 * std::exp(1.0), 1e-12);
  // Two references with beta (0.25, 0.75): log pi_1 = -5, log pi_2 = -3 on y_w (log pi = -4): per reference
  // -0.5 e^-1 and -0.5 e^1; the mixture -0.5 (0.25 e^-1 + 0.75 e^1).
  auto two = dpo_loss(dbl({-4.0}), dbl({-6.0}), dbl({-5.0, -3.0}).view({2, 1}), dbl({-5.0, -7.0}).view({2, 1}),
                      {0.25, 0.75}, DpoReference::FklArithmetic, DpoLossConfig{0.5});
  EXPECT_NEAR(two.stats.per_ref[1].chosen.item<double>(), -0.5 * std::exp(1.0), 1e-12);
  EXPECT_NEAR(two.stats.rewards.chosen.item<double>(), -0.5 * (0.25 * std::exp(-1.0) + 0.75 * std::exp(1.0)), 1e-12);
  auto rkl = dpo_loss(dbl({-4.0}), dbl({-6.0}), dbl({-5.0, -3.0}).view({2, 1}), dbl({-5.0, -7.0}).view({2, 1}),
                      {0.25, 0.75}, DpoReference::RklGeometric, DpoLossConfig{0.5});
  EXPECT_NEAR(rkl.stats.per_ref[1].chosen.item<double>(), 0.5 * (-4.0 + 3.0), 1e-12);
}

TEST(Losses, K3KeepsItsPrecisionForTinyLogRatios) {
  // k3 = e^r - 1 - r = r^2/2 + r^3/6 + ...: at r = 1e-4 in float32, e^r - 1 loses every digit of the answer.
  auto r = torch::tensor({1e-4f, -3e-4f, 0.5f}, torch::kFloat32);
  auto k3 = sampled_kl(r, SampledKL::K3);
  for (int i = 0; i < 3; ++i) {
    double x = r[i].item<double>(), want = std::expm1(x) - x;
    EXPECT_NEAR(k3[i].item<double>(), want, 1e-2 * want) << x;  // exp(r) - 1 - r is off by ~100%
  }
}

TEST(Losses, FklDpoStaysFiniteAtExtremeLogRatios) {
  for (double u : {-1e4, -300.0, 0.0, 300.0, 1e4})
    for (double v : {-1e4, 0.0, 1e4}) {
      auto pc = dbl({-u}).requires_grad_(true), pr = dbl({-v}).requires_grad_(true);  // ref log-probs are 0
      auto out = dpo_loss(pc, pr, dbl({0.0}).view({1, 1}), dbl({0.0}).view({1, 1}), {1.0}, DpoReference::FklArithmetic,
                          DpoLossConfig{1.0});
      auto grads = torch::autograd::grad({out.loss}, {pc, pr});
      EXPECT_TRUE(std::isfinite(out.loss.item<double>())) << u << " " << v;
      EXPECT_TRUE(std::isfinite(grads[0].item<double>()) && std::isfinite(grads[1].item<double>())) << u << " " << v;
    }
}

TEST(Losses, PpoClipMatchesTorchtune) {
  // torchtune test_ppo_loss: eps = 0.2; ratio e with advantage 1 -> loss -1.2; ratio 1/e with advantage -1 -> 0.8.
  GrpoLossConfig cfg;
  auto mask = torch::ones({1, 1});
  auto a = grpo_loss(dbl({1.0}).view({1, 1}), dbl({0.0}).view({1, 1}), dbl({1.0}), mask, {}, cfg);
  EXPECT_NEAR(a.loss.item<double>(), -1.2, 1e-6);
  EXPECT_NEAR(a.stats.clip_high.item<double>(), 1.0, 1e-12);
  auto b = grpo_loss(dbl({-1.0}).view({1, 1}), dbl({0.0}).view({1, 1}), dbl({-1.0}), mask, {}, cfg);
  EXPECT_NEAR(b.loss.item<double>(), 0.8, 1e-6);
}

TEST(Losses, GroupAdvantagesByHand) {
  // Groups (1, 2, 3) and (5, 5, 5): means 2 and 5, unbiased std 1 and 0.
  auto adv = group_advantages(dbl({1, 2, 3, 5, 5, 5}), 3, true);
  std::vector<double> want = {-1 / 1.0001, 0, 1 / 1.0001, 0, 0, 0};
  for (int i = 0; i < 6; ++i) EXPECT_NEAR(adv[i].item<double>(), want[i], 1e-6);
  auto raw = group_advantages(dbl({1, 2, 3, 5, 5, 5}), 3, false);
  EXPECT_NEAR(raw[0].item<double>(), -1.0, 1e-6);
  expect_error([] { group_advantages(dbl({1, 2, 3}), 2, true); }, {"groups of 2"});
  // Leave-one-out: r - mean of the others. Group (1, 2, 3): 1 - 2.5, 2 - 2, 3 - 1.5; G = 1: the reward itself.
  auto loo = group_advantages(dbl({1, 2, 3, 5, 5, 5}), 3, false, AdvantageBaseline::LeaveOneOut);
  std::vector<double> want_loo = {-1.5, 0, 1.5, 0, 0, 0};
  for (int i = 0; i < 6; ++i) EXPECT_NEAR(loo[i].item<double>(), want_loo[i], 1e-12);
  EXPECT_EQ(loo.scalar_type(), torch::kFloat64) << "float64 rewards keep their precision";
  auto one = group_advantages(dbl({0.25, -2}), 1, false, AdvantageBaseline::LeaveOneOut);
  EXPECT_EQ(one[1].item<double>(), -2);
}

TEST(Losses, GrpoAggregations) {
  // Two sequences with 1 and 3 valid tokens; advantages 1 and -1; ratio 1 everywhere -> per-token -A.
  auto lp = torch::zeros({2, 3}, torch::kFloat64);
  auto mask = dbl({1, 0, 0, 1, 1, 1}).view({2, 3});
  auto adv = dbl({1.0, -1.0});
  GrpoLossConfig cfg;
  cfg.aggregation = LossAggregation::TokenMean;  // (-1 + 3) / 4
  EXPECT_NEAR(grpo_loss(lp, lp, adv, mask, {}, cfg).loss.item<double>(), 0.5, 1e-12);
  cfg.aggregation = LossAggregation::SequenceMean;  // (-1 + 1) / 2
  EXPECT_NEAR(grpo_loss(lp, lp, adv, mask, {}, cfg).loss.item<double>(), 0.0, 1e-12);
  cfg.aggregation = LossAggregation::DrGrpo;  // (-1 + 3) / (2 * 4)
  cfg.max_completion_length = 4;
  EXPECT_NEAR(grpo_loss(lp, lp, adv, mask, {}, cfg).loss.item<double>(), 0.25, 1e-12);
  // KL in the loss: + gamma * kl (token mean).
  cfg.aggregation = LossAggregation::TokenMean;
  cfg.gamma = 0.1;
  auto kl = torch::full({2, 3}, 2.0, torch::kFloat64);
  EXPECT_NEAR(grpo_loss(lp, lp, adv, mask, kl, cfg).loss.item<double>(), 0.5 + 0.2, 1e-12);
}

TEST(Losses, GradientsMatchFiniteDifferences) {
  torch::manual_seed(3);
  auto old_lp = torch::log_softmax(torch::randn({2, 4, 5}, torch::kFloat64), -1);
  auto refs = std::vector<torch::Tensor>{torch::log_softmax(torch::randn({2, 4, 5}, torch::kFloat64), -1),
                                         torch::log_softmax(torch::randn({2, 4, 5}, torch::kFloat64), -1)};
  auto tgt = torch::randint(0, 5, {2, 4}, torch::kLong);
  auto mask = dbl({1, 1, 1, 0, 1, 1, 1, 1}).view({2, 4});
  auto adv = dbl({0.7, -1.3});
  std::vector<double> w = {0.4, 0.6};
  auto pick = [&](const torch::Tensor& lp) { return lp.gather(-1, tgt.unsqueeze(-1)).squeeze(-1); };
  auto ref_lp = torch::stack({pick(refs[0]), pick(refs[1])}, 0);
  auto logits0 = torch::randn({2, 4, 5}, torch::kFloat64) * 0.3;
  for (auto pen : {KLPenalty::RklFull, KLPenalty::RklK1, KLPenalty::RklK2, KLPenalty::RklK3, KLPenalty::RklMixtureK3,
                   KLPenalty::FklFull, KLPenalty::FklMixtureK3}) {
    auto f = [&](const torch::Tensor& logits) {
      auto lp = torch::log_softmax(logits, -1);
      auto v = vocab_terms(lp, refs, tgt, w, w);
      auto kl = token_penalty(pen, pick(lp), ref_lp, mask, w, &v).per_token;
      GrpoLossConfig cfg;
      cfg.gamma = 0.3;
      cfg.epsilon_low = cfg.epsilon_high = 10.0;  // keep away from the clip kinks
      return grpo_loss(pick(lp), pick(old_lp), adv, mask, kl, cfg).loss;
    };
    expect_grad_matches_fd(f, logits0, 1e-5, "grpo + " + kl_penalty_name(pen));
  }
  auto rc = dbl({-3.0, -4.0, -2.5, -6.0}).view({2, 2}), rr = dbl({-5.0, -3.5, -4.0, -4.5}).view({2, 2});
  for (auto ref : {DpoReference::RklGeometric, DpoReference::FklArithmetic})
    for (auto type : {DpoLossType::Sigmoid, DpoLossType::Ipo}) {
      DpoLossConfig cfg;
      cfg.gamma = 0.7;
      cfg.type = type;
      cfg.label_smoothing = 0.1;
      auto f = [&](const torch::Tensor& x) { return dpo_loss(x[0], x[1], rc, rr, w, ref, cfg).loss; };
      expect_grad_matches_fd(f, dbl({-3.2, -3.9, -4.1, -5.0}).view({2, 2}), 1e-5, "dpo");
    }
  auto f = [&](const torch::Tensor& x) {
    return fkl_ref_sample_loss(x, ref_lp[0], mask, {0, 1}, {0.25, 0.125}, 2, 0.3).loss;
  };
  expect_grad_matches_fd(f, pick(old_lp), 1e-6, "fkl_ref_samples");
}

TEST(Losses, FklRefSampleStats) {
  // Two samples from ref 0 and one from ref 1; kl/ref_i = mean of log pi_i(y) - log pi(y) per reference.
  auto pol = dbl({-2, -1, -3, -1, -4, 0}).view({3, 2}), ref = dbl({-1, -1, -1, -1, -1, -1}).view({3, 2});
  // Coefficients: beta = (0.6, 0.4) split 0.3, 0.3 | 0.4, times a per-sequence scale of 1/2.
  auto out = fkl_ref_sample_loss(pol, ref, torch::ones({3, 2}), {0, 0, 1}, {0.15, 0.15, 0.2}, 2, 0.5);
  EXPECT_NEAR(out.stats.kl[0].item<double>(), ((-2 + 3) + (-2 + 4)) / 2.0, 1e-12);  // (1 + 2) / 2
  EXPECT_NEAR(out.stats.kl[1].item<double>(), -2 + 4, 1e-12);
  EXPECT_NEAR(out.loss.item<double>(), 0.5 * (0.15 * 3 + 0.15 * 4 + 0.2 * 4), 1e-12);
  expect_error(
      [&] {
        fkl_ref_sample_loss(pol, ref, torch::ones({3, 2}), {0, 0, 1}, {1.0}, 2, 0.5);
      },
      {"3 samples", "1 coefficients"});
}

TEST(Losses, StratifiedReferenceSamplesWeighExactlyBeta) {
  using V = std::vector<int64_t>;
  EXPECT_EQ(stratified_counts({0.5, 0.5}, 8), (V{4, 4}));
  EXPECT_EQ(stratified_counts({0.7, 0.3}, 4), (V{3, 1}));    // 2.8 + 1.2: floors 2, 1, the larger remainder
  EXPECT_EQ(stratified_counts({0.98, 0.02}, 4), (V{4, 1}));  // ref 1 still drawn: five in all
  EXPECT_EQ(stratified_counts({1.0, 0.0}, 3), (V{3, 0}));    // a zero weight is never sampled
  EXPECT_EQ(stratified_counts({0.2, 0.3, 0.5}, 1), (V{1, 1, 1}));
  // In general: every weighted reference drawn, within one of its share, and M in all unless a reference was
  // added to be drawn at all.
  for (auto beta : std::vector<std::vector<double>>{{0.7, 0.3}, {0.98, 0.02}, {0.2, 0.3, 0.5}, {0.0, 1.0}})
    for (int64_t M : {1, 2, 5, 64, 1000}) {
      auto m = stratified_counts(beta, M);
      int64_t sum = 0, forced = 0;
      for (size_t i = 0; i < beta.size(); ++i) {
        sum += m[i];
        EXPECT_EQ(m[i] > 0, beta[i] > 0);
        if (beta[i] * (double)M >= 1) {
          EXPECT_LE(std::abs((double)m[i] - beta[i] * (double)M), 1.0);
        } else if (beta[i] > 0) {
          forced += m[i] == 1 && std::floor(beta[i] * (double)M) == 0;
        }
      }
      EXPECT_GE(sum, M);
      EXPECT_LE(sum, M + forced);
    }
  // The per-sequence scales of the three aggregations.
  auto c = fkl_sample_coefficients({0.5, 0.5}, {2, 4}, LossAggregation::DrGrpo, 8, 0.0);
  EXPECT_EQ(c, (std::vector<double>{0.5 / 8, 0.5 / 8}));
  c = fkl_sample_coefficients({0.5, 0.5}, {2, 4}, LossAggregation::TokenMean, 8, 0.25);
  EXPECT_EQ(c, (std::vector<double>{0.125, 0.125}));
  c = fkl_sample_coefficients({0.5, 0.5}, {2, 4}, LossAggregation::SequenceMean, 8, 0.0);
  EXPECT_EQ(c, (std::vector<double>{0.25, 0.125}));
}
