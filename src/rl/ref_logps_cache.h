// Reference sequence log-probs computed once per (reference weights, token sequences, dtype) and kept on disk,
// so a second run with the same references and data skips the reference pass. References never change
// during training, so the numbers are exactly what scoring them at every step would give.
//
// The key hashes what determines the numbers: the reference's config.json and a fingerprint of its weight
// files (size, header and 64 evenly spread 4 KiB samples of each safetensors file: any retraining changes
// them, and hashing 3 GB in full would cost seconds per run), the dtype, the form (sequence level, or the
// token-level mixture with its weights), and every token id of every pair (which already reflects the
// tokenizer, chat template, data file and truncation lengths).
#pragma once
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "data/preference_data.h"

namespace multiref {

// FNV-1a 64, chained through `h`.
uint64_t fnv1a(const void* data, size_t n, uint64_t h = 1469598103934665603ULL);

// A fingerprint of a model directory's config.json and weight files (see above).
uint64_t model_fingerprint(const std::string& model_dir);

// Hash of the token ids of all pairs.
uint64_t pairs_fingerprint(const std::vector<PairTokens>& pairs);

// Sequence log-probs of the chosen and rejected responses of N pairs.
struct PairLogps {
  std::vector<double> chosen, rejected;
};

class RefLogpsCache {
 public:
  // dir "" disables the cache (every lookup misses, nothing is written).
  explicit RefLogpsCache(std::string dir) : dir_(std::move(dir)) {}
  std::string path(uint64_t key) const;
  // The entry, when present with n pairs; a corrupt entry is reported and ignored (recomputed).
  std::optional<PairLogps> load(uint64_t key, size_t n) const;
  // Written atomically; `description` (model, data) is stored beside the numbers for people.
  void store(uint64_t key, const PairLogps& v, const std::string& description) const;

 private:
  std::string dir_;
};

}  // namespace multiref
