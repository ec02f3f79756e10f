#include "train/training_log.h"

#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <nlohmann/json.hpp>

#include "util/common.h"
#include "util/json_text.h"

namespace multiref {

namespace {

std::string printf_str(const char* fmt, double v) {
  char buf[64];
  std::snprintf(buf, sizeof buf, fmt, v);
  return buf;
}

}  // namespace

std::string format_duration(double seconds) {
  if (!(seconds >= 0) || !std::isfinite(seconds)) return "?";
  int64_t s = (int64_t)std::llround(seconds);
  int64_t d = s / 86400, h = (s / 3600) % 24, m = (s / 60) % 60, sec = s % 60;
  char buf[64];
  if (d > 0)
    std::snprintf(buf, sizeof buf, "%lldd %02lld:%02lld:%02lld", (long long)d, (long long)h, (long long)m,
                  (long long)sec);
  else if (h > 0)
    std::snprintf(buf, sizeof buf, "%lld:%02lld:%02lld", (long long)h, (long long)m, (long long)sec);
  else
    std::snprintf(buf, sizeof buf, "%lld:%02lld", (long long)m, (long long)sec);
  return buf;
}

std::string format_metric(double v) {
  if (std::isnan(v)) return "nan";
  if (std::isinf(v)) return v > 0 ? "inf" : "-inf";
  double a = std::fabs(v);
  if (v == std::floor(v) && a < 1e15) return std::to_string((long long)v);
  if (a >= 1e-3 && a < 1e4) return printf_str("%.4g", v);
  if (a >= 1e4 && a < 1e9) return printf_str("%.1f", v);
  return printf_str("%.2e", v);
}

std::string format_rate(double v) {
  if (!std::isfinite(v)) return format_metric(v);
  double a = std::fabs(v);
  if (a < 100) return printf_str("%.1f", v);
  if (a < 1e4) return printf_str("%.0f", v);
  if (a < 1e6) return printf_str("%.1fk", v / 1e3);
  return printf_str("%.1fM", v / 1e6);
}

std::string progress_line(int64_t step, int64_t total, double elapsed_s, double secs_per_step,
                          const std::vector<std::pair<std::string, double>>& shown, double tokens_per_second,
                          int bar_width) {
  std::string out;
  if (total > 0) {
    double frac = std::clamp((double)step / (double)total, 0.0, 1.0);
    char pct[16];
    std::snprintf(pct, sizeof pct, "%3d%% ", (int)std::floor(frac * 100 + 1e-9));
    out += pct;
    if (bar_width > 0) {
      int filled = (int)std::floor(frac * bar_width + 1e-9);
      out += "[" + std::string(filled, '#') + std::string(bar_width - filled, '-') + "] ";
    }
    out += cat(step, "/", total);
  } else {
    out += cat("step ", step);
  }
  out += " | " + format_duration(elapsed_s) + " elapsed | ETA ";
  if (total > 0 && step >= total)
    out += format_duration(0);
  else if (total > 0 && std::isfinite(secs_per_step) && secs_per_step >= 0)
    out += format_duration(secs_per_step * (double)(total - step));
  else
    out += "?";
  if (std::isfinite(secs_per_step) && secs_per_step >= 0) out += " | " + printf_str("%.3g", secs_per_step) + " s/step";
  if (!std::isnan(tokens_per_second)) out += " | " + format_rate(tokens_per_second) + " tok/s";
  if (!shown.empty()) {
    out += " |";
    for (auto& [k, v] : shown) out += " " + k + "=" + format_metric(v);
  }
  return out;
}

std::string metrics_json_line(int64_t step, const std::map<std::string, double>& metrics) {
  // Written by hand rather than as a json object so that "step" comes first; nlohmann escapes the keys
  // and turns NaN/inf (a diverged loss) into null rather than into invalid JSON.
  std::string out = cat("{\"step\":", step);
  for (auto& [k, v] : metrics) {
    if (k.empty()) fail("TrainingLog::log: a metric has an empty name; give every metric a name");
    if (k == "step") fail("TrainingLog::log: the metric name \"step\" is reserved (it is every row's step); rename it");
    try {
      out += "," + nlohmann::json(k).dump() + ":" + nlohmann::json(v).dump();
    } catch (const nlohmann::json::exception&) {
      fail("TrainingLog::log: metric name '", k, "' is not valid UTF-8; use a plain ASCII name");
    }
  }
  return out + "}";
}

TrainingLog::TrainingLog(const std::string& output_dir, int64_t total_steps, TrainingLogSettings settings)
    : dir_(output_dir), total_(total_steps), s_(std::move(settings)), t0_(now_seconds()) {
  if (total_ <= 0) fail("TrainingLog: total_steps must be positive, got ", total_, " (check --max_steps)");
  if (s_.start_step < 0) fail("TrainingLog: start_step must be >= 0, got ", s_.start_step);
  if (!s_.console_stream) s_.console_stream = stderr;
  ConsoleMode mode = s_.console;
  if (mode == ConsoleMode::Auto)
    mode = ::isatty(::fileno(s_.console_stream)) ? ConsoleMode::Redraw : ConsoleMode::Lines;
  s_.console = mode;
  redraw_ = mode == ConsoleMode::Redraw;

  make_dirs(dir_);
  prepare_metrics_file();
  metrics_ = std::fopen(metrics_path().c_str(), "a");
  if (!metrics_)
    fail(metrics_path(), ": cannot open for appending: ", std::strerror(errno), " (is ", dir_, " writable?)");
  // On a resume (or a fresh run in a used directory) TensorBoard must drop what earlier event files hold
  // for the steps about to be redone, or the curves would show both runs overlapping.
  if (s_.tensorboard) tb_ = std::make_unique<TensorBoardWriter>(tensorboard_dir(), s_.start_step + 1);
}

TrainingLog::~TrainingLog() {
  if (!open_line_.empty()) std::fputs("\n", s_.console_stream);
  std::fflush(s_.console_stream);
  if (metrics_) std::fclose(metrics_);
}

std::string TrainingLog::metrics_path() const {
  return join_path(dir_, "metrics.jsonl");
}
std::string TrainingLog::tensorboard_dir() const {
  return join_path(dir_, "runs");
}

// Keeps the rows of an existing metrics.jsonl up to start_step. A last line without its newline is the
// half-written row of a crashed run; it is dropped, since appending to it would corrupt the next row.
void TrainingLog::prepare_metrics_file() {
  std::string path = metrics_path();
  if (!file_exists(path)) return;
  std::string text = read_file(path);
  std::string kept;
  bool changed = false;
  size_t pos = 0;
  for (int64_t lineno = 1; pos < text.size(); ++lineno) {
    size_t nl = text.find('\n', pos);
    if (nl == std::string::npos) {
      changed = true;  // partial last row
      break;
    }
    std::string line = text.substr(pos, nl - pos + 1);
    pos = nl + 1;
    if (trim(line).empty()) {
      changed = true;
      continue;
    }
    nlohmann::json row;
    try {
      row = parse_json(line, path);
    } catch (const std::exception&) {
    }
    if (!row.is_object() || !row.contains("step") || !row["step"].is_number_integer())
      fail(path, ":", lineno, ": not a metrics row (a JSON object with an integer \"step\"); fix or delete that line, ",
           "or move the file aside");
    if (row["step"].get<int64_t>() > s_.start_step) {
      changed = true;
      continue;
    }
    kept += line;
  }
  if (changed) write_file_atomic(path, kept);
}

void TrainingLog::console_write(const std::string& s) {
  std::fputs(s.c_str(), s_.console_stream);
  std::fflush(s_.console_stream);
}

void TrainingLog::log(int64_t step, const std::map<std::string, double>& metrics) {
  std::string row = metrics_json_line(step, metrics) + "\n";  // validates the names before anything is written
  if (std::fwrite(row.data(), 1, row.size(), metrics_) != row.size() || std::fflush(metrics_) != 0)
    fail(metrics_path(), ": write failed: ", std::strerror(errno), " (disk full?)");

  double wall = unix_time_seconds();
  if (tb_)
    for (auto& [k, v] : metrics) tb_->add_scalar(k, v, step, wall);

  if (s_.console == ConsoleMode::Off) return;
  double elapsed = now_seconds() - t0_;
  int64_t done = step - s_.start_step;
  double secs_per_step = done > 0 ? elapsed / (double)done : NAN;
  std::vector<std::pair<std::string, double>> shown;
  for (auto& k : s_.console_keys) {
    auto it = metrics.find(k);
    if (it != metrics.end()) shown.emplace_back(k, it->second);
  }
  auto tps = metrics.find("tokens_per_second");
  std::string line = progress_line(step, total_, elapsed, secs_per_step, shown,
                                   tps == metrics.end() ? NAN : tps->second, s_.bar_width);
  if (!redraw_) {
    console_write(line + "\n");
    return;
  }
  // "\r" returns to the line start and "\033[K" clears to its end, so a shorter line leaves no residue.
  // The last step's line is kept.
  bool last = step >= total_;
  console_write("\r\033[K" + line + (last ? "\n" : ""));
  open_line_ = last ? "" : line;
}

void TrainingLog::message(const std::string& text) {
  if (s_.console == ConsoleMode::Off) return;
  if (!redraw_) {
    console_write(text + "\n");
    return;
  }
  // Replace the progress line by the message, then draw the progress line again below it.
  console_write("\r\033[K" + text + "\n" + open_line_);
}

}  // namespace multiref
