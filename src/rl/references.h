// The reference set of a multi-reference run, shared by the GRPO and DPO flags: the seed's --ref_a/--ref_b
// with --alpha/--beta, or K references --refs M1,M2,... with --ref_weights; the policy defaults to the first.
#pragma once
#include <string>
#include <vector>

namespace multiref {

// Which divergence the references regularize: RKL sum_i alpha_i KL(pi||pi_i), FKL sum_i beta_i KL(pi_i||pi).
enum class KLType { Rkl, Fkl };

struct ReferenceFlags {
  std::string ref_a, ref_b;
  std::vector<std::string> refs;
  std::vector<double> ref_weights;
  double alpha = 0.5, beta = 0.5;
};

struct ReferenceSet {
  std::vector<std::string> ids;    // K model ids
  std::vector<std::string> names;  // metric names: ref_a, ref_b, or ref_0, ref_1, ...
  std::vector<double> weights;     // alpha (reverse KL) or beta (forward KL), one per reference
};

// Errors name the flag and the fix (both forms given, a weight outside [0, 1], weights not summing to 1).
// `reverse_kl` picks which of --alpha / --beta splits the weight between ref_a and ref_b.
ReferenceSet resolve_references(const ReferenceFlags& f, bool reverse_kl);

}  // namespace multiref
