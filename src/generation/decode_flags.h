// The decode-loop flags shared by every command that generates (`multiref generate`, GRPO's rollouts):
// --decode_loop auto|compacting|static and --decode_sync_every.
#pragma once
#include <torch/torch.h>

#include "generation/generation.h"
#include "util/flags.h"

namespace multiref {

// Compacting drops finished rows as it goes and reads every step's tokens on the host: the least work, the best
// loop for a CPU. Static keeps fixed shapes and reads the host every few steps: on a GPU the host round trips and
// kernel launches, not the masked rows, are the cost. Auto: static on CUDA, compacting elsewhere. The same tokens
// either way (tests/generation).
enum class DecodeLoop { Auto, Compacting, Static };

struct DecodeFlags {
  DecodeLoop loop = DecodeLoop::Auto;
  int64_t sync_every = 8;  // static loop: decode steps between host reads of the new tokens

  void register_flags(FlagTable& t);
  void validate() const;
  // Whether the loop is static on `device`.
  bool is_static(const torch::Device& device) const;
  // Sets the loop of a generation on `device`.
  void apply(GenerationConfig& g, const torch::Device& device) const;
};

}  // namespace multiref
