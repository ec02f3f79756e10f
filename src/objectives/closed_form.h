// Closed-form optima of the multi-reference objectives on a finite response set (arXiv:2502.01203), in
// double precision. Used by `multiref theory` and as the oracle the trainers' losses are tested against.
#pragma once
#include <string>
#include <vector>

namespace multiref {

struct Optimum {
  std::vector<double> policy;  // pi*(y) over the response set
  double value = 0;            // E_pi*[r] - gamma * sum_i w_i KL_i(pi*)
  std::vector<double> kl;      // KL_i for each reference, in the direction of the objective
  double lambda = 0;           // FKL only: the normalizer, the root of sum_y pi*(y) = 1
  double log_F = 0;            // RKL only: log sum_y prod_i pi_i(y)^alpha_i (<= 0; 0 iff the references agree)
  double log_Z = 0;            // RKL only: log sum_y prod_i pi_i(y)^alpha_i exp(r(y)/gamma); value = gamma log_Z
};

// RKL: maximize E_pi[r] - gamma sum_i alpha_i KL(pi || pi_i). pi* ∝ prod_i pi_i^alpha_i exp(r / gamma), on the
// intersection of the supports of the references with alpha_i > 0. Computed in log space.
Optimum rkl_optimum(const std::vector<std::vector<double>>& refs, const std::vector<double>& alpha,
                    const std::vector<double>& rewards, double gamma);

// FKL: maximize E_pi[r] - gamma sum_i beta_i KL(pi_i || pi). pi* = gamma pibar / (lambda - r) on supp(pibar),
// pibar = sum_i beta_i pi_i, lambda the unique root in [max(r_max, E_pibar[r] + gamma), r_max + gamma]
// (r_max over supp pibar), found by safeguarded Newton steps inside a shrinking bisection bracket.
Optimum fkl_optimum(const std::vector<std::vector<double>>& refs, const std::vector<double>& beta,
                    const std::vector<double>& rewards, double gamma);

// The objective's value for any policy (for brute-force checks). kl_type "rkl" or "fkl".
double objective_value(const std::string& kl_type, const std::vector<double>& policy,
                       const std::vector<std::vector<double>>& refs, const std::vector<double>& weights,
                       const std::vector<double>& rewards, double gamma, std::vector<double>* kl_out = nullptr);

// Checks a problem (each reference a probability vector over the same set, rewards of that size, gamma > 0,
// weights a probability vector with one entry per reference); errors say what to fix.
void validate_problem(const std::vector<std::vector<double>>& refs, const std::vector<double>& weights,
                      const std::vector<double>& rewards, double gamma);

}  // namespace multiref
