#include "objectives/objectives.h"

#include <cmath>

#include "util/common.h"

namespace multiref {

std::vector<double> validate_weights(const std::vector<double>& w, size_t K, const std::string& flag) {
  if (w.size() != K)
    fail(flag, ": ", w.size(), " weights given for ", K, " reference", K == 1 ? "" : "s",
         "; give one weight per reference");
  double sum = 0;
  for (double x : w) {
    if (!(x >= 0) || !std::isfinite(x)) fail(flag, ": weights must be finite and >= 0, got ", x);
    sum += x;
  }
  if (std::fabs(sum - 1.0) > 1e-6)
    fail(flag, ": weights sum to ", sum, "; they are mixture weights and must sum to 1 (e.g. 0.5,0.5)");
  return w;
}

static torch::Tensor weight_tensor(const std::vector<double>& w, const torch::Tensor& like, int64_t extra_dims) {
  auto t = torch::tensor(w, torch::TensorOptions().dtype(torch::kFloat64)).to(like.device(), like.scalar_type());
  std::vector<int64_t> shape = {(int64_t)w.size()};
  for (int64_t i = 0; i < extra_dims; ++i) shape.push_back(1);
  return t.view(shape);
}

torch::Tensor geometric_logp(const torch::Tensor& ref_lp, const std::vector<double>& alpha) {
  auto w = weight_tensor(alpha, ref_lp, ref_lp.dim() - 1);
  auto terms = w * ref_lp;
  // pi_i^0 = 1 even where pi_i = 0: a zero weight must not turn log 0 into NaN.
  return torch::where(w > 0, terms, torch::zeros_like(terms)).sum(0);
}

torch::Tensor arithmetic_logp(const torch::Tensor& ref_lp, const std::vector<double>& beta) {
  // log sum_i b_i exp(lp_i); zero weights contribute log 0 = -inf, which logsumexp handles.
  auto logw = weight_tensor(beta, ref_lp, ref_lp.dim() - 1).log();
  return torch::logsumexp(ref_lp + logw, 0);
}

VocabTerms vocab_terms(const torch::Tensor& policy_logp, const std::vector<torch::Tensor>& ref_logp,
                       const torch::Tensor& targets, const std::vector<double>& alpha,
                       const std::vector<double>& beta) {
  size_t K = ref_logp.size();
  if (K == 0) fail("vocab_terms needs at least one reference");
  // At least fp32 (bf16 log-probs would lose the small differences KLs are made of); fp64 stays fp64.
  auto dt = policy_logp.scalar_type() == torch::kFloat64 ? torch::kFloat64 : torch::kFloat32;
  auto lp = policy_logp.to(dt);                  // [B, T, V]
  auto refs = torch::stack(ref_logp, 0).to(dt);  // [K, B, T, V]
  auto p = lp.exp();
  auto tgt = targets.unsqueeze(-1);  // [B, T, 1]
  VocabTerms out;
  // Where pi_i(v) = 0 and pi(v) > 0, KL(pi||pi_i) is infinite; a -inf log-prob gives exactly that.
  // p log(p/q) with p = 0 is 0 whatever q is. The log-ratio is zeroed *before* the product, so that neither
  // the value nor the gradient meets 0 * inf (a NaN that torch::where applied afterwards would not stop).
  auto xlogy_ratio = [](const torch::Tensor& p, const torch::Tensor& log_p, const torch::Tensor& log_q) {
    auto d = log_p - log_q;
    return p * torch::where(p > 0, d, torch::zeros_like(d));
  };
  out.kl_policy_ref = xlogy_ratio(p.unsqueeze(0), lp.unsqueeze(0), refs).sum(-1);  // [K, B, T]
  out.kl_ref_policy = xlogy_ratio(refs.exp(), refs, lp.unsqueeze(0)).sum(-1);      // [K, B, T]
  auto geo_unnorm = geometric_logp(refs, alpha);                                   // [B, T, V]
  auto log_f = torch::logsumexp(geo_unnorm, -1);                                   // [B, T]
  auto log_geo = geo_unnorm - log_f.unsqueeze(-1);
  out.neg_log_f = -log_f;
  out.kl_policy_geo = xlogy_ratio(p, lp, log_geo).sum(-1);
  out.log_geo_target = log_geo.gather(-1, tgt).squeeze(-1);
  out.log_arith_target =
      arithmetic_logp(refs.gather(-1, tgt.unsqueeze(0).expand({(int64_t)K, -1, -1, -1})).squeeze(-1), beta);
  return out;
}

VocabTerms vocab_terms_chunked(const LogpChunk& policy, const std::vector<LogpChunk>& refs,
                               const torch::Tensor& targets, const std::vector<double>& alpha,
                               const std::vector<double>& beta, int64_t chunk) {
  int64_t T = targets.size(1);
  std::vector<VocabTerms> parts;
  for (int64_t s = 0; s < T; s += chunk) {
    int64_t n = std::min(chunk, T - s);
    std::vector<torch::Tensor> r;
    for (auto& f : refs) r.push_back(f(s, n));
    parts.push_back(vocab_terms(policy(s, n), r, targets.narrow(1, s, n), alpha, beta));
  }
  auto join = [&](torch::Tensor VocabTerms::*m, int64_t dim) {
    std::vector<torch::Tensor> v;
    for (auto& p : parts) v.push_back(p.*m);
    return torch::cat(v, dim);
  };
  VocabTerms out;
  out.kl_policy_ref = join(&VocabTerms::kl_policy_ref, 2);
  out.kl_ref_policy = join(&VocabTerms::kl_ref_policy, 2);
  out.kl_policy_geo = join(&VocabTerms::kl_policy_geo, 1);
  out.neg_log_f = join(&VocabTerms::neg_log_f, 1);
  out.log_geo_target = join(&VocabTerms::log_geo_target, 1);
  out.log_arith_target = join(&VocabTerms::log_arith_target, 1);
  return out;
}

torch::Tensor sampled_kl(const torch::Tensor& r, SampledKL k) {
  switch (k) {
    case SampledKL::K1:
      return -r;
    case SampledKL::K2:
      return 0.5 * r * r;
    case SampledKL::K3:
      return torch::expm1(r) - r;  // e^r - 1 would cancel in float32 for |r| below ~1e-3
  }
  return r;
}

}  // namespace multiref
