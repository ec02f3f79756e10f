// The --dtype flag of every command that loads a model, and --bf16, the seed's (TRL's) spelling of
// --dtype bfloat16, kept on the trainers and evaluations: one help text, one rule for the two together.
#pragma once
#include <string>

#include "util/common.h"
#include "util/flags.h"
#include "util/runtime.h"

namespace multiref {

inline const char* kDtypeHelp = "compute dtype (auto: float32 on CPU, bfloat16 on CUDA)";

// Registers --dtype, --bf16_matmul and, where a command keeps it, --bf16.
inline void register_dtype_flags(FlagTable& t, DTypeChoice* dtype, bool* bf16) {
  t.add_enum("dtype", dtype, dtype_choices(), kDtypeHelp);
  if (bf16) t.add("bf16", bf16, "same as --dtype bfloat16 (the seed's and TRL's spelling)");
  t.add_enum("bf16_matmul", &bf16_matmul_flag(), bf16_matmul_choices(),
             "CPU bf16 matrix products: native bf16 or an fp32 upcast (auto: native where the CPU has bf16 "
             "instructions and a startup measurement confirms it; MULTIREF_BF16_MATMUL sets the default)");
}

// --bf16 folded into --dtype (in place): --bf16 alone means bfloat16; with --dtype auto or bfloat16 it agrees;
// with another --dtype it is an error.
inline void resolve_bf16_alias(DTypeChoice& dtype, bool bf16) {
  if (!bf16) return;
  if (dtype != DTypeChoice::Auto && dtype != DTypeChoice::BFloat16)
    fail("--bf16 means --dtype bfloat16, but --dtype says otherwise; pass one of them");
  dtype = DTypeChoice::BFloat16;
}

}  // namespace multiref
