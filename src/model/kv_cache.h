// Per-layer key/value cache for incremental decoding. Every row shares one time axis: prompts are
// left-padded to a common length, and each decode step appends one position to every row, so position i
// of the cache is the same step for all rows and a [B, S] key mask says which slots hold real tokens.
#pragma once
#include <torch/torch.h>

#include <vector>

#include "model/model_config.h"

namespace multiref {

class KVCache {
 public:
  // Buffers for `max_rows` rows of `capacity` positions, allocated once (decoding never reallocates).
  // `dtype` is the dtype attention computes in: the model's dtype, except bf16/f16 weights on CPU, where
  // attention runs in fp32 (compute_dtype in transformer.h); storing fp32 there avoids upcasting the whole
  // cache at every step and keeps cached and uncached attention bit-compatible.
  KVCache(const ModelConfig& c, int64_t max_rows, int64_t capacity, torch::ScalarType dtype,
          const torch::Device& device);

  int64_t rows() const { return rows_; }      // active rows (a prefix of the buffers)
  int64_t length() const { return length_; }  // positions filled so far
  int64_t capacity() const { return capacity_; }
  int64_t num_layers() const { return (int64_t)k_.size(); }

  // Called by the decoder once per forward, before its layers: records the key mask of the T new positions
  // new_mask [rows, T] (1 = token, 0 = left padding) and returns
  //   key_mask  [rows, length + T]  (every position the new queries may see, padding marked 0)
  //   positions [rows, T]           RoPE positions: cumsum(full mask) - 1 as in the uncached forward.
  std::pair<torch::Tensor, torch::Tensor> begin_step(const torch::Tensor& new_mask);
  // Called by each attention layer: stores k, v [rows, KV, T, D] at positions [length, length + T) and
  // returns keys, values [rows, KV, length + T, D] (views into the buffers, no copy).
  std::pair<torch::Tensor, torch::Tensor> update(int64_t layer, const torch::Tensor& k, const torch::Tensor& v);
  // Called by the decoder after its layers: the T new positions become part of the cache.
  void end_step();

  // Rearranges rows: new row i = old row index[i] (index [n] int64, n <= max_rows). Compaction drops
  // finished rows (index = the survivors); group sharing repeats each prompt's row G times. Copies only
  // the filled positions.
  void select_rows(const torch::Tensor& index);

  // Rows [begin, begin + n) as a cache of their own, sharing these buffers: a prefill in row chunks writes
  // straight into place. The parent's length is brought up with set_length() afterwards.
  KVCache row_slice(int64_t begin, int64_t n);
  void set_length(int64_t length);

  // Bytes held by the buffers (for the memory report).
  int64_t bytes() const;

 private:
  KVCache() = default;
  std::vector<torch::Tensor> k_, v_;  // per layer [max_rows, KV, capacity, D]
  torch::Tensor mask_;                // [max_rows, capacity] int64
  int64_t rows_ = 0, length_ = 0, capacity_ = 0, pending_ = 0;
};

}  // namespace multiref
