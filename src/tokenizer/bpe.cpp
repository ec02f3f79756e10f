#include "tokenizer/bpe.h"

#include <atomic>
#include <queue>

#include "util/common.h"

namespace multiref {

namespace {
std::atomic<uint64_t> next_stamp{1};
}

BPE::BPE(std::vector<std::string> id_to_bytes, bool ignore_merges, const std::string& source)
    : id_to_bytes_(std::move(id_to_bytes)), ignore_merges_(ignore_merges), stamp_(next_stamp++) {
  bytes_to_id_.reserve(id_to_bytes_.size() * 2);
  for (size_t i = 0; i < id_to_bytes_.size(); ++i) {
    if (id_to_bytes_[i].empty()) continue;  // a hole in the id space (e.g. ids owned by added tokens)
    bytes_to_id_.emplace(std::string_view(id_to_bytes_[i]), (int32_t)i);
  }
  for (int b = 0; b < 256; ++b) {
    int32_t id = id_of(std::string(1, (char)b));
    if (id < 0)
      fail(source, ": the vocabulary has no token for byte 0x", std::hex, b, "; byte-level BPE needs all 256");
    byte_id_[b] = id;
  }
}

int32_t BPE::id_of(std::string_view bytes) const {
  auto it = bytes_to_id_.find(bytes);
  return it == bytes_to_id_.end() ? -1 : it->second;
}

void BPE::add_merge(int32_t a, int32_t b, int32_t rank, const std::string& source) {
  int32_t m = id_of(id_to_bytes_[(size_t)a] + id_to_bytes_[(size_t)b]);
  if (m < 0) fail(source, ": merge rank ", rank, " produces a token that is not in the vocabulary");
  merges_.emplace(key(a, b), Merge{rank, m});  // the first (best-ranked) listing of a pair wins
  stamp_ = next_stamp++;                       // rules changed: cached encodings are void
}

void BPE::derive_merges_from_ranks() {
  for (size_t id = 0; id < id_to_bytes_.size(); ++id) {
    const std::string& t = id_to_bytes_[id];
    for (size_t k = 1; k < t.size(); ++k) {
      int32_t a = id_of(std::string_view(t).substr(0, k)), b = id_of(std::string_view(t).substr(k));
      if (a >= 0 && b >= 0) merges_.emplace(key(a, b), Merge{(int32_t)id, (int32_t)id});
    }
  }
  stamp_ = next_stamp++;
}

void BPE::encode_piece(std::string_view bytes, std::vector<int64_t>& out) const {
  if (bytes.empty()) return;
  if (bytes.size() == 1) {
    out.push_back(byte_id_[(uint8_t)bytes[0]]);
    return;
  }
  if (ignore_merges_) {
    int32_t whole = id_of(bytes);
    if (whole >= 0) {
      out.push_back(whole);
      return;
    }
  }
  // Keyed by the instance's stamp, not its address: a new BPE at a freed address must not see stale entries.
  struct Cache {
    uint64_t stamp = 0;
    std::unordered_map<std::string, std::vector<int32_t>> map;
  };
  thread_local Cache cache;
  if (cache.stamp != stamp_) {
    cache.map.clear();
    cache.stamp = stamp_;
  }
  constexpr size_t kMaxCached = 1 << 16, kMaxPieceBytes = 256;  // long pieces are rare and would bloat it
  if (bytes.size() <= kMaxPieceBytes) {
    auto it = cache.map.find(std::string(bytes));
    if (it != cache.map.end()) {
      out.insert(out.end(), it->second.begin(), it->second.end());
      return;
    }
  }
  std::vector<int32_t> ids;
  merge_piece(bytes, ids);
  out.insert(out.end(), ids.begin(), ids.end());
  if (bytes.size() <= kMaxPieceBytes) {
    if (cache.map.size() >= kMaxCached) cache.map.clear();
    cache.map.emplace(std::string(bytes), std::move(ids));
  }
}

void BPE::merge_piece(std::string_view bytes, std::vector<int32_t>& out) const {
  // Symbols in a doubly linked list; candidate merges in a min-heap ordered by (rank, position), which is
  // the order HF's BPE and tiktoken apply them in. Stale heap entries are detected and skipped.
  size_t n = bytes.size();
  std::vector<int32_t> sym(n), prev(n), next(n);
  for (size_t i = 0; i < n; ++i) {
    sym[i] = byte_id_[(uint8_t)bytes[i]];
    prev[i] = (int32_t)i - 1;
    next[i] = i + 1 < n ? (int32_t)i + 1 : -1;
  }
  struct Cand {
    int32_t rank, pos, left, right;
    bool operator>(const Cand& o) const { return rank != o.rank ? rank > o.rank : pos > o.pos; }
  };
  std::priority_queue<Cand, std::vector<Cand>, std::greater<Cand>> heap;
  auto push = [&](int32_t i) {
    if (i < 0 || next[i] < 0) return;
    auto it = merges_.find(key(sym[i], sym[next[i]]));
    if (it != merges_.end()) heap.push({it->second.rank, i, sym[i], sym[next[i]]});
  };
  for (size_t i = 0; i + 1 < n; ++i) push((int32_t)i);
  while (!heap.empty()) {
    Cand c = heap.top();
    heap.pop();
    int32_t i = c.pos;
    if (sym[i] != c.left || next[i] < 0 || sym[next[i]] != c.right) continue;  // stale
    int32_t j = next[i];
    sym[i] = merges_.at(key(c.left, c.right)).merged;
    sym[j] = -1;
    next[i] = next[j];
    if (next[j] >= 0) prev[next[j]] = i;
    push(prev[i]);
    push(i);
  }
  for (int32_t i = 0; i >= 0; i = next[i]) out.push_back(sym[i]);
}

}  // namespace multiref
