// The byte-pair-encoding model: a vocabulary of byte strings and ranked merges. Serves HF `BPE` models
// (merges listed in tokenizer.json / merges.txt) and tiktoken files (merges implied by token ranks).
// Immutable after construction, so one instance is shared by any number of encoding threads.
#pragma once
#include <cstdint>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace multiref {

class BPE {
 public:
  // id_to_bytes[id] = the token's raw bytes. Ids must be dense from 0; every single byte must be a token
  // (byte-level BPE can then encode any input).
  BPE(std::vector<std::string> id_to_bytes, bool ignore_merges, const std::string& source);

  // Merge rule: the pair (a, b) becomes their concatenation at priority `rank` (lower first).
  void add_merge(int32_t a, int32_t b, int32_t rank, const std::string& source);
  // tiktoken semantics: the rank of merging (a, b) is the id of a+b; derives every such rule.
  void derive_merges_from_ranks();

  // Appends the ids of one pre-tokenized piece (raw bytes). Pieces repeat (words), so results are memoized in
  // a per-thread cache: no locks, and the shared tables stay immutable.
  void encode_piece(std::string_view bytes, std::vector<int64_t>& out) const;

  int64_t size() const { return (int64_t)id_to_bytes_.size(); }
  const std::string& bytes_of(int64_t id) const { return id_to_bytes_[(size_t)id]; }
  int32_t id_of(std::string_view bytes) const;  // -1 if absent
  size_t num_merges() const { return merges_.size(); }

 private:
  struct Merge {
    int32_t rank, merged;
  };
  static uint64_t key(int32_t a, int32_t b) { return ((uint64_t)(uint32_t)a << 32) | (uint32_t)b; }
  std::vector<std::string> id_to_bytes_;
  // Keys view the strings of id_to_bytes_, which never change after construction: lookups allocate nothing.
  std::unordered_map<std::string_view, int32_t> bytes_to_id_;
  std::unordered_map<uint64_t, Merge> merges_;
  void merge_piece(std::string_view bytes, std::vector<int32_t>& out) const;
  int32_t byte_id_[256];
  bool ignore_merges_;
  uint64_t stamp_;  // identifies this instance's rules in the per-thread cache
};

}  // namespace multiref
