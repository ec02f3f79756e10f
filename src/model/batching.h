// The one place token rows become padded tensors, and rows of different lengths become batches. Every caller
// (generation's prefill, scoring, reward models, the trainers, the demo's report) builds its batches here.
// All tensors are built on the CPU and moved to `device` where one is given.
#pragma once
#include <torch/torch.h>

#include <cstdint>
#include <utility>
#include <vector>

namespace multiref {

using TokenRow = std::vector<int64_t>;

// Rows right-padded with `pad` to the longest row (at least `min_len` columns): ids, mask [B, T] (1 = token).
struct PaddedRows {
  torch::Tensor ids, mask;  // [B, T] int64
  int64_t tokens = 0;       // non-pad tokens
};
PaddedRows pad_right(const std::vector<const TokenRow*>& rows, int64_t pad = 0, int64_t min_len = 0);
// Rows left-padded with 0 to exactly `len` columns (each row ends at column len - 1; rows longer than `len` are an
// error): generation's prefill, whose next token follows every row's last column.
PaddedRows pad_left(const std::vector<const TokenRow*>& rows, int64_t len);

// Prompt + completion rows with the prompts left-padded to P (the longest prompt, at least 1) and the completions
// right-padded from column P on (to C, the longest completion, at least 1): hidden state P-1+t predicts
// completion token t in every row. GRPO's rollouts and the demo's exact KLs.
struct AlignedBatch {
  torch::Tensor ids, mask;        // [B, P + C] int64
  torch::Tensor completion_mask;  // [B, C] fp32: 1 on completion tokens
  int64_t prompt_len = 0;         // P
  int64_t tokens = 0;             // non-pad tokens
};
AlignedBatch pack_aligned(const std::vector<const TokenRow*>& prompts, const std::vector<const TokenRow*>& completions,
                          const torch::Device& device = torch::kCPU);

// Prompt + completion sequences contiguous in each row, right-padded (SFT, DPO's pairs).
struct CompletionBatch {
  torch::Tensor ids, mask;        // [B, T]
  torch::Tensor completion_mask;  // [B, T-1] fp32: 1 where column t predicts a completion token (log p(ids[t+1]))
  int64_t tokens = 0;             // non-pad tokens
};
// rows[i] = {prompt, completion}. A completion after an empty prompt has no predicting column and gets no
// weight; an empty row stays all padding. At least 2 columns.
CompletionBatch make_completion_batch(const std::vector<std::pair<const TokenRow*, const TokenRow*>>& rows,
                                      const torch::Device& device);

// Indices 0..n-1 ordered longest first (stable: equal lengths keep input order), cut into batches of at most
// `batch_size`: each batch holds similar lengths, so padding is small. Callers put results back in input order.
std::vector<std::vector<size_t>> longest_first_batches(const std::vector<size_t>& lengths, size_t batch_size);

}  // namespace multiref
