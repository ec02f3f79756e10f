#include "objectives/closed_form.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include "objectives/objectives.h"
#include "util/common.h"

namespace multiref {

namespace {
const double kInf = std::numeric_limits<double>::infinity();

double kl(const std::vector<double>& p, const std::vector<double>& q) {  // KL(p || q)
  double s = 0;
  for (size_t y = 0; y < p.size(); ++y) {
    if (p[y] <= 0) continue;
    if (q[y] <= 0) return kInf;
    s += p[y] * (std::log(p[y]) - std::log(q[y]));
  }
  return s;
}
}  // namespace

void validate_problem(const std::vector<std::vector<double>>& refs, const std::vector<double>& weights,
                      const std::vector<double>& rewards, double gamma) {
  if (refs.empty()) fail("refs: give at least one reference distribution");
  if (!(gamma > 0) || !std::isfinite(gamma)) fail("gamma must be a finite number > 0, got ", gamma);
  size_t n = rewards.size();
  if (n == 0) fail("rewards: the response set is empty");
  for (double r : rewards)
    if (!std::isfinite(r)) fail("rewards must be finite numbers");
  for (size_t i = 0; i < refs.size(); ++i) {
    if (refs[i].size() != n)
      fail("refs[", i, "] has ", refs[i].size(), " probabilities but rewards has ", n, " responses");
    double s = 0;
    for (double p : refs[i]) {
      if (!(p >= 0) || !std::isfinite(p)) fail("refs[", i, "]: probabilities must be finite and >= 0");
      s += p;
    }
    if (std::fabs(s - 1) > 1e-6) fail("refs[", i, "] sums to ", s, "; each reference must be a probability vector");
  }
  validate_weights(weights, refs.size(), "weights");
}

Optimum rkl_optimum(const std::vector<std::vector<double>>& refs, const std::vector<double>& alpha,
                    const std::vector<double>& rewards, double gamma) {
  validate_problem(refs, alpha, rewards, gamma);
  size_t n = rewards.size();
  std::vector<double> log_geo(n, 0.0);
  for (size_t y = 0; y < n; ++y)
    for (size_t i = 0; i < refs.size(); ++i) {
      if (alpha[i] == 0) continue;  // pi_i^0 = 1: a reference with no weight does not restrict the support
      log_geo[y] += refs[i][y] > 0 ? alpha[i] * std::log(refs[i][y]) : -kInf;
    }
  auto lse = [&](const std::vector<double>& v) {
    double m = *std::max_element(v.begin(), v.end());
    if (m == -kInf) return -kInf;
    double s = 0;
    for (double x : v) s += std::exp(x - m);
    return m + std::log(s);
  };
  Optimum o;
  o.log_F = lse(log_geo);
  if (o.log_F == -kInf)
    fail(
        "the references share no support: every response has probability 0 under some weighted reference, "
        "so prod_i pi_i^alpha_i is 0 everywhere and the RKL objective has no finite optimum");
  std::vector<double> logits(n);
  for (size_t y = 0; y < n; ++y) logits[y] = log_geo[y] + rewards[y] / gamma;
  o.log_Z = lse(logits);
  o.policy.resize(n);
  for (size_t y = 0; y < n; ++y) o.policy[y] = std::exp(logits[y] - o.log_Z);
  o.value = objective_value("rkl", o.policy, refs, alpha, rewards, gamma, &o.kl);
  return o;
}

Optimum fkl_optimum(const std::vector<std::vector<double>>& refs, const std::vector<double>& beta,
                    const std::vector<double>& rewards, double gamma) {
  validate_problem(refs, beta, rewards, gamma);
  size_t n = rewards.size();
  std::vector<double> bar(n, 0.0);
  for (size_t i = 0; i < refs.size(); ++i)
    for (size_t y = 0; y < n; ++y) bar[y] += beta[i] * refs[i][y];
  double r_max = -kInf, mean_r = 0;
  for (size_t y = 0; y < n; ++y)
    if (bar[y] > 0) {
      r_max = std::max(r_max, rewards[y]);
      mean_r += bar[y] * rewards[y];
    }
  // g(lambda) = sum_y gamma pibar(y) / (lambda - r(y)) - 1 is decreasing on (r_max, inf), +inf at r_max+,
  // >= 0 at E_pibar[r] + gamma (Jensen) and <= 0 at r_max + gamma.
  auto g = [&](double lam, double* dg) {
    double s = 0, d = 0;
    for (size_t y = 0; y < n; ++y)
      if (bar[y] > 0) {
        double inv = 1.0 / (lam - rewards[y]);
        s += gamma * bar[y] * inv;
        d -= gamma * bar[y] * inv * inv;
      }
    if (dg) *dg = d;
    return s - 1;
  };
  double lo = std::max(r_max, mean_r + gamma), hi = r_max + gamma;
  double lam = hi;
  if (lo < hi) {
    lam = 0.5 * (lo + hi);
    for (int it = 0; it < 200; ++it) {
      double d = 0, v = g(lam, &d);
      if (v > 0)
        lo = lam;
      else
        hi = lam;
      if (v == 0 || hi - lo <= 1e-15 * std::max(1.0, std::fabs(hi))) break;
      double next = lam - v / d;  // Newton; fall back to bisection when it leaves the bracket
      lam = (next > lo && next < hi) ? next : 0.5 * (lo + hi);
    }
  }
  Optimum o;
  o.lambda = lam;
  o.policy.assign(n, 0.0);
  double total = 0;
  for (size_t y = 0; y < n; ++y)
    if (bar[y] > 0) total += o.policy[y] = gamma * bar[y] / (lam - rewards[y]);
  for (auto& p : o.policy) p /= total;  // removes the last ulps of root-finding error
  o.value = objective_value("fkl", o.policy, refs, beta, rewards, gamma, &o.kl);
  return o;
}

double objective_value(const std::string& kl_type, const std::vector<double>& policy,
                       const std::vector<std::vector<double>>& refs, const std::vector<double>& w,
                       const std::vector<double>& rewards, double gamma, std::vector<double>* kl_out) {
  double er = 0;
  for (size_t y = 0; y < policy.size(); ++y)
    if (policy[y] > 0) er += policy[y] * rewards[y];
  double pen = 0;
  std::vector<double> kls;
  for (size_t i = 0; i < refs.size(); ++i) {
    double k = kl_type == "rkl" ? kl(policy, refs[i]) : kl(refs[i], policy);
    kls.push_back(k);
    if (w[i] > 0) pen += w[i] * k;
  }
  if (kl_out) *kl_out = kls;
  return er - gamma * pen;
}

}  // namespace multiref
