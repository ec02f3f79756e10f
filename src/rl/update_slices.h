// How a GRPO micro-batch's forward and backward are split on a CPU. A micro-batch's gradient is a sum over its rows,
// so it may run as several forward+backward passes over row slices, each scaled by its share: the same gradient, the
// activations of one slice at a time instead of all rows' (at the seed's shape, 4 rows x ~450 tokens kept 2.4 GB of
// activations for backward on top of ~12 GB of weights and optimizer state). Each slice is also trimmed to its own
// rows' longest prompt and completion: the step's rows are padded to the longest of the whole step, and padding
// columns (masked everywhere in the slice) are compute spent for nothing.
#pragma once
#include <cstdint>
#include <vector>

namespace multiref {

// Rows [from, from + n) of a rollout, columns [left, P + C_kept) of its [N, P + C] ids (prompt left-padded to P,
// completion right-padded to C): `left` is the first column any of its rows uses, `completion` the columns of the
// completion part kept (>= 1: the head needs a position).
struct RowSlice {
  int64_t from = 0, n = 0, left = 0, completion = 1;
  int64_t prompt(int64_t P) const { return P - left; }  // the slice's prompt columns
  int64_t width(int64_t P) const { return P - left + completion; }
};

// Consecutive slices of rows [from, from + n), each of at most `budget` tokens (rows x the slice's trimmed width;
// a row wider than the budget gets a slice of its own; budget <= 0: one slice, trimmed). prompt_lengths /
// completion_lengths: every row's own token counts (prompt >= 1), P and C the padded widths.
std::vector<RowSlice> plan_update_slices(const std::vector<int64_t>& prompt_lengths,
                                         const std::vector<int64_t>& completion_lengths, int64_t P, int64_t C,
                                         int64_t from, int64_t n, int64_t budget);

}  // namespace multiref
