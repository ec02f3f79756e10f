// Helpers shared by the test files: test_util_core.h's, and those that need LibTorch.
#pragma once
#include <gtest/gtest.h>
#include <torch/torch.h>

#include "test_util_core.h"

namespace multiref::testing {

inline double max_abs_diff(const torch::Tensor& a, const torch::Tensor& b) {
  return (a.to(torch::kFloat64) - b.to(torch::kFloat64)).abs().max().item<double>();
}

}  // namespace multiref::testing
