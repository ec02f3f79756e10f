// The SVG line chart: ticks by hand, and point coordinates mapped into the plot area as computed by hand.
#include "test_util.h"
#include "util/svg_plot.h"

using namespace multiref;

TEST(SvgPlot, NiceTicks) {
  EXPECT_EQ(nice_ticks(0, 10), (std::vector<double>{0, 2, 4, 6, 8, 10}));
  auto f = nice_ticks(0.3, 0.72);
  ASSERT_EQ(f.size(), 6u);
  EXPECT_NEAR(f.front(), 0.3, 1e-12);
  EXPECT_NEAR(f.back(), 0.8, 1e-12);
  auto t = nice_ticks(-3, 47);
  EXPECT_DOUBLE_EQ(t.front(), -10);
  EXPECT_DOUBLE_EQ(t.back(), 50);
  auto flat = nice_ticks(2, 2);  // one value: padded around it
  EXPECT_LT(flat.front(), 2);
  EXPECT_GT(flat.back(), 2);
}

TEST(SvgPlot, PointsLandWhereTheAxesSay) {
  PlotOptions o;
  o.title = "loss <per> step";
  auto svg = line_chart_svg({{"a", {0, 5, 10}, {0, 5, 10}}, {"b & c", {0, 10}, {10, NAN}}, {"empty", {}, {}}}, o);
  // Plot area: x from 64 to 640 - 150 = 490 (W 426), y from 36 to 400 - 48 = 352 (H 316); axes 0..10 both.
  EXPECT_NE(svg.find("points=\"64.00,352.00 277.00,194.00 490.00,36.00 \""), std::string::npos) << svg;
  EXPECT_NE(svg.find("points=\"64.00,36.00 \""), std::string::npos) << "the NaN point is skipped";
  EXPECT_NE(svg.find("loss &lt;per&gt; step"), std::string::npos);
  EXPECT_NE(svg.find(">b &amp; c<"), std::string::npos);
  EXPECT_NE(svg.find(">empty<"), std::string::npos);
  size_t n = 0;
  for (size_t p = svg.find("<polyline"); p != std::string::npos; p = svg.find("<polyline", p + 1)) ++n;
  EXPECT_EQ(n, 2u);
}
