#include "objectives/bounds.h"

#include <cmath>

#include "util/common.h"

namespace multiref {

namespace {

// Every transcribed bound has the shape
//   gap(n) = c * gamma_paper^g * C * exp(a * R_max) * R_max^b * ( log(|R|/delta) / n )^q
// so one row of numbers per bound is the whole formula; `formula` repeats it in the paper's notation.
struct BoundSpec {
  const char* name;
  const char* kl_type;
  const char* theorem;      // where in the paper
  const char* source;       // which version it was transcribed from, and how
  const char* formula;      // the statement, plain text, in the paper's gamma
  const char* assumptions;  // what the statement assumes
  const char* rate;         // the order in n the paper reports
  double c;                 // leading constant
  double g;                 // power of gamma_paper (= 1/gamma)
  double a;                 // exp(a * R_max)
  double b;                 // R_max^b
  double q;                 // (log(|R|/delta) / n)^q
};

const BoundSpec kBounds[] = {
    // transcribed from arXiv:2502.01203v3, Theorem 5.2 (reverse KL, multiple references; sub-optimality gap of
    // the RKL-regularized objective between the policy built on the true reward and the one built on the MLE
    // reward from n Bradley-Terry preference samples).
    {"rkl_suboptimality_gap", "rkl", "Theorem 5.2",
     "arXiv:2502.01203v3 (statement as quoted by a secondary summary; not re-checked against the PDF)",
     "J^gamma(pi*_gamma, pi_hat_gamma) <= gamma * C_{alpha,eps_rkl} * 128 * e^{4 R_max} * R_max^2 * "
     "log(|R|/delta) / n",
     "Bradley-Terry preferences; rewards bounded by R_max (Assumption 4.1); finite reward class R "
     "(Assumption 4.2); coverage coefficient C_{alpha,eps_rkl} of the alpha-geometric reference mixture; "
     "holds with probability >= 1 - delta",
     "O(1/n)", 128.0, 1.0, 4.0, 2.0, 1.0},
    // transcribed from arXiv:2502.01203v3, Theorem 6.2 (forward KL, multiple references; sub-optimality gap of
    // the FKL-regularized objective). No gamma in the statement.
    {"fkl_suboptimality_gap", "fkl", "Theorem 6.2",
     "arXiv:2502.01203v3 (statement as quoted by a secondary summary; not re-checked against the PDF)",
     "J_hat^gamma(pi~*_gamma, pi~_hat_gamma) <= 16 * C_{beta,eps_fkl} * e^{2 R_max} * R_max * "
     "sqrt(log(|R|/delta) / n)",
     "Bradley-Terry preferences; rewards bounded by R_max (Assumption 4.1); finite reward class R "
     "(Assumption 4.2); coverage coefficient of the beta-arithmetic reference mixture (the summary prints "
     "C_{beta,eps_rkl}); holds with probability >= 1 - delta",
     "O(1/sqrt(n))", 16.0, 0.0, 2.0, 1.0, 0.5},
};

const BoundSpec& find_bound(const std::string& name) {
  std::string known;
  for (const auto& b : kBounds) {
    if (name == b.name) return b;
    known += (known.empty() ? "" : ", ") + std::string(b.name);
  }
  fail("bound '", name, "' is not one of the transcribed bounds: ", known);
}

bool finite_positive(double x) {
  return std::isfinite(x) && x > 0.0;
}

// log of the bound, computed in log space so that large R_max or tiny delta stay representable until the end.
double log_gap(const BoundSpec& b, const BoundInputs& in, double n) {
  const double log_term = in.log_cardinality + std::log(1.0 / in.delta);  // log(|R|/delta) > 0 since delta < 1
  return std::log(b.c) + b.g * std::log(1.0 / in.gamma) + std::log(in.coverage) + b.a * in.r_max +
         b.b * std::log(in.r_max) + b.q * (std::log(log_term) - std::log(n));
}

const BoundSpec& bound_for(const BoundInputs& in, const std::string& name) {
  const BoundSpec& b = find_bound(name);
  if (in.kl_type != b.kl_type) fail("bound '", name, "' is a ", b.kl_type, " bound but kl_type is '", in.kl_type, "'");
  return b;
}

}  // namespace

void validate_bound_inputs(const BoundInputs& in, bool check_n) {
  if (in.kl_type != "rkl" && in.kl_type != "fkl") fail("kl_type: '", in.kl_type, "' is not one of rkl|fkl");
  if (!finite_positive(in.gamma)) fail("gamma: the KL coefficient must be finite and > 0 (got ", in.gamma, ")");
  if (in.weights.empty()) fail("weights: need one weight per reference (got none)");
  if (in.num_refs < 0) fail("num_refs: must be >= 0 (got ", in.num_refs, ")");
  if (in.num_refs != 0 && in.num_refs != static_cast<int64_t>(in.weights.size()))
    fail("weights: ", in.weights.size(), " weights for num_refs = ", in.num_refs, " references");
  double sum = 0.0;
  for (size_t i = 0; i < in.weights.size(); ++i) {
    const double w = in.weights[i];
    if (!std::isfinite(w) || w < 0.0) fail("weights[", i, "]: must be finite and >= 0 (got ", w, ")");
    sum += w;
  }
  // The paper requires sum_i alpha_i = 1 (resp. beta_i); a tolerance absorbs decimal inputs like 0.1+0.2+0.7.
  if (std::fabs(sum - 1.0) > 1e-9) fail("weights: must sum to 1 (got ", sum, ")");
  if (!finite_positive(in.r_max)) fail("r_max: must be finite and > 0 (got ", in.r_max, ")");
  if (check_n && in.n < 1) fail("n: the number of samples must be >= 1 (got ", in.n, ")");
  if (!(in.delta > 0.0 && in.delta < 1.0))
    fail("delta: the confidence parameter must lie in (0, 1) (got ", in.delta, ")");
  // |R| >= 1, so log |R| >= 0.
  if (!std::isfinite(in.log_cardinality) || in.log_cardinality < 0.0)
    fail("log_cardinality: log |R| must be finite and >= 0 (got ", in.log_cardinality, ")");
  if (!finite_positive(in.coverage))
    fail("coverage: the coverage coefficient must be finite and > 0 (got ", in.coverage, ")");
}

std::vector<std::string> bound_names() {
  std::vector<std::string> out;
  for (const auto& b : kBounds) out.emplace_back(b.name);
  return out;
}

double bound_value(const BoundInputs& in, const std::string& bound_name) {
  validate_bound_inputs(in);
  const BoundSpec& b = bound_for(in, bound_name);
  const double v = std::exp(log_gap(b, in, static_cast<double>(in.n)));
  if (!std::isfinite(v)) fail(bound_name, ": the bound overflows a double (r_max = ", in.r_max, " is too large)");
  return v;
}

nlohmann::json sample_complexity_bounds(const BoundInputs& in) {
  validate_bound_inputs(in);
  nlohmann::json out;
  out["kl_type"] = in.kl_type;
  out["num_refs"] = in.weights.size();
  out["weights"] = in.weights;
  out["gamma"] = in.gamma;
  out["gamma_paper"] = 1.0 / in.gamma;
  out["bounds"] = nlohmann::json::array();
  for (const auto& b : kBounds) {
    if (in.kl_type != b.kl_type) continue;
    nlohmann::json used = {{"coverage", in.coverage},
                           {"r_max", in.r_max},
                           {"log_cardinality", in.log_cardinality},
                           {"delta", in.delta},
                           {"n", in.n}};
    if (b.g != 0.0) used["gamma_paper"] = 1.0 / in.gamma;
    out["bounds"].push_back({{"name", b.name},
                             {"theorem", b.theorem},
                             {"source", b.source},
                             {"formula", b.formula},
                             {"assumptions", b.assumptions},
                             {"rate", b.rate},
                             {"value", bound_value(in, b.name)},
                             {"inputs", used}});
  }
  return out;
}

int64_t samples_needed(const BoundInputs& in, double epsilon, const std::string& bound_name) {
  validate_bound_inputs(in, /*check_n=*/false);
  const BoundSpec& b = bound_for(in, bound_name);
  if (!finite_positive(epsilon)) fail("epsilon: the target gap must be finite and > 0 (got ", epsilon, ")");
  // Compared in linear space, exactly as bound_value computes the gap, so that epsilon = bound_value(n) gives n.
  auto ok = [&](int64_t n) { return std::exp(log_gap(b, in, static_cast<double>(n))) <= epsilon; };
  if (ok(1)) return 1;
  // Doubling finds an n that reaches epsilon; then bisect between the last failure and it.
  int64_t lo = 1, hi = 2;
  const int64_t cap = int64_t{1} << 62;
  while (!ok(hi)) {
    if (hi >= cap) fail(bound_name, ": epsilon = ", epsilon, " needs more than 2^62 samples");
    lo = hi;
    hi *= 2;
  }
  while (hi - lo > 1) {
    const int64_t mid = lo + (hi - lo) / 2;
    (ok(mid) ? hi : lo) = mid;
  }
  return hi;
}

}  // namespace multiref
