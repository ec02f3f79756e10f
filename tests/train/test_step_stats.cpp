// Step statistics accumulated on the device: the same numbers as the host arithmetic they replace
// (`double acc = 0; acc += v * num / den` per micro-batch), read with one copy.
#include "test_util.h"
#include "train/step_stats.h"

using namespace multiref;
using namespace multiref::testing;

TEST(StepStats, SumsLikeTheHostArithmeticBitForBit) {
  StepStats s;
  std::vector<float> values = {0.1f, -2.5f, 3.0e-7f, 1234.5f};
  double host = 0;
  for (float v : values) {
    s.add("loss", torch::tensor(v), 1.0, 3.0);  // a float32 statistic
    s.add("eval/x", torch::tensor((double)v, torch::kFloat64), 5.0, 7.0);
    host += (double)v / 3.0;
  }
  double eval = 0;
  for (float v : values) eval += (double)v * 5.0 / 7.0;
  s.add("host", 2.0, 1.0, 4.0);
  s.add("host", 1.0, 1.0, 4.0);
  s.add("skipped", torch::Tensor());  // undefined: ignored
  auto m = s.read();
  EXPECT_EQ(m.size(), 3u);
  EXPECT_EQ(m.at("loss"), host);  // exact, not near
  EXPECT_EQ(m.at("eval/x"), eval);
  EXPECT_EQ(m.at("host"), 0.75);
  // -0.0 added to nothing reads +0.0, as 0.0 + -0.0 does on the host.
  StepStats z;
  z.add("z", torch::tensor(-0.0));
  EXPECT_FALSE(std::signbit(z.read().at("z")));
  EXPECT_TRUE(StepStats().read().empty());
  expect_error([&] { s.add("loss", 1.0); }, {"'loss'", "both"});
}
