#include <algorithm>
#include <numeric>

#include "rl/grpo_trainer.h"
#include "rl/grpo_trainer_impl.h"
#include "util/runtime.h"

namespace multiref {

namespace {

// Completion tokens of rows [from, from + n).
int64_t completion_tokens(const Rollout& r, int64_t from, int64_t n) {
  return std::accumulate(r.completion_lengths.begin() + from, r.completion_lengths.begin() + from + n, int64_t{0});
}

}  // namespace

void GrpoTrainer::micro_step(Rollout& r, int64_t from, int64_t n, int64_t step, StepStats& stats) {
  auto& I = *impl_;
  const int64_t P = r.prompt_len, C = r.completion_mask.size(1);
  int64_t budget = I.cfg.update_batch_tokens > 0 ? (int64_t)I.cfg.update_batch_tokens
                   : I.device.is_cuda()          ? 0  // the whole micro-batch: a GPU's memory is the batch size's
                                                 : kUpdateTokensCpu;
  auto slices = plan_update_slices(r.prompt_lengths, r.completion_lengths, P, C, from, n, budget);
  // The micro-batch's statistics are token means over its rows (clip ratios, per-token KLs): a slice's counts by
  // its share of the micro-batch's completion tokens, which adds up to the micro-batch's own mean.
  const double tokens = (double)std::max<int64_t>(1, completion_tokens(r, from, n));
  for (const auto& s : slices)
    slice_step(r, s, (double)s.n / (double)n, (double)completion_tokens(r, s.from, s.n) / tokens, step, stats);
}

void GrpoTrainer::slice_step(Rollout& r, const RowSlice& s, double row_share, double token_share, int64_t step,
                             StepStats& stats) {
  auto& I = *impl_;
  const auto& cfg = I.cfg;
  const double gas = (double)cfg.gradient_accumulation_steps;
  const int64_t from = s.from, n = s.n, P = s.prompt(r.prompt_len), C = s.completion;
  // The slice's rows and columns: leading columns no row's prompt uses and trailing ones past every completion
  // are padding throughout (positions come from the mask: dropping them changes no value).
  auto ids = r.ids.narrow(0, from, n).narrow(1, s.left, P + C);
  auto mask = r.mask.narrow(0, from, n).narrow(1, s.left, P + C);
  auto cm = r.completion_mask.narrow(0, from, n).narrow(1, 0, C);
  auto h = I.policy.model->hidden_states(ids, mask);
  // Only completion positions go through the head: hidden P-1+t predicts completion token t.
  auto hc = h.narrow(1, P - 1, C);  // [n, C, H]
  auto targets = ids.narrow(1, P, C), valid = mask.narrow(1, P, C).to(torch::kBool);
  auto ref_lp = r.ref_lp.narrow(1, from, n).narrow(2, 0, C);
  torch::Tensor lp;  // [n, C]
  VocabTerms terms;
  const VocabTerms* vt = nullptr;
  if (kl_penalty_needs_vocab(cfg.penalty)) {
    std::vector<LogpChunk> rc;
    for (size_t k = 0; k < I.refs.size(); ++k)
      rc.push_back(vocab_logp_chunks(I.refs[k].model, r.ref_hidden[k].narrow(0, from, n).narrow(1, 0, C)));
    int64_t chunk = std::max<int64_t>(1, (1 << 24) / ((int64_t)(I.refs.size() + 1) * n * I.policy.config.vocab_size));
    terms = policy_vocab_terms(I.policy.model, hc, rc, targets, valid, cfg.weights, cfg.weights, chunk, &lp);
    vt = &terms;
  } else {
    lp = completion_logprobs(I.policy.model, h, ids, mask, P);
  }
  // Per-reference KLs of this micro-batch (undefined where it has none), named after the references.
  std::vector<torch::Tensor> ref_kl(I.refs.size());
  torch::Tensor kl;
  if (cfg.penalty != KLPenalty::FklRefSamples) {
    auto pen = token_penalty(cfg.penalty, lp, ref_lp, cm, cfg.weights, vt);
    kl = pen.per_token;
    ref_kl = pen.per_ref_kl;
  }
  GrpoLossConfig lc;
  lc.epsilon_low = cfg.epsilon;
  lc.epsilon_high = cfg.epsilon_high;
  lc.gamma = cfg.kl_in == KLIn::Loss ? cfg.gamma : 0.0;
  lc.aggregation = cfg.loss_type;
  lc.max_completion_length = cfg.max_completion_length;
  auto old = r.old_lp.defined() ? r.old_lp.narrow(0, from, n).narrow(1, 0, C) : lp.detach();
  auto out = grpo_loss(lp, old, r.advantages.narrow(0, from, n), cm, kl, lc);
  stats.add("clip_ratio/low_mean", out.stats.clip_low, token_share, gas);
  stats.add("clip_ratio/high_mean", out.stats.clip_high, token_share, gas);
  stats.add("clip_ratio/region_mean", out.stats.clip_region, token_share, gas);
  torch::Tensor fkl_term;  // exact FKL: this micro-batch's share of the reference samples (the shares add up)
  // The micro-batch's share of the step's samples, by its rows' place in the whole step (all ranks).
  const double W = (double)I.comm->world_size();
  int64_t lo = 0, hi = 0;
  if (cfg.penalty == KLPenalty::FklRefSamples) {
    int64_t M = r.sample_total, N = r.row_total, at = r.row_first + from;
    lo = M * at / N - r.sample_first;
    hi = M * (at + n) / N - r.sample_first;
    if (hi > lo) {
      auto f = I.fkl_loss(r.ref_samples, lo, hi);
      fkl_term = f.loss * W;  // a share of the step's total: the ranks' gradients are averaged, not added
      ref_kl = f.stats.kl;
    }
  }
  // Token-mean is over the whole generation batch, not per micro-batch: weight each micro-batch by its share
  // of the tokens, so that 2 x 2 accumulation equals one batch of 4 (other aggregations average equal parts).
  // Data parallel: the share is of all ranks' tokens (times the world size: the ranks' gradients are averaged).
  double scale = row_share / gas;  // sequence mean, Dr. GRPO: a mean over the micro-batch's rows
  if (cfg.loss_type == LossAggregation::TokenMean)
    scale = W * (double)completion_tokens(r, from, n) / std::max(1.0, (double)r.tokens_all_ranks);
  auto total_loss = out.loss * scale;
  if (fkl_term.defined()) total_loss = total_loss + fkl_term;
  total_loss.backward();
  // "loss" is the step's objective: each micro-batch's loss counts with its weight in the backward (token-mean:
  // its share of the tokens), so it does not depend on how the step is split into micro-batches or ranks.
  stats.add("loss", out.loss.detach().to(torch::kFloat64), scale);
  if (fkl_term.defined()) stats.add("loss", fkl_term.detach().to(torch::kFloat64));
  // kl = sum_i w_i kl_i. Each micro-batch's estimate counts 1 / gas; exact FKL's kl_i is the mean over the step's
  // samples from reference i, so there a micro-batch counts by how many of them it holds.
  std::vector<double> share(I.refs.size(), token_share / gas);
  if (cfg.penalty == KLPenalty::FklRefSamples) {
    auto per_ref = stratified_counts(cfg.weights, r.sample_total);
    for (size_t k = 0; k < I.refs.size(); ++k) {
      int64_t c = 0;
      for (int64_t j = lo; j < hi; ++j) c += r.ref_samples[(size_t)j].ref == (int64_t)k;
      share[k] = per_ref[k] > 0 ? W * (double)c / (double)per_ref[k] : 0.0;
    }
  }
  stats.add("kl", torch::zeros({}, lp.options().dtype(torch::kFloat64)), 0.0);  // present even where none measured
  for (size_t k = 0; k < I.refs.size(); ++k) {
    if (!ref_kl[k].defined()) continue;
    stats.add("kl/" + cfg.ref_names[k], ref_kl[k], share[k]);
    stats.add("kl", ref_kl[k], cfg.weights[k] * share[k]);
  }
}

Metrics GrpoTrainer::accumulate(int64_t step) {
  auto& I = *impl_;
  StepStats stats;
  int64_t bs = I.cfg.per_device_train_batch_size;
  for (int g = 0; g < I.cfg.gradient_accumulation_steps; ++g) {
    micro_step(*I.current, g * bs, bs, step, stats);
    if (I.device.is_cpu()) release_free_memory();
  }
  return stats.read();
}

}  // namespace multiref
