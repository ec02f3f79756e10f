#include "util/svg_plot.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>

namespace multiref {

namespace {

const char* kPalette[] = {"#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf"};

std::string escape(const std::string& s) {
  std::string o;
  for (char c : s) {
    if (c == '<')
      o += "&lt;";
    else if (c == '>')
      o += "&gt;";
    else if (c == '&')
      o += "&amp;";
    else if (c == '"')
      o += "&quot;";
    else
      o += c;
  }
  return o;
}

std::string num(double v) {
  char b[32];
  std::snprintf(b, sizeof b, "%.2f", v);
  return b;
}

std::string tick_label(double v) {
  char b[32];
  if (v != 0 && (std::fabs(v) >= 1e5 || std::fabs(v) < 1e-3))
    std::snprintf(b, sizeof b, "%.1e", v);
  else
    std::snprintf(b, sizeof b, "%g", std::fabs(v) < 1e-12 ? 0.0 : v);
  return b;
}

}  // namespace

std::vector<double> nice_ticks(double lo, double hi, int target) {
  if (!(hi > lo)) {
    double pad = lo == 0 ? 1 : std::fabs(lo) * 0.1;
    lo -= pad;
    hi += pad;
  }
  double raw = (hi - lo) / std::max(1, target), mag = std::pow(10.0, std::floor(std::log10(raw)));
  double step = mag;
  for (double m : {1.0, 2.0, 5.0, 10.0})
    if (m * mag >= raw) {
      step = m * mag;
      break;
    }
  std::vector<double> t;
  // Integer multiples of the step (no accumulated rounding), from the last one at or below lo.
  int64_t i0 = (int64_t)std::floor(lo / step + 1e-9);
  for (int64_t i = i0; (double)(i - 1) * step < hi - 1e-9 * step; ++i) t.push_back((double)i * step);
  return t;
}

std::string line_chart_svg(const std::vector<PlotSeries>& series, const PlotOptions& o) {
  double xlo = INFINITY, xhi = -INFINITY, ylo = INFINITY, yhi = -INFINITY;
  for (auto& s : series)
    for (size_t i = 0; i < std::min(s.x.size(), s.y.size()); ++i)
      if (std::isfinite(s.x[i]) && std::isfinite(s.y[i])) {
        xlo = std::min(xlo, s.x[i]), xhi = std::max(xhi, s.x[i]);
        ylo = std::min(ylo, s.y[i]), yhi = std::max(yhi, s.y[i]);
      }
  if (!std::isfinite(xlo)) xlo = 0, xhi = 1, ylo = 0, yhi = 1;
  auto xt = nice_ticks(xlo, xhi), yt = nice_ticks(ylo, yhi);
  double x0 = xt.front(), x1 = xt.back(), y0 = yt.front(), y1 = yt.back();
  double L = 64, R = 150, T = 36, B = 48, W = o.width - L - R, H = o.height - T - B;
  auto px = [&](double x) { return L + (x - x0) / (x1 - x0) * W; };
  auto py = [&](double y) { return T + H - (y - y0) / (y1 - y0) * H; };
  std::string s =
      "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"" + std::to_string(o.width) + "\" height=\"" +
      std::to_string(o.height) + "\" viewBox=\"0 0 " + std::to_string(o.width) + " " + std::to_string(o.height) +
      "\" font-family=\"sans-serif\" font-size=\"11\">\n<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n";
  s += "<text x=\"" + num(L + W / 2) + "\" y=\"20\" text-anchor=\"middle\" font-size=\"14\">" + escape(o.title) +
       "</text>\n";
  for (double v : xt) {
    s += "<line x1=\"" + num(px(v)) + "\" y1=\"" + num(T) + "\" x2=\"" + num(px(v)) + "\" y2=\"" + num(T + H) +
         "\" stroke=\"#eee\"/>\n";
    s += "<text x=\"" + num(px(v)) + "\" y=\"" + num(T + H + 16) + "\" text-anchor=\"middle\">" + tick_label(v) +
         "</text>\n";
  }
  for (double v : yt) {
    s += "<line x1=\"" + num(L) + "\" y1=\"" + num(py(v)) + "\" x2=\"" + num(L + W) + "\" y2=\"" + num(py(v)) +
         "\" stroke=\"#eee\"/>\n";
    s += "<text x=\"" + num(L - 6) + "\" y=\"" + num(py(v) + 4) + "\" text-anchor=\"end\">" + tick_label(v) +
         "</text>\n";
  }
  s += "<rect x=\"" + num(L) + "\" y=\"" + num(T) + "\" width=\"" + num(W) + "\" height=\"" + num(H) +
       "\" fill=\"none\" stroke=\"#333\"/>\n";
  s += "<text x=\"" + num(L + W / 2) + "\" y=\"" + num(o.height - 10.0) + "\" text-anchor=\"middle\">" +
       escape(o.x_label) + "</text>\n";
  s += "<text transform=\"translate(16," + num(T + H / 2) + ") rotate(-90)\" text-anchor=\"middle\">" +
       escape(o.y_label) + "</text>\n";
  for (size_t k = 0; k < series.size(); ++k) {
    const auto& se = series[k];
    std::string color = kPalette[k % std::size(kPalette)], pts;
    for (size_t i = 0; i < std::min(se.x.size(), se.y.size()); ++i)
      if (std::isfinite(se.x[i]) && std::isfinite(se.y[i])) pts += num(px(se.x[i])) + "," + num(py(se.y[i])) + " ";
    if (!pts.empty())
      s += "<polyline fill=\"none\" stroke=\"" + color + "\" stroke-width=\"1.8\" points=\"" + pts + "\"/>\n";
    double ly = T + 8 + 18.0 * (double)k;
    s += "<line x1=\"" + num(L + W + 10) + "\" y1=\"" + num(ly) + "\" x2=\"" + num(L + W + 30) + "\" y2=\"" + num(ly) +
         "\" stroke=\"" + color + "\" stroke-width=\"2\"/>\n";
    s += "<text x=\"" + num(L + W + 34) + "\" y=\"" + num(ly + 4) + "\">" + escape(se.name) + "</text>\n";
  }
  return s + "</svg>\n";
}

}  // namespace multiref
