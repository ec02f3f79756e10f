// TensorBoardWriter (checked by the independent reader tests/python/read_tfevents.py), CRC32C, TrainingLog's
// metrics.jsonl, resume behaviour and console line. Torch-free: test_util_core.h, not test_util.h.
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <regex>
#include <string>
#include <vector>

#include "test_util_core.h"
#include "train/tensorboard.h"
#include "train/training_log.h"
#include "util/common.h"

using namespace multiref;
using namespace multiref::testing;
namespace fs = std::filesystem;
using nlohmann::json;

namespace {

std::string reader() {
  return source_dir() + "/tests/python/read_tfevents.py";
}
bool have_python() {
  return ::access("/usr/bin/python3", X_OK) == 0;
}
// Skips without Debian's python3; a missing reader script is a broken checkout or build, not a skip.
#define REQUIRE_READER()                                                                             \
  if (!have_python()) GTEST_SKIP() << "/usr/bin/python3 not installed: cannot run read_tfevents.py"; \
  if (!file_exists(reader()))                                                                        \
  FAIL() << reader() << " not found: run from the repository root or build with -DMULTIREF_SOURCE_DIR=<repo>"

// stdout only (the reader's JSON lines); stderr goes to the test log.
CommandResult run(const std::string& cmd) {
  return run_command(cmd, /*merge_stderr=*/false);
}

std::vector<json> read_events(const std::string& file, bool all = false) {
  auto r = run("/usr/bin/python3 " + reader() + (all ? " --all " : " ") + "'" + file + "'");
  EXPECT_EQ(r.exit_code, 0) << r.output;
  std::vector<json> rows;
  for (auto& line : split(r.output, '\n'))
    if (!trim(line).empty()) rows.push_back(json::parse(line));
  return rows;
}

std::vector<std::string> event_files(const std::string& dir) {
  std::vector<std::string> out;
  for (auto& e : fs::directory_iterator(dir))
    if (e.path().filename().string().find("tfevents") != std::string::npos) out.push_back(e.path().string());
  std::sort(out.begin(), out.end());
  return out;
}

std::vector<json> read_jsonl_rows(const std::string& path) {
  std::vector<json> rows;
  for (auto& line : split(read_file(path), '\n'))
    if (!line.empty()) rows.push_back(json::parse(line));
  return rows;
}

std::string read_stream(FILE* f) {
  std::fflush(f);
  std::rewind(f);
  std::string s;
  char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof buf, f)) > 0) s.append(buf, n);
  return s;
}

}  // namespace

TEST(Crc32c, StandardVectors) {
  EXPECT_EQ(crc32c("123456789", 9), 0xE3069283u);
  std::string zeros(32, '\0'), ones(32, '\xff'), up, down;
  for (int i = 0; i < 32; ++i) up += char(i), down += char(31 - i);
  EXPECT_EQ(crc32c(zeros.data(), zeros.size()), 0x8A9136AAu);  // RFC 3720 B.4
  EXPECT_EQ(crc32c(ones.data(), ones.size()), 0x62A8AB43u);
  EXPECT_EQ(crc32c(up.data(), up.size()), 0x46DD794Eu);
  EXPECT_EQ(crc32c(down.data(), down.size()), 0x113FDB5Cu);
  EXPECT_EQ(crc32c("", 0), 0u);
  // Continuing from a previous CRC equals one pass over the concatenation.
  EXPECT_EQ(crc32c("6789", 4, crc32c("12345", 5)), 0xE3069283u);
  EXPECT_EQ(masked_crc32c("", 0), 0xa282ead8u);
}

TEST(Crc32c, PythonReaderAgrees) {
  REQUIRE_READER();
  auto r = run("/usr/bin/python3 " + reader() + " --selftest");
  EXPECT_EQ(r.exit_code, 0);
  EXPECT_EQ(r.output, "crc32c ok\n");
}

TEST(TensorBoard, FrameLayout) {
  std::string f = tfrecord_frame("abc");
  ASSERT_EQ(f.size(), 8u + 4 + 3 + 4);
  EXPECT_EQ(f.substr(0, 8), std::string("\x03\0\0\0\0\0\0\0", 8));
  EXPECT_EQ(f.substr(12, 3), "abc");
  uint32_t len_crc, data_crc;
  std::memcpy(&len_crc, f.data() + 8, 4);  // little-endian host assumed (x86, ARM)
  std::memcpy(&data_crc, f.data() + 15, 4);
  EXPECT_EQ(len_crc, masked_crc32c(f.data(), 8));
  EXPECT_EQ(data_crc, masked_crc32c("abc", 3));
}

