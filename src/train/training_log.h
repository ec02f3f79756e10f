// Training-run logging shared by the trainers (GRPO, DPO): every log(step, metrics) call appends one JSON
// line to output_dir/metrics.jsonl, writes each metric as a TensorBoard scalar under output_dir/runs/, and
// prints a progress line (bar, step/total, elapsed, ETA, tokens/s, chosen metrics) to the console.
// Torch-free, so it is testable and usable without LibTorch.
#pragma once
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "train/tensorboard.h"

namespace multiref {

// Auto: Redraw when the console stream is a terminal, Lines otherwise (log files, CI): plain lines with
// no carriage returns or escape codes. Redraw keeps one progress line updated in place.
enum class ConsoleMode { Auto, Redraw, Lines, Off };

struct TrainingLogSettings {
  // The last step already completed, when resuming from a checkpoint; 0 for a fresh run. Rows of
  // metrics.jsonl with a later step are dropped (a crashed run logged them past its last checkpoint, or a
  // fresh run is redoing the directory), the rest are kept and new rows are appended. TensorBoard is told
  // to discard those steps too (purge_step). ETA is measured from the steps this process runs.
  int64_t start_step = 0;
  // Metrics shown on the console line, in this order, when present in a log() call.
  std::vector<std::string> console_keys;
  bool tensorboard = true;
  ConsoleMode console = ConsoleMode::Auto;
  FILE* console_stream = stderr;  // tests pass a temporary file
  int bar_width = 20;
};

class TrainingLog {
 public:
  // Construct it right before the first training step: its construction starts the ETA clock.
  TrainingLog(const std::string& output_dir, int64_t total_steps, TrainingLogSettings settings = {});
  ~TrainingLog();  // ends a progress line left open by Redraw mode
  TrainingLog(const TrainingLog&) = delete;
  TrainingLog& operator=(const TrainingLog&) = delete;

  // One call per logging step (several calls for the same step are fine, e.g. train then eval metrics).
  // "step" is reserved (it is the row's first key); a "tokens_per_second" metric is shown as a rate.
  void log(int64_t step, const std::map<std::string, double>& metrics);
  // A permanent console line (evaluation results, "saved checkpoint ...") that does not garble the
  // redrawn progress line. Not written to metrics.jsonl.
  void message(const std::string& text);

  std::string metrics_path() const;
  std::string tensorboard_dir() const;

 private:
  void prepare_metrics_file();
  void console_write(const std::string& s);
  std::string dir_;
  int64_t total_;
  TrainingLogSettings s_;
  bool redraw_ = false;
  std::string open_line_;  // Redraw mode: the progress line currently shown without a newline
  double t0_;
  FILE* metrics_ = nullptr;
  std::unique_ptr<TensorBoardWriter> tb_;
};

// The console line, a pure function of its inputs, e.g.
//   " 40% [########------------] 400/1000 | 2:13 elapsed | ETA 3:20 | 0.333 s/step | 1234 tok/s | loss=0.1234"
// secs_per_step NaN (no step timed yet) gives "ETA ?"; tokens_per_second NaN leaves the rate out.
std::string progress_line(int64_t step, int64_t total, double elapsed_s, double secs_per_step,
                          const std::vector<std::pair<std::string, double>>& shown, double tokens_per_second = NAN,
                          int bar_width = 20);
// 5 -> "0:05", 133 -> "2:13", 3723 -> "1:02:03", 93784 -> "1d 02:03:04"; NaN or negative -> "?".
std::string format_duration(double seconds);
// Compact: integers as integers, 4 significant digits in [1e-3, 1e4), one decimal up to 1e9, else
// scientific with 3 significant digits ("1.00e-06"); "nan", "inf", "-inf".
std::string format_metric(double v);
// 12.3, 1234, 12.3k, 4.5M.
std::string format_rate(double v);
// {"step":N,"a":..,"b":..} with metric keys sorted; non-finite values become null.
std::string metrics_json_line(int64_t step, const std::map<std::string, double>& metrics);

}  // namespace multiref
