#include <gtest/gtest.h>
#include <torch/torch.h>

int main(int argc, char** argv) {
  ::testing::InitGoogleTest(&argc, argv);
  torch::set_num_threads(1);  // ctest runs tests in parallel; keep each to one core and deterministic
  return RUN_ALL_TESTS();
}