TEST(TensorBoard, ScalarsRoundTripThroughIndependentReader) {
  REQUIRE_READER();
  TempDir tmp;
  std::string dir = tmp / "runs/nested";  // created by the writer
  std::string path;
  {
    TensorBoardWriter w(dir);
    path = w.path();
    w.add_scalar("loss", 0.125, 1, 1700000000.25);
    w.add_scalar("reward/mean", -3.5, 2, 1700000001.5);
    w.add_scalar("zero", 0.0, 0, 1700000002.0);
    w.add_scalar("big_step", 1e30, int64_t(1) << 40, 1700000003.0);
    w.add_scalar("lr", 5e-7, 3);  // wall time: now
    w.add_text("sample", "Q: 2+2?\nA: **4** \xc3\xa9", 3, 1700000004.0);
  }
  EXPECT_TRUE(std::regex_match(fs::path(path).filename().string(), std::regex(R"(events\.out\.tfevents\.\d{10}\..+)")))
      << path;
  auto files = event_files(dir);
  ASSERT_EQ(files.size(), 1u);
  auto rows = read_events(path, /*all=*/true);
  ASSERT_EQ(rows.size(), 7u);
  EXPECT_EQ(rows[0]["file_version"], "brain.Event:2");
  EXPECT_EQ(rows[0]["step"], 0);
  auto expect_scalar = [](const json& r, const char* tag, float value, int64_t step, double wall) {
    EXPECT_EQ(r["tag"], tag);
    EXPECT_EQ(r["value"].get<double>(), (double)value) << tag;  // stored as float32
    EXPECT_EQ(r["step"].get<int64_t>(), step) << tag;
    if (wall >= 0) {
      EXPECT_EQ(r["wall_time"].get<double>(), wall) << tag;  // stored as a double: exact
    }
  };
  expect_scalar(rows[1], "loss", 0.125f, 1, 1700000000.25);
  expect_scalar(rows[2], "reward/mean", -3.5f, 2, 1700000001.5);
  expect_scalar(rows[3], "zero", 0.0f, 0, 1700000002.0);
  expect_scalar(rows[4], "big_step", 1e30f, int64_t(1) << 40, 1700000003.0);
  expect_scalar(rows[5], "lr", 5e-7f, 3, -1);
  double now = unix_time_seconds();
  EXPECT_NEAR(rows[5]["wall_time"].get<double>(), now, 60.0);
  EXPECT_EQ(rows[6]["tag"], "sample");
  EXPECT_EQ(rows[6]["text"], "Q: 2+2?\nA: **4** \xc3\xa9");
  EXPECT_FALSE(rows[6].contains("value"));
}

TEST(TensorBoard, RecordsAreFlushedBeforeClose) {
  REQUIRE_READER();
  TempDir tmp;
  TensorBoardWriter w(tmp.path);
  w.add_scalar("a", 1.0, 1);
  w.add_scalar("a", 2.0, 2);
  auto rows = read_events(w.path());  // the writer is still open
  ASSERT_EQ(rows.size(), 2u);
  EXPECT_EQ(rows[1]["value"], 2.0);
}

TEST(TensorBoard, PurgeStepAndSameSecondRestart) {
  REQUIRE_READER();
  TempDir tmp;
  TensorBoardWriter a(tmp.path);
  TensorBoardWriter b(tmp.path, 7);  // same second: must get its own file, not share a's
  EXPECT_NE(a.path(), b.path());
  b.add_scalar("x", 1.0, 7);
  auto rows = read_events(b.path(), true);
  ASSERT_EQ(rows.size(), 3u);
  EXPECT_EQ(rows[0]["file_version"], "brain.Event:2");
  EXPECT_EQ(rows[0]["step"], 7);
  EXPECT_EQ(rows[1]["session_log"], "START");
  EXPECT_EQ(rows[1]["step"], 7);
  EXPECT_EQ(rows[2]["tag"], "x");
}

