#include "model/batching.h"

#include <algorithm>
#include <numeric>

#include "util/common.h"

namespace multiref {

PaddedRows pad_right(const std::vector<const TokenRow*>& rows, int64_t pad, int64_t min_len) {
  int64_t B = (int64_t)rows.size(), T = min_len;
  for (auto* r : rows) T = std::max<int64_t>(T, (int64_t)r->size());
  PaddedRows out;
  out.ids = torch::full({B, T}, pad, torch::kLong);
  out.mask = torch::zeros({B, T}, torch::kLong);
  auto* ip = out.ids.data_ptr<int64_t>();
  auto* mp = out.mask.data_ptr<int64_t>();
  for (int64_t i = 0; i < B; ++i) {
    const auto& r = *rows[(size_t)i];
    std::copy(r.begin(), r.end(), ip + i * T);
    std::fill(mp + i * T, mp + i * T + (int64_t)r.size(), 1);
    out.tokens += (int64_t)r.size();
  }
  return out;
}

PaddedRows pad_left(const std::vector<const TokenRow*>& rows, int64_t len) {
  int64_t B = (int64_t)rows.size();
  PaddedRows out;
  out.ids = torch::zeros({B, len}, torch::kLong);
  out.mask = torch::zeros({B, len}, torch::kLong);
  auto* ip = out.ids.data_ptr<int64_t>();
  auto* mp = out.mask.data_ptr<int64_t>();
  for (int64_t i = 0; i < B; ++i) {
    const auto& r = *rows[(size_t)i];
    int64_t off = len - (int64_t)r.size();
    if (off < 0) fail("pad_left: a row of ", r.size(), " tokens does not fit in ", len, " columns");
    std::copy(r.begin(), r.end(), ip + i * len + off);
    std::fill(mp + i * len + off, mp + (i + 1) * len, 1);
    out.tokens += (int64_t)r.size();
  }
  return out;
}

AlignedBatch pack_aligned(const std::vector<const TokenRow*>& prompts, const std::vector<const TokenRow*>& completions,
                          const torch::Device& device) {
  if (prompts.size() != completions.size())
    fail("pack_aligned: ", prompts.size(), " prompts but ", completions.size(), " completions");
  int64_t N = (int64_t)completions.size(), P = 1, C = 1;
  for (auto* p : prompts) P = std::max<int64_t>(P, (int64_t)p->size());
  for (auto* c : completions) C = std::max<int64_t>(C, (int64_t)c->size());
  AlignedBatch b;
  b.prompt_len = P;
  auto ids = torch::zeros({N, P + C}, torch::kLong), mask = torch::zeros({N, P + C}, torch::kLong);
  auto cmask = torch::zeros({N, C}, torch::kFloat32);
  auto* ip = ids.data_ptr<int64_t>();
  auto* mp = mask.data_ptr<int64_t>();
  auto* cp = cmask.data_ptr<float>();
  for (int64_t n = 0; n < N; ++n) {
    const auto& p = *prompts[(size_t)n];
    const auto& c = *completions[(size_t)n];
    int64_t pl = (int64_t)p.size(), cl = (int64_t)c.size(), row = n * (P + C);
    std::copy(p.begin(), p.end(), ip + row + P - pl);
    std::copy(c.begin(), c.end(), ip + row + P);
    std::fill(mp + row + P - pl, mp + row + P + cl, 1);
    std::fill(cp + n * C, cp + n * C + cl, 1.0f);
    b.tokens += pl + cl;
  }
  b.ids = ids.to(device);
  b.mask = mask.to(device);
  b.completion_mask = cmask.to(device);
  return b;
}

CompletionBatch make_completion_batch(const std::vector<std::pair<const TokenRow*, const TokenRow*>>& rows,
                                      const torch::Device& device) {
  int64_t B = (int64_t)rows.size(), T = 2;
  for (auto& [p, c] : rows) T = std::max<int64_t>(T, (int64_t)(p->size() + c->size()));
  auto ids = torch::zeros({B, T}, torch::kLong), mask = torch::zeros({B, T}, torch::kLong);
  auto cmask = torch::zeros({B, T - 1}, torch::kFloat32);
  auto* ip = ids.data_ptr<int64_t>();
  auto* mp = mask.data_ptr<int64_t>();
  auto* cp = cmask.data_ptr<float>();
  CompletionBatch b;
  for (int64_t i = 0; i < B; ++i) {
    const auto& [prompt, completion] = rows[(size_t)i];
    int64_t P = (int64_t)prompt->size(), C = (int64_t)completion->size();
    std::copy(prompt->begin(), prompt->end(), ip + i * T);
    std::copy(completion->begin(), completion->end(), ip + i * T + P);
    std::fill(mp + i * T, mp + i * T + P + C, 1);
    // The completion's tokens P..P+C-1 are predicted by columns P-1..P+C-2.
    if (C > 0 && P > 0) std::fill(cp + i * (T - 1) + P - 1, cp + i * (T - 1) + P - 1 + C, 1.0f);
    b.tokens += P + C;
  }
  b.ids = ids.to(device);
  b.mask = mask.to(device);
  b.completion_mask = cmask.to(device);
  return b;
}

std::vector<std::vector<size_t>> longest_first_batches(const std::vector<size_t>& lengths, size_t batch_size) {
  if (batch_size < 1) fail("longest_first_batches: batch_size must be >= 1");
  std::vector<size_t> order(lengths.size());
  std::iota(order.begin(), order.end(), size_t{0});
  std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) { return lengths[a] > lengths[b]; });
  std::vector<std::vector<size_t>> out;
  for (size_t b = 0; b < order.size(); b += batch_size)
    out.emplace_back(order.begin() + (std::ptrdiff_t)b,
                     order.begin() + (std::ptrdiff_t)std::min(order.size(), b + batch_size));
  return out;
}

}  // namespace multiref
