// The sample-complexity calculator against values worked out by hand from the transcribed formulas
// (arXiv:2502.01203v3 Theorems 5.2 and 6.2), the monotonicity the theorems imply, the inversion to n, and
// input validation. No torch: this file builds standalone with src/util/common.cpp and src/objectives/bounds.cpp.
#include <gtest/gtest.h>

#include <cmath>
#include <functional>
#include <string>
#include <vector>

#include "objectives/bounds.h"
#include "util/common.h"

using multiref::bound_value;
using multiref::BoundInputs;
using multiref::sample_complexity_bounds;
using multiref::samples_needed;

namespace {

// Input set A (reverse KL), two references.
BoundInputs rkl_a() {
  BoundInputs in;
  in.kl_type = "rkl";
  in.gamma = 0.5;  // KL coefficient -> the paper's gamma = 1/0.5 = 2
  in.weights = {0.5, 0.5};
  in.r_max = 0.5;
  in.n = 1000;
  in.delta = 0.05;
  in.log_cardinality = std::log(1000.0);  // |R| = 1000
  in.coverage = 1.5;
  return in;
}

// Input set B (forward KL), two references.
BoundInputs fkl_b() {
  BoundInputs in;
  in.kl_type = "fkl";
  in.gamma = 0.1;  // unused by Theorem 6.2
  in.weights = {0.25, 0.75};
  in.r_max = 1.0;
  in.n = 400;
  in.delta = 0.1;
  in.log_cardinality = std::log(50.0);  // |R| = 50
  in.coverage = 2.0;
  return in;
}

// Runs f, expects a multiref::Error whose message contains every fragment.
void expect_error(const std::function<void()>& f, const std::vector<std::string>& fragments) {
  try {
    f();
  } catch (const multiref::Error& e) {
    const std::string msg = e.what();
    for (const auto& frag : fragments)
      EXPECT_NE(msg.find(frag), std::string::npos) << "'" << frag << "' not in: " << msg;
    return;
  }
  ADD_FAILURE() << "expected a multiref::Error";
}

}  // namespace

// Theorem 5.2: gap <= gamma_p * C * 128 * e^{4 R_max} * R_max^2 * log(|R|/delta) / n.
// Set A by hand:
//   gamma_p = 1/0.5 = 2;  e^{4 * 0.5} = e^2 = 7.38905609893065;  R_max^2 = 0.25
//   log(|R|/delta) = ln(1000 / 0.05) = ln(20000) = 9.903487552536127
//   2 * 1.5 * 128 * 0.25 = 96;  96 * 7.38905609893065 = 709.349385497342
//   709.349385497342 * 9.903487552536127 = 7025.03280967208;  / n = 1000  ->  7.02503280967208
TEST(Bounds, RklHandValue) {
  EXPECT_NEAR(bound_value(rkl_a(), "rkl_suboptimality_gap"), 7.02503280967208, 1e-11);
  auto j = sample_complexity_bounds(rkl_a());
  ASSERT_EQ(j["bounds"].size(), 1u);
  const auto& b = j["bounds"][0];
  EXPECT_EQ(b["name"], "rkl_suboptimality_gap");
  EXPECT_EQ(b["theorem"], "Theorem 5.2");
  EXPECT_NE(b["source"].get<std::string>().find("arXiv:2502.01203v3"), std::string::npos);
  EXPECT_NEAR(b["value"].get<double>(), 7.02503280967208, 1e-11);
  EXPECT_DOUBLE_EQ(b["inputs"]["gamma_paper"].get<double>(), 2.0);
  EXPECT_EQ(b["inputs"]["n"], 1000);
  EXPECT_EQ(j["num_refs"], 2);
  EXPECT_DOUBLE_EQ(j["gamma"].get<double>(), 0.5);
}