// The same file decoded by Google's protobuf library (Debian python3-protobuf, optional) must give what the
// hand decoder gives: guards against the writer and the hand decoder sharing a misreading of the format.
TEST(TensorBoard, GoogleProtobufAgrees) {
  REQUIRE_READER();
  if (run("/usr/bin/python3 -c 'import google.protobuf' 2>/dev/null").exit_code != 0)
    GTEST_SKIP() << "python3-protobuf not installed (optional extra check: apt-get install python3-protobuf)";
  TempDir tmp;
  std::string path;
  {
    TensorBoardWriter w(tmp.path, 4);
    path = w.path();
    w.add_scalar("loss", 0.1, 4, 1700000000.5);
    w.add_scalar("neg/step", -2.5, -3);
    w.add_scalar("nan", NAN, 5);
    w.add_text("sample", "x\n\xe2\x9c\x93", 6);
  }
  auto plain = run("/usr/bin/python3 " + reader() + " --all '" + path + "'");
  auto checked = run("/usr/bin/python3 " + reader() + " --all --protobuf '" + path + "'");
  EXPECT_EQ(plain.exit_code, 0);
  EXPECT_EQ(checked.exit_code, 0);
  EXPECT_EQ(checked.output, plain.output);
  EXPECT_EQ(split(plain.output, '\n').size(), 7u) << plain.output;
  EXPECT_NE(plain.output.find("\"step\": -3"), std::string::npos) << plain.output;
  EXPECT_NE(plain.output.find("\"value\": NaN"), std::string::npos) << plain.output;
}

TEST(TensorBoard, ReaderRejectsCorruptionAndTruncation) {
  REQUIRE_READER();
  TempDir tmp;
  std::string path;
  {
    TensorBoardWriter w(tmp.path);
    path = w.path();
    w.add_scalar("loss", 0.5, 1);
  }
  std::string good = read_file(path);
  auto check_fails = [&](const std::string& bytes, const std::string& what) {
    std::string bad = tmp / "bad.tfevents";
    write_file_atomic(bad, bytes);
    auto r = run("/usr/bin/python3 " + reader() + " '" + bad + "' 2>&1");
    EXPECT_EQ(r.exit_code, 1) << what;
    EXPECT_NE(r.output.find(what), std::string::npos) << r.output;
  };
  std::string flipped = good;
  flipped[flipped.size() - 6] ^= 0x01;  // inside the last record's data
  check_fails(flipped, "data CRC mismatch");
  std::string bad_len = good;
  bad_len[0] ^= 0x01;  // the first record's length
  check_fails(bad_len, "length CRC mismatch");
  check_fails(good.substr(0, good.size() - 2), "truncated");
}

TEST(ProgressLine, Formatting) {
  EXPECT_EQ(progress_line(400, 1000, 133, 1.0 / 3, {{"loss", 0.12345678}, {"reward", 1.5}}, 1234.4),
            " 40% [########------------] 400/1000 | 2:13 elapsed | ETA 3:20 | 0.333 s/step | 1234 tok/s | "
            "loss=0.1235 reward=1.5");
  // No step timed yet: unknown ETA and rate, no tokens/s, no metrics.
  EXPECT_EQ(progress_line(0, 50, 0.4, NAN, {}, NAN, 10), "  0% [----------] 0/50 | 0:00 elapsed | ETA ?");
  // Finished: full bar, ETA 0 even without a rate.
  EXPECT_EQ(progress_line(50, 50, 3725, 74.5, {}, NAN, 4),
            "100% [####] 50/50 | 1:02:05 elapsed | ETA 0:00 | 74.5 s/step");
  // Long runs and no bar.
  EXPECT_EQ(progress_line(1, 3, 0, 93784, {{"kl", 2e-5}}, 25000, 0),
            " 33% 1/3 | 0:00 elapsed | ETA 2d 04:06:08 | 9.38e+04 s/step | 25.0k tok/s | kl=2.00e-05");
  // Past the total (a resumed run with a smaller max_steps) clamps the bar.
  EXPECT_EQ(progress_line(12, 10, 1, 1, {}, NAN, 2), "100% [##] 12/10 | 0:01 elapsed | ETA 0:00 | 1 s/step");
}

