#include "data/reward_program.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cmath>
#include <cstring>

#include "util/common.h"
#include "util/json_text.h"

namespace multiref {

namespace {

// A line as an error message shows it: at most 200 bytes, so a 100 KB answer does not flood the console.
std::string quoted(const std::string& line) {
  return "'" + text_excerpt(line, 200) + "'";
}

double seconds_since(std::chrono::steady_clock::time_point t) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t).count();
}

}  // namespace

double parse_reward_answer(const std::string& line, const std::string& command) {
  nlohmann::json j;
  try {
    j = parse_json(line, "answer");
  } catch (const std::exception&) {
    // Python's json.dumps writes NaN and Infinity, which JSON does not have: name the real problem.
    if (line.find("NaN") != std::string::npos || line.find("Infinity") != std::string::npos)
      fail("reward program '", command, "' answered ", quoted(line), ": the reward is not finite");
    fail("reward program '", command, "' answered ", quoted(line),
         ", which is not JSON; each answer is one line {\"reward\": <number>}");
  }
  if (!j.is_object() || !j.contains("reward"))
    fail("reward program '", command, "' answered ", quoted(line), " without a \"reward\" field");
  const auto& r = j["reward"];
  if (!r.is_number()) fail("reward program '", command, "' answered ", quoted(line), ": \"reward\" must be a number");
  double v = r.get<double>();
  if (!std::isfinite(v)) fail("reward program '", command, "' answered ", quoted(line), ": the reward is not finite");
  return v;
}

RewardProgram::RewardProgram(std::string command, double timeout_s)
    : command_(std::move(command)), timeout_s_(timeout_s) {
  if (command_.empty()) fail("--reward_program: the command is empty");
  if (!(timeout_s_ > 0)) fail("--reward_timeout must be > 0 seconds, got ", timeout_s_);
  // A program that exits while we write must give EPIPE here, not kill multiref.
  signal(SIGPIPE, SIG_IGN);
  int in[2], out[2];
  // Close-on-exec: no other child (a second reward program) inherits these ends; dup2 below clears the flag on the
  // program's own stdin and stdout.
  if (pipe2(in, O_CLOEXEC) != 0 || pipe2(out, O_CLOEXEC) != 0)
    fail("reward program: cannot create pipes (", std::strerror(errno), ")");
  pid_ = fork();
  if (pid_ < 0) fail("reward program: cannot fork (", std::strerror(errno), ")");
  if (pid_ == 0) {
    setpgid(0, 0);  // its own process group: stopping the program stops whatever the shell started too
    dup2(in[0], STDIN_FILENO);
    dup2(out[1], STDOUT_FILENO);
    close(in[0]);
    close(in[1]);
    close(out[0]);
    close(out[1]);
    execl("/bin/sh", "sh", "-c", command_.c_str(), (char*)nullptr);
    _exit(127);
  }
  setpgid(pid_, pid_);  // also here: whichever of parent and child runs first
  close(in[0]);
  close(out[1]);
  to_child_ = in[1];
  from_child_ = out[0];
  fcntl(to_child_, F_SETFL, fcntl(to_child_, F_GETFL) | O_NONBLOCK);
  fcntl(from_child_, F_SETFL, fcntl(from_child_, F_GETFL) | O_NONBLOCK);
}

RewardProgram::~RewardProgram() {
  if (to_child_ >= 0) close(to_child_);
  if (from_child_ >= 0) close(from_child_);
  if (pid_ <= 0) return;
  bool exited = false;
  for (int i = 0; i < 100 && !exited; ++i) {  // up to a second to exit on its own
    exited = waitpid(pid_, nullptr, WNOHANG) == pid_;
    if (!exited) usleep(10000);
  }
  // The whole group: a shell's children (python3 prog.py under sh -c) would otherwise live on, holding our
  // stderr open.
  kill(-pid_, SIGKILL);
  if (!exited) waitpid(pid_, nullptr, 0);
}

void RewardProgram::fail_with(const std::string& what, const std::string& line) {
  fail("reward program '", command_, "' ", what, line.empty() ? "" : "; the request was " + quoted(line));
}

std::vector<double> RewardProgram::score(const std::vector<nlohmann::json>& requests) {
  if (pid_ <= 0 || to_child_ < 0) fail("reward program '", command_, "' is not running (it failed before)");
  std::vector<std::string> lines;
  std::string out;
  for (auto& r : requests) {
    lines.push_back(r.dump());
    out += lines.back() + "\n";
  }
  std::vector<double> rewards;
  rewards.reserve(requests.size());
  size_t written = 0;
  auto last_answer = std::chrono::steady_clock::now();
  char buf[65536];
  while (rewards.size() < requests.size()) {
    pollfd fds[2] = {{from_child_, POLLIN, 0}, {to_child_, POLLOUT, 0}};
    int nfds = written < out.size() ? 2 : 1;
    double left = timeout_s_ - seconds_since(last_answer);
    if (left <= 0) fail_with(cat("gave no answer in ", timeout_s_, " s (--reward_timeout)"), lines[rewards.size()]);
    int ready = poll(fds, (nfds_t)nfds, (int)std::min(1000.0, std::ceil(left * 1000)));
    if (ready < 0 && errno != EINTR) fail("reward program: poll failed (", std::strerror(errno), ")");
    if (ready <= 0) continue;
    if (nfds == 2 && (fds[1].revents & (POLLOUT | POLLERR | POLLHUP))) {
      ssize_t n = write(to_child_, out.data() + written, out.size() - written);
      if (n > 0) written += (size_t)n;
      // EPIPE: the program closed its input (it is exiting, most likely). Stop writing and read what it says:
      // its answers, then the end of its output, which names how it ended.
      if (n < 0 && errno != EAGAIN && errno != EINTR) written = out.size();
    }
    if (fds[0].revents & (POLLIN | POLLHUP | POLLERR)) {
      ssize_t n = read(from_child_, buf, sizeof buf);
      if (n > 0) {
        pending_.append(buf, (size_t)n);
        for (size_t nl; (nl = pending_.find('\n')) != std::string::npos && rewards.size() < requests.size();) {
          std::string line = pending_.substr(0, nl);
          pending_.erase(0, nl + 1);
          if (!line.empty() && line.back() == '\r') line.pop_back();
          if (trim(line).empty()) continue;
          try {
            rewards.push_back(parse_reward_answer(line, command_));
          } catch (const Error& e) {
            fail(e.what(), "; the request it answered was ", quoted(lines[rewards.size()]));
          }
          last_answer = std::chrono::steady_clock::now();
        }
      } else if (n == 0) {
        // End of its output: it exited, or closed stdout and goes on (then it is stopped: no answer can come).
        int status = 0;
        bool exited = false;
        for (int i = 0; i < 100 && !exited; ++i) {
          exited = waitpid(pid_, &status, WNOHANG) == pid_;
          if (!exited) usleep(10000);
        }
        kill(-pid_, SIGKILL);  // the rest of its process group
        if (!exited) waitpid(pid_, &status, 0);
        pid_ = -1;
        std::string how = !exited             ? std::string("closed its output")
                          : WIFEXITED(status) ? cat("exited with status ", WEXITSTATUS(status))
                                              : cat("was killed by signal ", WTERMSIG(status));
        fail_with(
            how + " after " + std::to_string(rewards.size()) + " of " + std::to_string(requests.size()) + " answers",
            lines[rewards.size()]);
      } else if (errno != EAGAIN && errno != EINTR) {
        fail("reward program: read failed (", std::strerror(errno), ")");
      }
    }
  }
  return rewards;
}

}  // namespace multiref
