#include "rl/pair_logps.h"

#include <algorithm>
#include <iostream>
#include <numeric>

#include "model/logprobs.h"
#include "objectives/objectives.h"
#include "util/common.h"

namespace multiref {

PairBatch make_pair_batch(const std::vector<const PairTokens*>& pairs, const torch::Device& device) {
  // A response cut to nothing by truncation contributes 0.
  std::vector<std::pair<const std::vector<int64_t>*, const std::vector<int64_t>*>> rows;
  for (auto* p : pairs) rows.push_back({&p->prompt, &p->chosen});
  for (auto* p : pairs) rows.push_back({&p->prompt, &p->rejected});
  return make_completion_batch(rows, device);
}

torch::Tensor pair_sequence_logps(Transformer& model, const PairBatch& batch) {
  auto lp = token_logprobs(model, batch.ids, batch.mask);  // [2B, T-1]
  return (lp.to(torch::kFloat64) * batch.completion_mask.to(torch::kFloat64)).sum(1);
}

torch::Tensor pair_token_mixture_logps(std::vector<Transformer>& refs, const std::vector<double>& weights,
                                       bool geometric, const PairBatch& batch) {
  torch::NoGradGuard no_grad;
  auto rm = batch.completion_mask.to(torch::kFloat64);
  if (!geometric) {
    std::vector<torch::Tensor> lps;
    for (auto& m : refs) lps.push_back(token_logprobs(m, batch.ids, batch.mask));
    auto mix = arithmetic_logp(torch::stack(lps).to(torch::kFloat64), weights);  // [2B, T-1]
    return (mix * rm).sum(1);
  }
  // log G(y_t) needs each reference's whole next-token distribution (the renormalizer f(s_t)); chunks of
  // positions keep K x [2B, n, V] small.
  std::vector<torch::Tensor> hidden;
  for (auto& m : refs) hidden.push_back(m->hidden_states(batch.ids, batch.mask));
  int64_t T1 = batch.ids.size(1) - 1, rows = batch.ids.size(0), V = refs[0]->config.vocab_size;
  std::vector<LogpChunk> chunks;
  for (size_t k = 0; k < refs.size(); ++k) chunks.push_back(vocab_logp_chunks(refs[k], hidden[k].narrow(1, 0, T1)));
  int64_t chunk = std::max<int64_t>(1, (1 << 23) / ((int64_t)(refs.size() + 1) * rows * V));
  // vocab_terms_chunked also wants a "policy"; the first reference stands in (only log_geo_target is used).
  auto terms = vocab_terms_chunked(chunks[0], chunks, batch.ids.narrow(1, 1, T1), weights, weights, chunk);
  return (terms.log_geo_target.to(torch::kFloat64) * rm).sum(1);
}

PairLogps score_pairs(const std::vector<PairTokens>& pairs, int64_t batch_size, const torch::Device& device,
                      const std::string& label, const std::function<torch::Tensor(const PairBatch&)>& score) {
  size_t N = pairs.size();
  std::vector<size_t> order(N);
  std::iota(order.begin(), order.end(), 0);
  auto len = [&](size_t i) {
    return pairs[i].prompt.size() + std::max(pairs[i].chosen.size(), pairs[i].rejected.size());
  };
  std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) { return len(a) > len(b); });
  PairLogps out{std::vector<double>(N), std::vector<double>(N)};
  double t0 = now_seconds(), last = t0;
  int64_t tokens = 0;
  for (size_t s = 0; s < N; s += (size_t)batch_size) {
    std::vector<const PairTokens*> bp;
    size_t e = std::min(N, s + (size_t)batch_size);
    for (size_t j = s; j < e; ++j) bp.push_back(&pairs[order[j]]);
    auto batch = make_pair_batch(bp, device);
    auto lp = score(batch).to(torch::kCPU).to(torch::kFloat64).contiguous();  // [2B]
    auto* v = lp.data_ptr<double>();
    int64_t B = (int64_t)bp.size();
    for (int64_t j = 0; j < B; ++j) {
      out.chosen[order[s + (size_t)j]] = v[j];
      out.rejected[order[s + (size_t)j]] = v[B + j];
    }
    tokens += batch.tokens;
    double now = now_seconds();
    if (now - last > 10 || e == N) {
      double el = now - t0, rate = (double)tokens / std::max(el, 1e-9);
      double eta = el / (double)e * (double)(N - e);
      std::cerr << label << ": " << e << "/" << N << " pairs, " << (int64_t)rate << " tok/s, " << (int64_t)el
                << " s elapsed, ETA " << (int64_t)eta << " s\n";
      last = now;
    }
  }
  return out;
}

}  // namespace multiref