TEST(ProgressLine, Pieces) {
  EXPECT_EQ(format_duration(5), "0:05");
  EXPECT_EQ(format_duration(59.6), "1:00");
  EXPECT_EQ(format_duration(3723), "1:02:03");
  EXPECT_EQ(format_duration(93784), "1d 02:03:04");
  EXPECT_EQ(format_duration(-1), "?");
  EXPECT_EQ(format_duration(NAN), "?");
  EXPECT_EQ(format_metric(0.1234), "0.1234");
  EXPECT_EQ(format_metric(1.5), "1.5");
  EXPECT_EQ(format_metric(3), "3");
  EXPECT_EQ(format_metric(-0.5), "-0.5");
  EXPECT_EQ(format_metric(123456.78), "123456.8");
  EXPECT_EQ(format_metric(5e-7), "5.00e-07");
  EXPECT_EQ(format_metric(NAN), "nan");
  EXPECT_EQ(format_metric(-INFINITY), "-inf");
  EXPECT_EQ(format_rate(12.34), "12.3");
  EXPECT_EQ(format_rate(4321), "4321");
  EXPECT_EQ(format_rate(25000), "25.0k");
  EXPECT_EQ(format_rate(4.5e6), "4.5M");
  EXPECT_EQ(format_rate(4.5e7), "45.0M");
}

TEST(TrainingLog, MetricsJsonl) {
  TempDir tmp;
  {
    TrainingLogSettings s;
    s.console = ConsoleMode::Off;
    TrainingLog log(tmp.path, 10, s);
    log.log(1, {{"loss", 0.5}, {"a", 1}, {"zeta", -2.25}});
    log.log(2, {{"loss", NAN}});
    // Flushed per call: visible while the log is still open.
    EXPECT_EQ(read_file(tmp / "metrics.jsonl"),
              "{\"step\":1,\"a\":1.0,\"loss\":0.5,\"zeta\":-2.25}\n{\"step\":2,\"loss\":null}\n");
  }
  EXPECT_EQ(metrics_json_line(3, {{"we\"ird", 0.1}}), "{\"step\":3,\"we\\\"ird\":0.1}");
  EXPECT_THROW(metrics_json_line(3, {{"step", 1}}), Error);
  EXPECT_THROW(metrics_json_line(3, {{"", 1}}), Error);
  EXPECT_THROW(TrainingLog(tmp.path, 0), Error);
}

TEST(TrainingLog, ResumeAppendsAndDropsStepsAfterTheCheckpoint) {
  TempDir tmp;
  TrainingLogSettings s;
  s.console = ConsoleMode::Off;
  {
    TrainingLog log(tmp.path, 6, s);
    for (int step = 1; step <= 5; ++step) log.log(step, {{"loss", step * 0.1}});
  }
  std::string first = read_file(tmp / "metrics.jsonl");
  // The run crashed after step 5; its last checkpoint was step 3. A crash mid-write also left half a row.
  { std::ofstream(tmp / "metrics.jsonl", std::ios::app) << "{\"step\":6,\"lo"; }
  s.start_step = 3;
  {
    TrainingLog log(tmp.path, 6, s);
    for (int step = 4; step <= 6; ++step) log.log(step, {{"loss", step * 1.0}});
  }
  auto rows = read_jsonl_rows(tmp / "metrics.jsonl");
  ASSERT_EQ(rows.size(), 6u);
  for (int i = 0; i < 6; ++i) EXPECT_EQ(rows[i]["step"], i + 1);
  EXPECT_EQ(rows[2]["loss"], 0.30000000000000004);  // step 3 from the first run, kept byte for byte
  EXPECT_EQ(rows[3]["loss"], 4.0);                  // step 4 redone by the resumed run
  EXPECT_EQ(read_file(tmp / "metrics.jsonl").substr(0, first.find("{\"step\":4")),
            first.substr(0, first.find("{\"step\":4")));

  // A fresh run (start_step 0) in the same directory starts the file over.
  s.start_step = 0;
  { TrainingLog log(tmp.path, 6, s); }
  EXPECT_EQ(read_file(tmp / "metrics.jsonl"), "");

  // Foreign content is not silently discarded.
  write_file_atomic(tmp / "metrics.jsonl", "{\"step\":1}\nnot json\n");
  s.start_step = 1;
  try {
    TrainingLog log(tmp.path, 6, s);
    ADD_FAILURE() << "expected an Error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("metrics.jsonl:2"), std::string::npos) << e.what();
  }
}