// Theorem 6.2: gap <= 16 * C * e^{2 R_max} * R_max * sqrt(log(|R|/delta) / n).
// Set B by hand:
//   e^{2 * 1} = 7.38905609893065;  R_max = 1;  16 * 2 * 7.38905609893065 = 236.449795165781
//   log(|R|/delta) = ln(50 / 0.1) = ln(500) = 6.214608098422191
//   6.214608098422191 / 400 = 0.01553652024605548;  sqrt = 0.1246455785258967
//   236.449795165781 * 0.1246455785258967 = 29.4724215107685
TEST(Bounds, FklHandValue) {
  EXPECT_NEAR(bound_value(fkl_b(), "fkl_suboptimality_gap"), 29.4724215107685, 1e-10);
  auto j = sample_complexity_bounds(fkl_b());
  ASSERT_EQ(j["bounds"].size(), 1u);
  EXPECT_EQ(j["bounds"][0]["name"], "fkl_suboptimality_gap");
  EXPECT_EQ(j["bounds"][0]["theorem"], "Theorem 6.2");
  EXPECT_FALSE(j["bounds"][0]["inputs"].contains("gamma_paper"));  // Theorem 6.2 has no gamma
}

// The theorems' shape: the gap falls with n at the stated rate, grows as delta shrinks and with R_max, |R| and
// the coverage coefficient; the RKL gap grows with the paper's gamma (falls with the KL coefficient).
TEST(Bounds, Monotonicity) {
  for (BoundInputs in : {rkl_a(), fkl_b()}) {
    const std::string name = in.kl_type + "_suboptimality_gap";
    const double base = bound_value(in, name);
    double prev = base;
    for (int64_t n : {2000, 4000, 100000, 10000000}) {
      BoundInputs m = in;
      m.n = n;
      const double v = bound_value(m, name);
      EXPECT_LT(v, prev) << name << " n=" << n;
      prev = v;
    }
    BoundInputs x4 = in;
    x4.n = in.n * 4;  // O(1/n) -> /4, O(1/sqrt n) -> /2
    EXPECT_NEAR(bound_value(x4, name), base / (in.kl_type == "rkl" ? 4.0 : 2.0), 1e-12 * base);
    prev = base;
    for (double d : {0.01, 1e-4, 1e-12}) {
      BoundInputs m = in;
      m.delta = d;
      const double v = bound_value(m, name);
      EXPECT_GT(v, prev) << name << " delta=" << d;
      prev = v;
    }
    BoundInputs m = in;
    m.r_max *= 2;
    EXPECT_GT(bound_value(m, name), base);
    m = in;
    m.coverage *= 3;
    EXPECT_NEAR(bound_value(m, name), 3 * base, 1e-12 * base);  // linear in the coverage coefficient
    m = in;
    m.log_cardinality += 1;
    EXPECT_GT(bound_value(m, name), base);
    m = in;
    m.gamma /= 2;  // paper's gamma doubles
    EXPECT_NEAR(bound_value(m, name), (in.kl_type == "rkl" ? 2.0 : 1.0) * base, 1e-12 * base);
  }
}

// K = 1 is the single-reference case: the weights enter the bounds only through the coverage coefficient, so
// with the single reference's coverage the value is the same closed form, whatever K was.
TEST(Bounds, SingleReference) {
  BoundInputs one = rkl_a();
  one.weights = {1.0};
  EXPECT_DOUBLE_EQ(bound_value(one, "rkl_suboptimality_gap"), bound_value(rkl_a(), "rkl_suboptimality_gap"));
  one.num_refs = 1;
  EXPECT_NEAR(bound_value(one, "rkl_suboptimality_gap"), 7.02503280967208, 1e-11);
  BoundInputs f = fkl_b();
  f.weights = {1.0};
  EXPECT_NEAR(bound_value(f, "fkl_suboptimality_gap"), 29.4724215107685, 1e-10);
  BoundInputs k3 = fkl_b();
  k3.weights = {0.2, 0.3, 0.5};
  EXPECT_EQ(sample_complexity_bounds(k3)["num_refs"], 3);
}

