// Test helpers that need no LibTorch (temporary directories, shell commands, error messages): the torch-free
// tests (test_rewards, test_training_log) build standalone with just these.
#pragma once
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "util/common.h"

namespace multiref::testing {

inline std::string source_dir() {
#ifdef MULTIREF_SOURCE_DIR
  return MULTIREF_SOURCE_DIR;
#else
  // Standalone builds (g++ ... tests/test_rewards.cpp): this header's own path, relative to the compiler's
  // working directory, so run such a binary from the repository root or pass -DMULTIREF_SOURCE_DIR=<repo>.
  return std::filesystem::absolute(__FILE__).parent_path().parent_path().string();
#endif
}
inline std::string golden_dir(const std::string& model) {
  return source_dir() + "/tests/golden/data/" + model;
}
// The real data the tests read (tests/fixtures/README.md gives each file's source and license). It lives in the
// repository: no test depends on anything beside it (a user's clone has no ../shared).
inline std::string fixture_dir() {
  return source_dir() + "/tests/fixtures";
}

// A fresh directory under the build tree's temp space, removed at scope exit.
struct TempDir {
  std::string path;
  TempDir() {
    static int counter = 0;
    path = (std::filesystem::temp_directory_path() /
            ("multiref-test-" + std::to_string(::getpid()) + "-" + std::to_string(counter++)))
               .string();
    multiref::remove_all(path);
    std::filesystem::create_directories(path);
  }
  ~TempDir() { multiref::remove_all(path); }
  std::string operator/(const std::string& name) const { return path + "/" + name; }
  // Writes `text` to the file `name` in here; returns its path.
  std::string write(const std::string& name, const std::string& text) const {
    std::string p = *this / name;
    std::ofstream(p, std::ios::binary) << text;
    return p;
  }
};

struct CommandResult {
  int exit_code;
  std::string output;  // stdout and stderr together
};

// Runs a shell command line, capturing its output (stdout only with merge_stderr false: stderr then goes to
// the test log).
inline CommandResult run_command(const std::string& cmd, bool merge_stderr = true) {
  std::string full = merge_stderr ? cmd + " 2>&1" : cmd;
  FILE* p = ::popen(full.c_str(), "r");
  CommandResult r{-1, ""};
  if (!p) return r;
  char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof buf, p)) > 0) r.output.append(buf, n);
  int status = ::pclose(p);
  r.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return r;
}

// Runs a command that must succeed (a test's setup), failing the test with its output otherwise.
inline void run_ok(const std::string& cmd) {
  auto r = run_command(cmd);
  ASSERT_EQ(r.exit_code, 0) << cmd << "\n" << r.output;
}

// The JSON objects of a jsonl file, skipping empty lines.
inline std::vector<nlohmann::json> read_json_lines(const std::string& path) {
  std::vector<nlohmann::json> out;
  std::ifstream in(path);
  for (std::string line; std::getline(in, line);)
    if (!line.empty()) out.push_back(nlohmann::json::parse(line));
  return out;
}

#ifdef MULTIREF_BINARY
inline std::string multiref_binary() {
  return MULTIREF_BINARY;
}
// A `multiref` command line: the binary, then `args`.
inline std::string mr(const std::string& args) {
  return multiref_binary() + " " + args;
}

// The GRPO and DPO tests' references: a 600-token BPE tokenizer trained on `corpus` (dir/tok) and two tiny
// Qwen2 models with it, seeds 1 and 2 (dir/ra, dir/rb).
inline void make_tiny_references(const std::string& dir, const std::string& corpus) {
  std::ofstream(dir + "/corpus.txt") << corpus;
  run_ok(multiref_binary() + " train-tokenizer --input " + dir + "/corpus.txt --vocab_size 600 --output " + dir +
         "/tok");
  for (auto [name, seed] : {std::pair<const char*, int>{"ra", 1}, {"rb", 2}})
    run_ok(multiref_binary() + " init --arch qwen2 --preset tiny --seed " + std::to_string(seed) + " --tokenizer " +
           dir + "/tok --output_dir " + dir + "/" + name);
}

// The GRPO tests' world: the GSM8K fixture (300 train, 500 test rows) as dir/data/gsm8k, and make_tiny_references
// with a tokenizer trained on the training rows. Returns the data directory.
inline std::string make_gsm8k_world(const std::string& dir) {
  std::string data = dir + "/data";
  std::filesystem::create_directories(data + "/gsm8k");
  for (auto split : {"train", "test"})
    std::filesystem::copy_file(fixture_dir() + "/gsm8k/" + split + ".jsonl", data + "/gsm8k/" + split + ".jsonl");
  std::string corpus;
  std::ifstream in(fixture_dir() + "/gsm8k/train.jsonl");
  for (std::string line; std::getline(in, line);) {
    auto j = nlohmann::json::parse(line);
    corpus += j["question"].get<std::string>() + "\n" + j["answer"].get<std::string>() + "\n";
  }
  make_tiny_references(dir, corpus);
  return data;
}
#endif

// Debian's interpreter with python3-torch; the first python3 on PATH may lack torch.
inline bool have_debian_torch() {
  static int ok = -1;
  if (ok < 0) ok = run_command("/usr/bin/python3 -c 'import torch, numpy'").exit_code == 0;
  return ok == 1;
}

// Asserts that `fn` throws a multiref::Error whose message contains every given fragment.
template <typename F>
void expect_error(F&& fn, std::initializer_list<std::string> fragments) {
  try {
    fn();
    ADD_FAILURE() << "expected an Error";
  } catch (const Error& e) {
    std::string msg = e.what();
    for (auto& f : fragments) EXPECT_NE(msg.find(f), std::string::npos) << "message lacks '" << f << "': " << msg;
  }
}

}  // namespace multiref::testing
