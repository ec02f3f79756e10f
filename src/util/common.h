// Errors, file helpers and atomic output shared by every module.
#pragma once
#include <cstdint>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

namespace multiref {

// Every user-facing failure is a multiref::Error whose message names the file, field or flag and says
// how to fix it. main() prints it and exits non-zero.
class Error : public std::runtime_error {
 public:
  explicit Error(const std::string& msg) : std::runtime_error(msg) {}
};

namespace detail {
inline void cat_into(std::ostringstream&) {}
template <typename T, typename... Rest>
void cat_into(std::ostringstream& os, const T& v, const Rest&... rest) {
  os << v;
  cat_into(os, rest...);
}
}  // namespace detail

template <typename... Args>
std::string cat(const Args&... args) {
  std::ostringstream os;
  detail::cat_into(os, args...);
  return os.str();
}

namespace detail {
// Strings that fail() quotes often come from the input (a role, a merge, a dtype) and can be 100 KB long: each
// string argument is cut to a bounded prefix that says how long it was (text_excerpt, util/json_text.h).
std::string bounded_arg(const std::string& s);
template <typename T>
const T& bounded(const T& v) {
  return v;
}
inline std::string bounded(const std::string& s) {
  return s.size() <= 600 ? s : bounded_arg(s);
}
}  // namespace detail

template <typename... Args>
[[noreturn]] void fail(const Args&... args) {
  throw Error(cat(detail::bounded(args)...));
}

std::string read_file(const std::string& path);
bool file_exists(const std::string& path);
bool dir_exists(const std::string& path);
std::string join_path(const std::string& a, const std::string& b);
std::vector<std::string> split(const std::string& s, char sep);
std::string trim(const std::string& s);

// Writes `data` to `path` atomically: a temporary file in the same directory, fsync, rename.
void write_file_atomic(const std::string& path, const std::string& data);

// A directory written as a whole: files go into a hidden temporary sibling; commit() fsyncs and renames
// it over `final_dir` (a previous directory there is replaced only after the new one is complete). If
// commit() is never reached, the destructor removes the temporary, so a failure leaves nothing behind.
class StagedDir {
 public:
  explicit StagedDir(const std::string& final_dir);
  ~StagedDir();
  StagedDir(const StagedDir&) = delete;
  StagedDir& operator=(const StagedDir&) = delete;
  const std::string& path() const { return tmp_; }
  std::string file(const std::string& name) const { return join_path(tmp_, name); }
  void commit();

 private:
  std::string final_, tmp_;
  bool committed_ = false;
};

void fsync_path(const std::string& path);
void remove_all(const std::string& path);
void make_dirs(const std::string& path);

// Monotonic seconds.
double now_seconds();
// Peak resident set size of this process in bytes (from /proc/self/status VmHWM).
int64_t peak_rss_bytes();

// A deterministic 64-bit seed for one random stream (`stream`) of one step: every random stream of the trainers is
// derived from (seed, step), so step and data position are a run's whole RNG state.
uint64_t stream_seed(uint64_t seed, int64_t step, uint64_t stream);

}  // namespace multiref
