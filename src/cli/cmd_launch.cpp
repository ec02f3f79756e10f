// `multiref launch`: torchrun for machines without Python. Starts --nproc_per_node copies of a command with the
// variables torchrun sets (RANK, WORLD_SIZE, LOCAL_RANK, LOCAL_WORLD_SIZE, MASTER_ADDR, MASTER_PORT), prefixes every
// line they print with their rank, forwards Ctrl-C / SIGTERM to all of them, and as soon as one fails stops the
// others and exits non-zero.
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <csignal>
#include <cstring>
#include <iostream>

#include "cli/commands.h"
#include "util/common.h"

namespace multiref {

namespace {

volatile sig_atomic_t g_forward = 0;
void on_signal(int sig) {
  g_forward = sig;
}

struct Rank {
  pid_t pid = -1;
  int fd = -1;          // its stdout and stderr, merged
  std::string pending;  // an unfinished line
  int global = 0;
  bool done = false;
  int status = 0;
};

// Writes the complete lines of `r.pending` with the rank's prefix (all of it when `flush`).
void emit(Rank& r, bool flush) {
  size_t start = 0;
  for (;;) {
    size_t end = r.pending.find_first_of("\n\r", start);
    if (end == std::string::npos) break;
    std::cout << "[rank " << r.global << "] " << r.pending.substr(start, end - start) << r.pending[end];
    start = end + 1;
  }
  r.pending.erase(0, start);
  if (flush && !r.pending.empty()) {
    std::cout << "[rank " << r.global << "] " << r.pending << "\n";
    r.pending.clear();
  }
  std::cout.flush();
}

}  // namespace

int cmd_launch(int argc, char** argv) {
  int nproc_per_node = 1, nnodes = 1, node_rank = 0, master_port = 29500;
  double grace = 30;
  std::string master_addr = "127.0.0.1";
  // The command starts after "--"; flags before it are the launcher's.
  int sep = -1;
  for (int i = 2; i < argc; ++i)
    if (std::string(argv[i]) == "--") {
      sep = i;
      break;
    }
  FlagTable t("multiref launch",
              "Start a multi-process run like torchrun: multiref launch --nproc_per_node N [--nnodes M --node_rank R "
              "--master_addr A --master_port P] -- COMMAND ARGS... (e.g. -- gsm8k_grpo --dataset gsm8k ...)");
  t.add("nproc_per_node", &nproc_per_node, "processes (ranks) to start on this machine");
  t.add("nnodes", &nnodes, "machines in the run");
  t.add("node_rank", &node_rank, "this machine's index in [0, nnodes)");
  t.add("master_addr", &master_addr, "address of node 0, where rank 0 serves the rendezvous");
  t.add("master_port", &master_port, "its port");
  t.add("grace_seconds", &grace, "after a rank fails, how long the others get to exit before SIGKILL");
  t.parse(sep < 0 ? argc : sep, argv, 2);
  if (t.help_requested()) {
    std::cout << t.help();
    return 0;
  }
  if (sep < 0 || sep + 1 >= argc)
    fail("multiref launch: no command; put it after --, e.g. multiref launch --nproc_per_node 2 -- dpo_training ...");
  if (nproc_per_node < 1) fail("--nproc_per_node must be >= 1, got ", nproc_per_node);
  if (nnodes < 1) fail("--nnodes must be >= 1, got ", nnodes);
  if (node_rank < 0 || node_rank >= nnodes) fail("--node_rank ", node_rank, " is outside [0, --nnodes ", nnodes, ")");
  if (master_port < 1 || master_port > 65535) fail("--master_port must be in [1, 65535], got ", master_port);
  if (!(grace >= 0)) fail("--grace_seconds must be >= 0");

  std::signal(SIGINT, on_signal);
  std::signal(SIGTERM, on_signal);
  std::signal(SIGPIPE, SIG_IGN);
  std::vector<Rank> ranks(nproc_per_node);
  int world = nnodes * nproc_per_node;
  for (int i = 0; i < nproc_per_node; ++i) {
    int fds[2];
    if (pipe(fds) != 0) fail("multiref launch: pipe: ", std::strerror(errno));
    Rank& r = ranks[i];
    r.global = node_rank * nproc_per_node + i;
    pid_t pid = fork();
    if (pid < 0) fail("multiref launch: fork: ", std::strerror(errno));
    if (pid == 0) {
      setpgid(0, 0);  // its own process group: stopping a rank stops what it started too
      dup2(fds[1], 1);
      dup2(fds[1], 2);
      close(fds[0]);
      close(fds[1]);
      std::signal(SIGINT, SIG_DFL);
      std::signal(SIGTERM, SIG_DFL);
      std::signal(SIGPIPE, SIG_DFL);
      setenv("RANK", std::to_string(r.global).c_str(), 1);
      setenv("WORLD_SIZE", std::to_string(world).c_str(), 1);
      setenv("LOCAL_RANK", std::to_string(i).c_str(), 1);
      setenv("LOCAL_WORLD_SIZE", std::to_string(nproc_per_node).c_str(), 1);
      setenv("GROUP_RANK", std::to_string(node_rank).c_str(), 1);
      setenv("MASTER_ADDR", master_addr.c_str(), 1);
      setenv("MASTER_PORT", std::to_string(master_port).c_str(), 1);
      execvp(argv[sep + 1], argv + sep + 1);
      std::fprintf(stderr, "multiref launch: cannot run %s: %s\n", argv[sep + 1], std::strerror(errno));
      _exit(127);
    }
    close(fds[1]);
    setpgid(pid, pid);  // also here: no race with the child's own call
    r.pid = pid;
    r.fd = fds[0];
  }

  int exit_code = 0, first_failed = -1;
  double stop_at = -1;      // when the survivors get SIGKILL
  double all_done_at = -1;  // when the last rank ended
  auto stop_all = [&](int sig) {
    for (auto& r : ranks)
      if (!r.done) kill(-r.pid, sig);
  };
  for (;;) {
    if (g_forward) {
      stop_all(g_forward);  // Ctrl-C / SIGTERM: each rank saves and exits as it does alone
      g_forward = 0;
    }
    std::vector<pollfd> pfds;
    std::vector<Rank*> polled;  // pfds[i] is polled[i]'s output
    for (auto& r : ranks)
      if (r.fd >= 0) {
        pfds.push_back({r.fd, POLLIN, 0});
        polled.push_back(&r);
      }
    if (pfds.empty() || poll(pfds.data(), pfds.size(), 200) <= 0) {
      if (pfds.empty()) usleep(100000);
      pfds.clear();
    }
    for (size_t i = 0; i < pfds.size(); ++i) {
      if (!(pfds[i].revents & (POLLIN | POLLHUP | POLLERR))) continue;
      Rank& r = *polled[i];
      char buf[65536];
      ssize_t n = read(r.fd, buf, sizeof buf);
      if (n > 0) {
        r.pending.append(buf, (size_t)n);
        emit(r, false);
      } else if (n == 0 || (errno != EINTR && errno != EAGAIN)) {
        emit(r, true);
        close(r.fd);
        r.fd = -1;
      }
    }
    for (auto& r : ranks) {
      if (r.done) continue;
      int st = 0;
      if (waitpid(r.pid, &st, WNOHANG) != r.pid) continue;
      r.done = true;
      r.status = st;
      bool ok = WIFEXITED(st) && WEXITSTATUS(st) == 0;
      if (ok) continue;
      std::cout << "multiref launch: rank " << r.global << " "
                << (WIFEXITED(st) ? "exited with status " + std::to_string(WEXITSTATUS(st))
                                  : std::string("was killed by signal ") + strsignal(WTERMSIG(st)))
                << (first_failed < 0 ? "; stopping the other ranks" : "") << std::endl;
      if (first_failed < 0) {
        first_failed = r.global;
        exit_code = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
        stop_all(SIGTERM);
        stop_at = now_seconds() + grace;
      }
    }
    bool all_done = true, all_closed = true;
    for (auto& r : ranks) {
      all_done = all_done && r.done;
      all_closed = all_closed && r.fd < 0;
    }
    if (all_done && all_closed) break;
    // A rank that left a background process holding its output open: its lines stop mattering once it is gone.
    if (all_done && all_done_at < 0) all_done_at = now_seconds();
    if (all_done && now_seconds() - all_done_at > 2) {
      for (auto& r : ranks)
        if (r.fd >= 0) {
          emit(r, true);
          close(r.fd);
          r.fd = -1;
        }
      break;
    }
    if (stop_at > 0 && now_seconds() > stop_at) {
      stop_all(SIGKILL);
      stop_at = -1;
    }
  }
  if (first_failed >= 0) {
    std::cerr << "multiref launch: failed: rank " << first_failed << " ended first with status " << exit_code
              << " (its lines above say why)\n";
    return exit_code == 0 ? 1 : exit_code;
  }
  return 0;
}

}  // namespace multiref
