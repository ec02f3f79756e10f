#include "model/kv_cache.h"

#include "util/common.h"

namespace multiref {

KVCache::KVCache(const ModelConfig& c, int64_t max_rows, int64_t capacity, torch::ScalarType dtype,
                 const torch::Device& device)
    : rows_(max_rows), capacity_(capacity) {
  if (max_rows < 1 || capacity < 1) fail("KVCache: rows (", max_rows, ") and capacity (", capacity, ") must be >= 1");
  auto opts = torch::TensorOptions().dtype(dtype).device(device);
  // Zeroed rather than empty: a slot is only ever read after it was written, but garbage NaNs in an
  // unwritten slot would survive a 0 attention weight (0 * NaN = NaN) if that ever changed.
  for (int64_t l = 0; l < c.num_hidden_layers; ++l) {
    k_.push_back(torch::zeros({max_rows, c.num_key_value_heads, capacity, c.head_dim}, opts));
    v_.push_back(torch::zeros({max_rows, c.num_key_value_heads, capacity, c.head_dim}, opts));
  }
  mask_ = torch::zeros({max_rows, capacity}, torch::TensorOptions().dtype(torch::kLong).device(device));
}

std::pair<torch::Tensor, torch::Tensor> KVCache::begin_step(const torch::Tensor& new_mask) {
  if (pending_ != 0) fail("KVCache: begin_step called twice without end_step");
  if (new_mask.dim() != 2 || new_mask.size(0) != rows_)
    fail("KVCache: the step's mask must be [", rows_, ", T], got ", new_mask.sizes());
  int64_t T = new_mask.size(1);
  if (length_ + T > capacity_)
    fail("KVCache: ", length_, " + ", T, " positions exceed the capacity ", capacity_,
         " (allocate the cache for prompt length + max_new_tokens)");
  auto m = mask_.narrow(0, 0, rows_);
  auto nm = new_mask.to(torch::kLong);
  m.narrow(1, length_, T).copy_(nm);
  auto seen = m.narrow(1, 0, length_).sum(1, /*keepdim=*/true);  // [rows, 1] real tokens before this step
  auto positions = (seen + nm.cumsum(1) - 1).clamp_min(0);       // [rows, T]
  pending_ = T;
  return {m.narrow(1, 0, length_ + T), positions};
}

std::pair<torch::Tensor, torch::Tensor> KVCache::update(int64_t layer, const torch::Tensor& k, const torch::Tensor& v) {
  if (pending_ == 0) fail("KVCache: update outside begin_step/end_step");
  if (k.size(0) != rows_ || k.size(2) != pending_)
    fail("KVCache: keys must be [", rows_, ", KV, ", pending_, ", D], got ", k.sizes());
  auto kb = k_[(size_t)layer].narrow(0, 0, rows_), vb = v_[(size_t)layer].narrow(0, 0, rows_);
  kb.narrow(2, length_, pending_).copy_(k);
  vb.narrow(2, length_, pending_).copy_(v);
  return {kb.narrow(2, 0, length_ + pending_), vb.narrow(2, 0, length_ + pending_)};
}

void KVCache::end_step() {
  if (pending_ == 0) fail("KVCache: end_step without begin_step");
  length_ += pending_;
  pending_ = 0;
}

void KVCache::select_rows(const torch::Tensor& index) {
  if (pending_ != 0) fail("KVCache: select_rows in the middle of a step");
  int64_t n = index.size(0);
  if (n < 1 || n > mask_.size(0)) fail("KVCache: select_rows wants 1..", mask_.size(0), " rows, got ", n);
  auto idx = index.to(mask_.device(), torch::kLong);
  if (length_ > 0) {
    // index_select makes a compact copy first, so the in-place write may overlap its sources.
    auto move = [&](torch::Tensor& buf) {
      auto live = buf.narrow(0, 0, rows_).narrow(2, 0, length_);
      buf.narrow(0, 0, n).narrow(2, 0, length_).copy_(live.index_select(0, idx));
    };
    for (auto& k : k_) move(k);
    for (auto& v : v_) move(v);
    auto live = mask_.narrow(0, 0, rows_).narrow(1, 0, length_);
    mask_.narrow(0, 0, n).narrow(1, 0, length_).copy_(live.index_select(0, idx));
  }
  rows_ = n;
}

KVCache KVCache::row_slice(int64_t begin, int64_t n) {
  if (pending_ != 0) fail("KVCache: row_slice in the middle of a step");
  if (begin < 0 || n < 1 || begin + n > mask_.size(0))
    fail("KVCache: row_slice [", begin, ", ", begin + n, ") out of range");
  KVCache s;
  for (auto& k : k_) s.k_.push_back(k.narrow(0, begin, n));
  for (auto& v : v_) s.v_.push_back(v.narrow(0, begin, n));
  s.mask_ = mask_.narrow(0, begin, n);
  s.rows_ = n;
  s.length_ = length_;
  s.capacity_ = capacity_;
  return s;
}

void KVCache::set_length(int64_t length) {
  if (length < 0 || length > capacity_) fail("KVCache: length ", length, " outside [0, ", capacity_, "]");
  length_ = length;
}

int64_t KVCache::bytes() const {
  int64_t b = 0;
  for (auto& k : k_) b += k.numel() * (int64_t)k.element_size();
  for (auto& v : v_) b += v.numel() * (int64_t)v.element_size();
  return b;
}

}  // namespace multiref
