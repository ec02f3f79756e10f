#include "objectives/losses.h"

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

bool kl_penalty_is_exact(KLPenalty p) {
  return p == KLPenalty::RklFull || p == KLPenalty::RklK1 || p == KLPenalty::RklK3 || p == KLPenalty::FklRefSamples;
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

torch::Tensor group_advantages(const torch::Tensor& rewards, int64_t G, bool scale_std) {
  int64_t N = rewards.size(0);
  if (G < 1 || N % G != 0) fail("group_advantages: ", N, " rewards do not split into groups of ", G);
  auto r = rewards.to(torch::kFloat32).view({N / G, G});  // [P, G]
  auto adv = r - r.mean(1, true);
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

FklSampleLoss fkl_ref_sample_loss(const torch::Tensor& policy_lp, const torch::Tensor& ref_lp,
                                  const torch::Tensor& mask, const std::vector<int64_t>& ref_index, int64_t K,
                                  double gamma) {
  auto m = mask.to(policy_lp.scalar_type());
  auto seq_policy = (policy_lp * m).sum(1);  // [M] log pi(y)
  auto seq_ref = (ref_lp * m).sum(1);        // [M] log pi_i(y) of y's own reference
  FklSampleLoss out;
  // grad of gamma * sum_i beta_i KL(pi_i || pi) = -gamma * E_{i ~ beta, y ~ pi_i}[grad log pi(y)]
  out.loss = gamma * (-seq_policy).mean();
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
      double cap = cfg.fkl_log_ratio_cap;
      auto ratio = [cap](const torch::Tensor& u) {
        auto over = (u - cap).clamp_min(0);
        return torch::exp(u.clamp_max(cap) + torch::log1p(over));
      };
      h = ratio(u_r) - ratio(u_c);  // pibar/pi(y_l) - pibar/pi(y_w)
      reward_c = -g * ratio(u_c);   // the FKL optimum's implicit reward, up to the constant lambda
      reward_r = -g * ratio(u_r);
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
  for (int64_t i = 0; i < K; ++i)  // implicit rewards against each reference alone
    out.stats.per_ref.push_back(rewards(g * (pc - rc[i]), g * (pr - rr[i])));
  return out;
}

}  // namespace multiref
