#include "objectives/losses.h"

#include <algorithm>
#include <cmath>

#include "util/common.h"

namespace multiref {

namespace {
torch::Tensor masked_mean(const torch::Tensor& x, const torch::Tensor& mask) {
  auto m = mask.to(x.scalar_type());
  return (x * m).sum() / m.sum().clamp_min(1);
}
// A statistic: detached, float64, left on its device.
torch::Tensor stat(const torch::Tensor& t) {
  return t.detach().to(torch::kFloat64);
}
}  // namespace

std::vector<std::pair<std::string, KLPenalty>> kl_penalty_choices() {
  return {{"full", KLPenalty::RklFull},
          {"k1", KLPenalty::RklK1},
          {"k2", KLPenalty::RklK2},
          {"k3", KLPenalty::RklK3},
          {"mixture_k3", KLPenalty::RklMixtureK3},
          {"ref_samples", KLPenalty::FklRefSamples},
          {"fkl_full", KLPenalty::FklFull},
          {"fkl_mixture_k3", KLPenalty::FklMixtureK3}};
}

std::string kl_penalty_name(KLPenalty p) {
  for (auto& [n, v] : kl_penalty_choices())
    if (v == p) return n;
  return "?";
}

bool kl_penalty_allowed_in(KLPenalty p, KLIn where) {
  return where == KLIn::Loss || p == KLPenalty::RklK1 || p == KLPenalty::RklK2 || p == KLPenalty::RklK3;
}

bool kl_penalty_is_exact(KLPenalty p, KLIn where) {
  if (where == KLIn::Reward) return p == KLPenalty::RklK1;
  return p == KLPenalty::RklFull || p == KLPenalty::FklRefSamples;
}

bool kl_penalty_is_fkl(KLPenalty p) {
  return p == KLPenalty::FklRefSamples || p == KLPenalty::FklFull || p == KLPenalty::FklMixtureK3;
}

bool kl_penalty_needs_vocab(KLPenalty p) {
  return p == KLPenalty::RklFull || p == KLPenalty::RklMixtureK3 || p == KLPenalty::FklFull ||
         p == KLPenalty::FklMixtureK3;
}

TokenPenalty token_penalty(KLPenalty p, const torch::Tensor& policy_lp, const torch::Tensor& ref_lp,
                           const torch::Tensor& mask, const std::vector<double>& w, const VocabTerms* vocab) {
  int64_t K = ref_lp.size(0);
  if ((int64_t)w.size() != K) fail("token_penalty: ", w.size(), " weights for ", K, " references");
  if (kl_penalty_needs_vocab(p) && !vocab) fail("token_penalty: ", kl_penalty_name(p), " needs full-vocabulary terms");
  TokenPenalty out;
  auto zero = torch::zeros_like(policy_lp);
  auto per_ref = [&](const torch::Tensor& kl_k) {  // kl_k: [K, N, T]
    out.per_token = zero;
    for (int64_t i = 0; i < K; ++i) {
      if (w[(size_t)i] > 0) out.per_token = out.per_token + w[(size_t)i] * kl_k[i];
      out.per_ref_kl.push_back(stat(masked_mean(kl_k[i], mask)));
    }
  };
  auto sampled = [&](SampledKL k) { return sampled_kl(ref_lp - policy_lp.unsqueeze(0), k); };  // [K, N, T]
  switch (p) {
    case KLPenalty::RklFull:
      per_ref(vocab->kl_policy_ref);
      break;
    case KLPenalty::RklK1:
      per_ref(sampled(SampledKL::K1));
      break;
    case KLPenalty::RklK2:
      per_ref(sampled(SampledKL::K2));
      break;
    case KLPenalty::RklK3:
      per_ref(sampled(SampledKL::K3));
      break;
    case KLPenalty::FklFull:
      per_ref(vocab->kl_ref_policy);
      break;
    case KLPenalty::RklMixtureK3:
    case KLPenalty::FklMixtureK3: {
      // The penalty is one k3 against the token mixture; per-reference k3 values are still reported.
      per_ref(sampled(SampledKL::K3));
      auto mix = p == KLPenalty::RklMixtureK3 ? vocab->log_geo_target : vocab->log_arith_target;
      out.per_token = sampled_kl(mix - policy_lp, SampledKL::K3);
      break;
    }
    case KLPenalty::FklRefSamples:
      fail("ref_samples is not a token-level penalty: use fkl_ref_sample_loss on samples from the references");
  }
  out.per_token = out.per_token * mask.to(out.per_token.scalar_type());
  return out;
}

std::vector<std::pair<std::string, LossAggregation>> loss_aggregation_choices() {
  return {{"token_mean", LossAggregation::TokenMean},
          {"sequence_mean", LossAggregation::SequenceMean},
          {"dr_grpo", LossAggregation::DrGrpo}};
}

torch::Tensor group_advantages(const torch::Tensor& rewards, int64_t G, bool scale_std, AdvantageBaseline baseline) {
  int64_t N = rewards.size(0);
  if (G < 1 || N % G != 0) fail("group_advantages: ", N, " rewards do not split into groups of ", G);
  auto dt = rewards.scalar_type() == torch::kFloat64 ? torch::kFloat64 : torch::kFloat32;
  auto r = rewards.to(dt).view({N / G, G});  // [P, G]
  torch::Tensor adv;
  if (baseline == AdvantageBaseline::GroupMean)
    adv = r - r.mean(1, true);
  else  // r - mean of the others = G/(G-1) (r - mean); no other sample: baseline 0
    adv = G > 1 ? (r - r.mean(1, true)) * ((double)G / (double)(G - 1)) : r.clone();
  if (scale_std) {
    auto sd = G > 1 ? r.std(1, /*unbiased=*/true, /*keepdim=*/true) : torch::zeros_like(r.narrow(1, 0, 1));
    adv = adv / (sd + 1e-4);
  }
  return adv.view({N});
}

GrpoLoss grpo_loss(const torch::Tensor& policy_lp, const torch::Tensor& old_lp, const torch::Tensor& advantages,
                   const torch::Tensor& mask, const torch::Tensor& kl_per_token, const GrpoLossConfig& cfg) {
  auto m = mask.to(policy_lp.scalar_type());
  auto A = advantages.to(policy_lp.scalar_type()).unsqueeze(1);  // [N, 1]
  auto ratio = torch::exp(policy_lp - old_lp);                   // [N, T]
  auto clipped = torch::clamp(ratio, 1 - cfg.epsilon_low, 1 + cfg.epsilon_high);
  auto per_token = -torch::min(ratio * A, clipped * A);
  if (kl_per_token.defined() && cfg.gamma != 0) per_token = per_token + cfg.gamma * kl_per_token;
  torch::Tensor loss;
  int64_t N = policy_lp.size(0);
  switch (cfg.aggregation) {
    case LossAggregation::TokenMean:
      loss = (per_token * m).sum() / m.sum().clamp_min(1);
      break;
    case LossAggregation::SequenceMean:
      loss = ((per_token * m).sum(1) / m.sum(1).clamp_min(1)).mean();
      break;
    case LossAggregation::DrGrpo:
      if (cfg.max_completion_length < 1) fail("dr_grpo aggregation needs max_completion_length >= 1");
      loss = (per_token * m).sum() / (double)(N * cfg.max_completion_length);
      break;
  }
  GrpoLoss out;
  out.loss = loss;
  auto low = (ratio < 1 - cfg.epsilon_low) & (A < 0), high = (ratio > 1 + cfg.epsilon_high) & (A > 0);
  out.stats.clip_low = stat(masked_mean(low.to(torch::kFloat32), m));
  out.stats.clip_high = stat(masked_mean(high.to(torch::kFloat32), m));
  out.stats.clip_region = stat(masked_mean((low | high).to(torch::kFloat32), m));
  if (kl_per_token.defined()) out.stats.kl = stat(masked_mean(kl_per_token, m));
  return out;
}

std::vector<int64_t> stratified_counts(const std::vector<double>& beta, int64_t M) {
  std::vector<int64_t> m(beta.size(), 0);
  std::vector<std::pair<double, size_t>> rest;
  int64_t given = 0;
  for (size_t i = 0; i < beta.size(); ++i) {
    double want = beta[i] * (double)M;
    m[i] = (int64_t)std::floor(want);
    given += m[i];
    rest.push_back({want - (double)m[i], i});
  }
  std::stable_sort(rest.begin(), rest.end(), [](auto& a, auto& b) { return a.first > b.first; });
  for (size_t j = 0; given < M && j < rest.size(); ++j)
    if (beta[rest[j].second] > 0) ++m[rest[j].second], ++given;
  for (size_t i = 0; i < beta.size(); ++i)
    if (beta[i] > 0 && m[i] == 0) m[i] = 1;  // every reference of the objective is sampled
  return m;
}

std::vector<double> fkl_sample_coefficients(const std::vector<double>& weights, const std::vector<int64_t>& lengths,
                                            LossAggregation agg, int64_t max_completion_length,
                                            double policy_completions_per_token) {
  if (weights.size() != lengths.size())
    fail("fkl_sample_coefficients: ", weights.size(), " weights, ", lengths.size(), " lengths");
  std::vector<double> c(weights.size());
  for (size_t m = 0; m < c.size(); ++m) {
    double scale = agg == LossAggregation::DrGrpo      ? 1.0 / (double)std::max<int64_t>(1, max_completion_length)
                   : agg == LossAggregation::TokenMean ? policy_completions_per_token
                                                       : 1.0 / (double)std::max<int64_t>(1, lengths[m]);
    c[m] = weights[m] * scale;
  }
  return c;
}

FklSampleLoss fkl_ref_sample_loss(const torch::Tensor& policy_lp, const torch::Tensor& ref_lp,
                                  const torch::Tensor& mask, const std::vector<int64_t>& ref_index,
                                  const std::vector<double>& coef, int64_t K, double gamma) {
  if ((int64_t)coef.size() != policy_lp.size(0) || ref_index.size() != coef.size())
    fail("fkl_ref_sample_loss: ", policy_lp.size(0), " samples, ", ref_index.size(), " reference indices, ",
         coef.size(), " coefficients");
  auto m = mask.to(policy_lp.scalar_type());
  auto seq_policy = (policy_lp * m).sum(1);  // [M] log pi(y)
  auto seq_ref = (ref_lp * m).sum(1);        // [M] log pi_i(y) of y's own reference
  FklSampleLoss out;
  // grad of gamma * sum_i beta_i KL(pi_i || pi) = -gamma * sum_i beta_i E_{y ~ pi_i}[grad log pi(y)]
  auto c = torch::tensor(coef, torch::kFloat64).to(seq_policy.device(), seq_policy.scalar_type());
  out.loss = gamma * (c * -seq_policy).sum();
  auto gap = stat(seq_ref - seq_policy);  // [M]
  // Per reference: the mean gap over its samples, summed in sample order (on the device: no sync per sample).
  std::vector<torch::Tensor> sum((size_t)K);
  std::vector<int64_t> count((size_t)K, 0);
  for (size_t n = 0; n < ref_index.size(); ++n) {
    int64_t i = ref_index[n];
    if (i < 0 || i >= K) fail("fkl_ref_sample_loss: reference index ", i, " outside [0, ", K, ")");
    if (!sum[(size_t)i].defined()) sum[(size_t)i] = torch::zeros({}, gap.options());
    sum[(size_t)i] = sum[(size_t)i] + gap[(int64_t)n];
    ++count[(size_t)i];
  }
  out.stats.kl.resize((size_t)K);
  for (int64_t i = 0; i < K; ++i)
    if (count[(size_t)i] > 0) out.stats.kl[(size_t)i] = sum[(size_t)i] / (double)count[(size_t)i];
  out.stats.nll = stat((-seq_policy).mean());
  return out;
}

std::vector<std::pair<std::string, DpoLossType>> dpo_loss_choices() {
  return {{"sigmoid", DpoLossType::Sigmoid}, {"ipo", DpoLossType::Ipo}, {"hinge", DpoLossType::Hinge}};
}

DpoLoss dpo_loss(const torch::Tensor& policy_chosen, const torch::Tensor& policy_rejected,
                 const torch::Tensor& ref_chosen, const torch::Tensor& ref_rejected, const std::vector<double>& w,
                 DpoReference ref, const DpoLossConfig& cfg) {
  if (!(cfg.gamma > 0)) fail("dpo_loss: gamma must be > 0, got ", cfg.gamma);
  // float64 throughout: sequence log-probs are sums of hundreds of terms and FKL exponentiates them.
  auto pc = policy_chosen.to(torch::kFloat64), pr = policy_rejected.to(torch::kFloat64);
  // Reference log-probs may come precomputed (on the CPU) while the policy's are on the GPU.
  auto rc = ref_chosen.to(pc.device(), torch::kFloat64), rr = ref_rejected.to(pc.device(), torch::kFloat64);
  int64_t K = rc.size(0);
  double g = cfg.gamma;
  // exp(u) for a log-ratio u, continued as cap + log1p(u - cap) above the cap (finite for u up to +-1e4).
  auto fkl_ratio = [cap = cfg.fkl_log_ratio_cap](const torch::Tensor& u) {
    auto over = (u - cap).clamp_min(0);
    return torch::exp(u.clamp_max(cap) + torch::log1p(over));
  };
  torch::Tensor h, reward_c, reward_r;  // margin h (loss logits = gamma * h) and implicit rewards
  switch (ref) {
    case DpoReference::RklGeometric:
    case DpoReference::TokenGeometric:
    case DpoReference::TokenArithmetic: {
      torch::Tensor mix_c, mix_r;
      if (ref == DpoReference::RklGeometric) {
        if ((int64_t)w.size() != K) fail("dpo_loss: ", w.size(), " weights for ", K, " references");
        mix_c = geometric_logp(rc, w);
        mix_r = geometric_logp(rr, w);
      } else {
        if (K != 1) fail("dpo_loss: token-mixture references come as one row (the summed mixture log-probs)");
        mix_c = rc[0];
        mix_r = rr[0];
      }
      reward_c = g * (pc - mix_c);
      reward_r = g * (pr - mix_r);
      h = (pc - mix_c) - (pr - mix_r);
      break;
    }
    case DpoReference::FklArithmetic: {
      if ((int64_t)w.size() != K) fail("dpo_loss: ", w.size(), " weights for ", K, " references");
      // u = log(pibar(y) / pi(y)) in log space; only exp(u) is ever formed, after capping large u.
      auto u_c = arithmetic_logp(rc, w) - pc, u_r = arithmetic_logp(rr, w) - pr;
      h = fkl_ratio(u_r) - fkl_ratio(u_c);  // pibar/pi(y_l) - pibar/pi(y_w)
      reward_c = -g * fkl_ratio(u_c);       // the FKL optimum's implicit reward, up to the constant lambda
      reward_r = -g * fkl_ratio(u_r);
      break;
    }
  }
  torch::Tensor losses;
  switch (cfg.type) {
    case DpoLossType::Sigmoid:
      losses = (1 - cfg.label_smoothing) * torch::softplus(-g * h) + cfg.label_smoothing * torch::softplus(g * h);
      break;
    case DpoLossType::Ipo:
      losses = (h - 1 / (2 * g)).pow(2);
      break;
    case DpoLossType::Hinge:
      losses = torch::relu(1 - g * h);
      break;
  }
  DpoLoss out;
  out.loss = losses.mean().to(policy_chosen.scalar_type());
  auto rewards = [](const torch::Tensor& c, const torch::Tensor& r) {
    return DpoRewardStats{stat(c.mean()), stat(r.mean()), stat((c - r).mean()),
                          stat((c > r).to(torch::kFloat64).mean())};
  };
  out.stats.rewards = rewards(reward_c, reward_r);
  out.stats.logp_chosen = stat(pc.mean());
  out.stats.logp_rejected = stat(pr.mean());
  // Implicit rewards against each reference alone, of the loss's own kind: RKL gamma log(pi / pi_i), FKL
  // -gamma pi_i / pi (the FKL optimum's reward up to lambda, with the mixture replaced by pi_i).
  for (int64_t i = 0; i < K; ++i) {
    if (ref == DpoReference::FklArithmetic)
      out.stats.per_ref.push_back(rewards(-g * fkl_ratio(rc[i] - pc), -g * fkl_ratio(rr[i] - pr)));
    else
      out.stats.per_ref.push_back(rewards(g * (pc - rc[i]), g * (pr - rr[i])));
  }
  return out;
}

}  // namespace multiref
