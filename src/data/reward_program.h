// A reward program: the plug-in for rewards multiref does not compute itself (unit-test runners, verifiers, LLM
// judges). The command starts once (through /bin/sh -c) and keeps running; for every completion multiref writes
// one JSON object on a line to its stdin and reads one line back, in order:
//
//   multiref -> program   {"prompt_ids": [...], "completion_ids": [...], "prompt": "...", "completion": "...",
//                          "row": {...}}                  (prompt / completion only when there is a tokenizer)
//   program -> multiref   {"reward": 0.5}
//
// The program's stderr passes through. Requests go out while answers come back (a batch larger than the pipes'
// buffers cannot deadlock). A malformed answer, a missing or non-finite "reward", an early exit, or `timeout`
// seconds without an answer are errors that quote the offending line.
#pragma once
#include <sys/types.h>

#include <nlohmann/json.hpp>
#include <string>
#include <vector>

namespace multiref {

class RewardProgram {
 public:
  // Starts `command`. `timeout_s`: the longest wait for any one answer.
  RewardProgram(std::string command, double timeout_s);
  // Closes the program's stdin (its cue to exit), waits up to a second, then kills it.
  ~RewardProgram();
  RewardProgram(const RewardProgram&) = delete;
  RewardProgram& operator=(const RewardProgram&) = delete;

  // One reward per request, in order.
  std::vector<double> score(const std::vector<nlohmann::json>& requests);

  const std::string& command() const { return command_; }

 private:
  [[noreturn]] void fail_with(const std::string& what, const std::string& line);
  std::string command_;
  double timeout_s_;
  pid_t pid_ = -1;
  int to_child_ = -1, from_child_ = -1;
  std::string pending_;  // bytes read after the last complete answer line
};

// The reward of one answer line, or an error naming the program and quoting the line.
double parse_reward_answer(const std::string& line, const std::string& command);

}  // namespace multiref
