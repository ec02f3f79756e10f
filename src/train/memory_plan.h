// `--print_memory_plan`: what one rank holds for a training run, from the models' config.json alone (no weights
// read), for 1 to 8 data-parallel ranks with and without ZeRO-1. Activations depend on batch and length and are
// left out (they do not divide by the world size either: each rank runs its own micro-batches).
#pragma once
#include <string>
#include <vector>

#include "model/model_config.h"

namespace multiref {

struct MemoryPlanInput {
  ModelConfig policy;
  std::vector<ModelConfig> references;  // held in memory during training (empty for DPO with precomputed log-probs)
  int64_t weight_bytes = 2;             // per parameter: 2 (bfloat16) or 4 (float32)
};

// Bytes per rank of each part for `world` ranks.
struct MemoryPlanRow {
  int world = 1;
  bool zero1 = false;
  double weights = 0, gradients = 0, optimizer = 0, references = 0;
  double total() const { return weights + gradients + optimizer + references; }
};

std::vector<MemoryPlanRow> memory_plan(const MemoryPlanInput& in, const std::vector<int>& worlds);
// The plan as the table --print_memory_plan prints.
std::string memory_plan_table(const MemoryPlanInput& in);

}  // namespace multiref
