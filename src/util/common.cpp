#include "util/common.h"

#include <fcntl.h>
#include <ftw.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <random>

#include "util/json_text.h"

namespace fs = std::filesystem;

namespace multiref {

std::string detail::bounded_arg(const std::string& s) {
  return text_excerpt(s, 600);
}

std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) fail(path, ": cannot open for reading (does the file exist and is it readable?)");
  std::ostringstream ss;
  ss << in.rdbuf();
  if (in.bad()) fail(path, ": read error");
  return ss.str();
}

bool file_exists(const std::string& path) {
  std::error_code ec;
  return fs::is_regular_file(path, ec);
}

bool dir_exists(const std::string& path) {
  std::error_code ec;
  return fs::is_directory(path, ec);
}

std::string join_path(const std::string& a, const std::string& b) {
  if (a.empty()) return b;
  if (!b.empty() && b[0] == '/') return b;
  return a.back() == '/' ? a + b : a + "/" + b;
}

std::vector<std::string> split(const std::string& s, char sep) {
  std::vector<std::string> out;
  std::string cur;
  for (char c : s) {
    if (c == sep) {
      out.push_back(cur);
      cur.clear();
    } else {
      cur += c;
    }
  }
  out.push_back(cur);
  return out;
}

std::string trim(const std::string& s) {
  size_t b = s.find_first_not_of(" \t\r\n");
  if (b == std::string::npos) return "";
  size_t e = s.find_last_not_of(" \t\r\n");
  return s.substr(b, e - b + 1);
}

void fsync_path(const std::string& path) {
  int fd = ::open(path.c_str(), O_RDONLY);
  if (fd < 0) return;
  ::fsync(fd);
  ::close(fd);
}

static std::string unique_suffix() {
  static std::mt19937_64 rng(std::random_device{}() ^ (uint64_t)::getpid());
  return std::to_string(::getpid()) + "-" + std::to_string(rng() % 1000000007ULL);
}

void write_file_atomic(const std::string& path, const std::string& data) {
  fs::path p(path);
  std::string dir = p.has_parent_path() ? p.parent_path().string() : ".";
  std::string tmp = join_path(dir, "." + p.filename().string() + ".tmp-" + unique_suffix());
  {
    int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) fail(path, ": cannot create (", std::strerror(errno), ")");
    int err = 0;
    for (size_t done = 0; done < data.size() && !err;) {
      ssize_t n = ::write(fd, data.data() + done, data.size() - done);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0)
        err = n < 0 ? errno : EIO;
      else
        done += (size_t)n;
    }
    if (!err && ::fsync(fd) != 0) err = errno;
    if (::close(fd) != 0 && !err) err = errno;
    if (err) {
      ::unlink(tmp.c_str());
      fail(path, ": write failed (", std::strerror(err), "; ", data.size(), " bytes to write)");
    }
  }
  std::error_code ec;
  fs::rename(tmp, path, ec);
  if (ec) {
    fs::remove(tmp, ec);
    fail(path, ": cannot rename temporary file into place: ", ec.message());
  }
  fsync_path(dir);
}

// Not std::filesystem::remove_all: the CUDA LibTorch 2.x wheels' libtorch.so carries and exports its own copy of
// parts of std::filesystem, our calls bind to it (it precedes libstdc++ in the lookup order), and its remove_all
// jumps to address 0 (seen with torch 2.11.0+cu130: every checkpoint rotation and temp-dir cleanup crashed).
void remove_all(const std::string& path) {
  struct stat st;
  if (::lstat(path.c_str(), &st) != 0) return;  // nothing there
  if (!S_ISDIR(st.st_mode)) {
    ::unlink(path.c_str());
    return;
  }
  // Depth first, links not followed: files and links are unlinked, directories removed once emptied.
  ::nftw(
      path.c_str(),
      [](const char* p, const struct stat*, int flag, struct FTW*) {
        (void)(flag == FTW_DP ? ::rmdir(p) : ::unlink(p));  // best effort, like the error_code overload it replaced
        return 0;
      },
      64, FTW_DEPTH | FTW_PHYS);
}

void make_dirs(const std::string& path) {
  std::error_code ec;
  fs::create_directories(path, ec);
  if (ec) fail(path, ": cannot create directory: ", ec.message());
}

StagedDir::StagedDir(const std::string& final_dir) : final_(final_dir) {
  fs::path p = fs::path(final_dir).lexically_normal();
  if (p.filename().empty()) p = p.parent_path();
  final_ = p.string();
  std::string parent = p.has_parent_path() ? p.parent_path().string() : ".";
  make_dirs(parent);
  tmp_ = join_path(parent, "." + p.filename().string() + ".tmp-" + unique_suffix());
  make_dirs(tmp_);
}

StagedDir::~StagedDir() {
  if (!committed_) remove_all(tmp_);
}

void StagedDir::commit() {
  for (auto& e : fs::directory_iterator(tmp_)) fsync_path(e.path().string());
  fsync_path(tmp_);
  std::error_code ec;
  std::string old;
  if (fs::exists(final_, ec)) {
    // Keep files the new directory does not replace only if the caller put them there; a model directory
    // is replaced whole. Move the old one aside first so the swap is two renames, never a half state.
    old = final_ + ".old-" + unique_suffix();
    fs::rename(final_, old, ec);
    if (ec) fail(final_, ": cannot move the existing directory aside: ", ec.message());
  }
  fs::rename(tmp_, final_, ec);
  if (ec) {
    if (!old.empty()) fs::rename(old, final_, ec);
    fail(final_, ": cannot rename the finished directory into place");
  }
  committed_ = true;
  fsync_path(fs::path(final_).has_parent_path() ? fs::path(final_).parent_path().string() : ".");
  if (!old.empty()) remove_all(old);
}

double now_seconds() {
  using namespace std::chrono;
  return duration<double>(steady_clock::now().time_since_epoch()).count();
}

int64_t peak_rss_bytes() {
  std::ifstream in("/proc/self/status");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("VmHWM:", 0) == 0) {
      std::istringstream ss(line.substr(6));
      int64_t kb = 0;
      ss >> kb;
      return kb * 1024;
    }
  }
  return 0;
}

uint64_t stream_seed(uint64_t seed, int64_t step, uint64_t stream) {
  // splitmix64 over the three inputs: independent-looking streams from consecutive integers.
  uint64_t x = seed * 0x9E3779B97F4A7C15ULL ^ ((uint64_t)step + 0x632BE59BD9B4E019ULL) * 0xBF58476D1CE4E5B9ULL ^
               (stream + 1) * 0x94D049BB133111EBULL;
  x ^= x >> 30;
  x *= 0xBF58476D1CE4E5B9ULL;
  x ^= x >> 27;
  x *= 0x94D049BB133111EBULL;
  return x ^ (x >> 31);
}

}  // namespace multiref