TEST(TrainingLog, TensorBoardScalarsAndResumePurge) {
  REQUIRE_READER();
  TempDir tmp;
  TrainingLogSettings s;
  s.console = ConsoleMode::Off;
  {
    TrainingLog log(tmp.path, 4, s);
    log.log(1, {{"loss", 0.75}, {"reward", 2}});
    log.log(2, {{"loss", 0.5}});
  }
  auto files = event_files(tmp / "runs");
  ASSERT_EQ(files.size(), 1u);
  auto rows = read_events(files[0]);
  ASSERT_EQ(rows.size(), 3u);
  EXPECT_EQ(rows[0]["tag"], "loss");
  EXPECT_EQ(rows[0]["value"], 0.75);
  EXPECT_EQ(rows[1]["tag"], "reward");
  EXPECT_EQ(rows[1]["step"], 1);
  EXPECT_EQ(rows[2]["step"], 2);
  EXPECT_EQ(rows[0]["wall_time"], rows[1]["wall_time"]);  // one log() call, one wall time

  std::string older = files[0];
  s.start_step = 1;
  { TrainingLog log(tmp.path, 4, s); }
  files = event_files(tmp / "runs");
  ASSERT_EQ(files.size(), 2u);
  std::string newer = files[0] == older ? files[1] : files[0];
  auto meta = read_events(newer, true);
  ASSERT_EQ(meta.size(), 2u);
  EXPECT_EQ(meta[1]["session_log"], "START");
  EXPECT_EQ(meta[1]["step"], 2);  // TensorBoard drops steps >= 2 of the earlier file

  s.tensorboard = false;
  TempDir tmp2;
  { TrainingLog log(tmp2.path, 4, s); }
  EXPECT_FALSE(fs::exists(tmp2 / "runs"));
}

TEST(TrainingLog, ConsoleLinesWithoutTty) {
  TempDir tmp;
  FILE* out = std::tmpfile();
  ASSERT_TRUE(out);
  TrainingLogSettings s;
  s.console_stream = out;  // a file, not a terminal: Auto means plain lines
  s.console_keys = {"reward", "loss", "absent"};
  s.tensorboard = false;
  {
    TrainingLog log(tmp.path, 2, s);
    log.log(1, {{"loss", 0.25}, {"reward", 1}, {"tokens_per_second", 512}, {"other", 9}});
    log.message("saved checkpoint-1");
    log.log(2, {{"loss", 0.125}});
  }
  std::string text = read_stream(out);
  std::fclose(out);
  EXPECT_EQ(text.find('\r'), std::string::npos);
  EXPECT_EQ(text.find('\033'), std::string::npos);
  auto lines = split(text, '\n');
  ASSERT_EQ(lines.size(), 4u) << text;  // three lines and the empty piece after the last newline
  EXPECT_EQ(lines[0].substr(0, 41), " 50% [##########----------] 1/2 | 0:00 el");
  EXPECT_NE(lines[0].find(" | 512 tok/s | reward=1 loss=0.25"), std::string::npos) << lines[0];
  EXPECT_EQ(lines[0].find("other"), std::string::npos);
  EXPECT_EQ(lines[1], "saved checkpoint-1");
  EXPECT_EQ(lines[2].substr(0, 4), "100%");
  EXPECT_NE(lines[2].find("ETA 0:00"), std::string::npos);
  EXPECT_NE(lines[2].find("| loss=0.125"), std::string::npos);
  EXPECT_EQ(lines[2].find("tok/s"), std::string::npos);
}

TEST(TrainingLog, ConsoleRedraw) {
  TempDir tmp;
  FILE* out = std::tmpfile();
  ASSERT_TRUE(out);
  TrainingLogSettings s;
  s.console_stream = out;
  s.console = ConsoleMode::Redraw;
  s.tensorboard = false;
  s.bar_width = 0;
  {
    TrainingLog log(tmp.path, 3, s);
    log.log(1, {});
    log.message("note");
    log.log(2, {});
  }  // the destructor ends the open line
  std::string text = read_stream(out);
  std::fclose(out);
  // Elapsed time is ~0 in this test, so each line is predictable except for the s/step figure.
  std::regex want(R"(\r\x1b\[K 33% 1/3 \| 0:00 elapsed \| ETA 0:00 \| [0-9.e+-]+ s/step)"
                  R"(\r\x1b\[Knote\n 33% 1/3 .* s/step)"
                  R"(\r\x1b\[K 66% 2/3 .* s/step\n)");
  EXPECT_TRUE(std::regex_match(text, want)) << json(text).dump();
}
