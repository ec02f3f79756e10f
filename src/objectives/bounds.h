// The sample-complexity (sub-optimality gap) bounds of arXiv:2502.01203 as a calculator: the value of each
// transcribed bound for given inputs, and its inversion to the number of samples n that reaches a target gap.
// Every constant lives in one table in bounds.cpp, each entry marked with the theorem it was transcribed from.
//
// Conventions. The project's `gamma` is the KL coefficient (objective E_pi[r] - gamma * sum_i w_i KL_i), as in
// every other module. The paper writes the same objective as E_pi[r] - (1/gamma_paper) * sum_i w_i KL_i, so its
// gamma_paper = 1 / gamma (an inverse temperature). The bounds are stated in gamma_paper; the calculator converts.
// All logarithms are natural.
#pragma once
#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

namespace multiref {

struct BoundInputs {
  std::string kl_type = "rkl";   // "rkl" (Section 5 of the paper) or "fkl" (Section 6)
  double gamma = 0.1;            // the project's KL coefficient (> 0); the paper's gamma is 1/gamma
  std::vector<double> weights;   // alpha (rkl) or beta (fkl): one per reference, a probability vector
  int64_t num_refs = 0;          // K; 0 means weights.size(), otherwise it must equal weights.size()
  double r_max = 1.0;            // R_max: the bound on the reward functions (paper's Assumption 4.1)
  int64_t n = 1;                 // number of preference samples the reward was estimated from
  double delta = 0.05;           // the bound holds with probability at least 1 - delta
  double log_cardinality = 0.0;  // log |R|: the reward class is finite (paper's Assumption 4.2)
  double coverage = 1.0;         // C_{alpha,eps_rkl} (rkl) or C_{beta,eps_fkl} (fkl), supplied by the caller
};

// Throws multiref::Error naming the field when an input is out of its domain. `check_n` is false for
// samples_needed, which ignores `n`.
void validate_bound_inputs(const BoundInputs& in, bool check_n = true);

// Names of the transcribed bounds ("rkl_suboptimality_gap", "fkl_suboptimality_gap").
std::vector<std::string> bound_names();

// The value of one bound (it must be of in.kl_type).
double bound_value(const BoundInputs& in, const std::string& bound_name);

// Every bound of in.kl_type: {"kl_type", "num_refs", "gamma", "gamma_paper", "bounds": [{"name", "theorem",
// "source", "formula", "assumptions", "rate", "value", "inputs": {...the inputs the formula used...}}]}.
nlohmann::json sample_complexity_bounds(const BoundInputs& in);

// The smallest n >= 1 whose bound is <= epsilon (in.n is ignored). The bounds decrease in n, so this is a
// bisection on n; a closed form exists for both, and the tests check the bisection against it.
int64_t samples_needed(const BoundInputs& in, double epsilon, const std::string& bound_name);

}  // namespace multiref