// samples_needed is the smallest n whose gap is <= epsilon.
// Closed forms: RKL n = ceil(A / eps) with A = gap at n = 1 = 7025.03280967208 (set A);
//   eps = 0.1 -> 70250.328... -> 70251.
// FKL n = ceil((16 C e^{2R} R)^2 log(|R|/delta) / eps^2) = ceil(236.449795165781^2 * 6.214608098422191)
//   = ceil(55908.5056... * 6.214608098422191) = ceil(347449.4519) = 347450 at eps = 1 (set B).
TEST(Bounds, SamplesNeededInvertsTheGap) {
  EXPECT_EQ(samples_needed(rkl_a(), 0.1, "rkl_suboptimality_gap"), 70251);
  EXPECT_EQ(samples_needed(fkl_b(), 1.0, "fkl_suboptimality_gap"), 347450);
  // epsilon equal to the gap at n gives back n exactly.
  const double at1000 = bound_value(rkl_a(), "rkl_suboptimality_gap");
  EXPECT_EQ(samples_needed(rkl_a(), at1000, "rkl_suboptimality_gap"), 1000);
  for (BoundInputs in : {rkl_a(), fkl_b()}) {
    const std::string name = in.kl_type + "_suboptimality_gap";
    for (double eps : {100.0, 3.0, 0.5, 0.01, 1e-3}) {
      const int64_t n = samples_needed(in, eps, name);
      BoundInputs m = in;
      m.n = n;
      EXPECT_LE(bound_value(m, name), eps) << name << " eps=" << eps;
      if (n > 1) {
        m.n = n - 1;
        EXPECT_GT(bound_value(m, name), eps) << name << " eps=" << eps;
      }
    }
  }
  EXPECT_EQ(samples_needed(rkl_a(), 1e6, "rkl_suboptimality_gap"), 1);  // already met at n = 1
  BoundInputs no_n = rkl_a();
  no_n.n = 0;  // ignored by samples_needed
  EXPECT_EQ(samples_needed(no_n, 0.1, "rkl_suboptimality_gap"), 70251);
}

TEST(Bounds, BadInput) {
  auto rkl = [](const std::function<void(BoundInputs&)>& edit) {
    BoundInputs in = rkl_a();
    edit(in);
    return [in] { sample_complexity_bounds(in); };
  };
  expect_error(rkl([](BoundInputs& in) { in.kl_type = "tv"; }), {"kl_type", "tv", "rkl|fkl"});
  expect_error(rkl([](BoundInputs& in) { in.gamma = 0; }), {"gamma", "> 0"});
  expect_error(rkl([](BoundInputs& in) { in.gamma = -1; }), {"gamma"});
  expect_error(rkl([](BoundInputs& in) { in.weights = {}; }), {"weights", "none"});
  expect_error(rkl([](BoundInputs& in) { in.weights = {0.5, 0.6}; }), {"weights", "sum to 1", "1.1"});
  expect_error(rkl([](BoundInputs& in) { in.weights = {1.5, -0.5}; }), {"weights[1]", ">= 0"});
  expect_error(rkl([](BoundInputs& in) { in.weights = {NAN, 1.0}; }), {"weights[0]"});
  expect_error(rkl([](BoundInputs& in) { in.num_refs = 3; }), {"weights", "2 weights", "num_refs = 3"});
  expect_error(rkl([](BoundInputs& in) { in.r_max = 0; }), {"r_max", "> 0"});
  expect_error(rkl([](BoundInputs& in) { in.n = 0; }), {"n:", ">= 1"});
  expect_error(rkl([](BoundInputs& in) { in.delta = 0; }), {"delta", "(0, 1)"});
  expect_error(rkl([](BoundInputs& in) { in.delta = 1; }), {"delta", "(0, 1)"});
  expect_error(rkl([](BoundInputs& in) { in.log_cardinality = -0.1; }), {"log_cardinality", ">= 0"});
  expect_error(rkl([](BoundInputs& in) { in.coverage = 0; }), {"coverage", "> 0"});
  expect_error(rkl([](BoundInputs& in) { in.coverage = INFINITY; }), {"coverage"});
  expect_error(rkl([](BoundInputs& in) { in.r_max = 1000; }), {"overflows", "r_max"});
  expect_error([] { bound_value(rkl_a(), "fkl_suboptimality_gap"); }, {"fkl bound", "kl_type is 'rkl'"});
  expect_error([] { bound_value(rkl_a(), "optimality_gap"); }, {"optimality_gap", "rkl_suboptimality_gap"});
  expect_error([] { samples_needed(rkl_a(), 0.0, "rkl_suboptimality_gap"); }, {"epsilon", "> 0"});
  expect_error([] { samples_needed(rkl_a(), 1e-300, "rkl_suboptimality_gap"); }, {"2^62"});
}
