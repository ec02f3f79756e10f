// Line charts as standalone SVG files (training curves in the demo's report): no plotting library, viewable in
// any browser and embeddable in Markdown. Torch-free.
#pragma once
#include <string>
#include <vector>

namespace multiref {

struct PlotSeries {
  std::string name;
  std::vector<double> x, y;  // same length; non-finite points are skipped
};

struct PlotOptions {
  std::string title, x_label, y_label;
  int width = 640, height = 400;
};

// The SVG document: axes with "nice" ticks covering all finite points, one polyline per series in a fixed
// palette, and a legend. Empty series are listed in the legend without a line.
std::string line_chart_svg(const std::vector<PlotSeries>& series, const PlotOptions& opts);

// Ticks from lo to hi at a step of 1, 2 or 5 times a power of ten, about `target` of them.
std::vector<double> nice_ticks(double lo, double hi, int target = 5);

}  // namespace multiref
