// Helpers shared by the test files.
#pragma once
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cstdlib>
#include <filesystem>
#include <string>

#include "common.h"

namespace multiref::testing {

inline std::string source_dir() { return MULTIREF_SOURCE_DIR; }
inline std::string golden_dir(const std::string& model) { return source_dir() + "/tests/golden/data/" + model; }
// ../shared/data beside the repository; empty when absent (a user's fresh clone).
inline std::string shared_data() {
  std::string d = source_dir() + "/../shared/data";
  return dir_exists(d) ? d : "";
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
};

struct CommandResult {
  int exit_code;
  std::string output;  // stdout and stderr together
};

// Runs a shell command line, capturing its output.
inline CommandResult run_command(const std::string& cmd) {
  std::string full = cmd + " 2>&1";
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

inline std::string multiref_binary() { return MULTIREF_BINARY; }

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

inline double max_abs_diff(const torch::Tensor& a, const torch::Tensor& b) {
  return (a.to(torch::kFloat64) - b.to(torch::kFloat64)).abs().max().item<double>();
}

}  // namespace multiref::testing
