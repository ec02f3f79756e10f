// One table of command-line flags per command: it parses `--flag value` and `--flag=value`, rejects
// unknown flags, prints `--help` with every default, and dumps the resolved values as JSON.
// Config structs own the values; the table holds pointers to their fields.
#pragma once
#include <functional>
#include <iostream>
#include <nlohmann/json.hpp>
#include <string>
#include <utility>
#include <vector>

#include "util/common.h"

namespace multiref {

class FlagTable {
 public:
  FlagTable(std::string program, std::string summary) : program_(std::move(program)), summary_(std::move(summary)) {}

  void add(const std::string& name, std::string* v, const std::string& help);
  void add(const std::string& name, int* v, const std::string& help);
  void add(const std::string& name, int64_t* v, const std::string& help);
  void add(const std::string& name, double* v, const std::string& help);
  // A bool flag is set by `--name` alone, or `--name=true|false` / `--name true|false`.
  void add(const std::string& name, bool* v, const std::string& help);
  // `--name a,b,c` (comma-separated); given twice, the lists are concatenated.
  void add(const std::string& name, std::vector<std::string>* v, const std::string& help);
  void add(const std::string& name, std::vector<double>* v, const std::string& help);

  // An enum class flag: `choices` maps each accepted spelling to its value.
  template <typename E>
  void add_enum(const std::string& name, E* v, std::vector<std::pair<std::string, E>> choices,
                const std::string& help) {
    std::string def, list;
    for (auto& c : choices) {
      if (c.second == *v && def.empty()) def = c.first;
      list += (list.empty() ? "" : "|") + c.first;
    }
    Flag f{name, "{" + list + "}", def, help, false, nullptr, nullptr};
    f.set = [v, choices, name, list](const std::string& s) {
      for (auto& c : choices)
        if (c.first == s) {
          *v = c.second;
          return;
        }
      fail("--", name, ": '", s, "' is not one of ", list);
    };
    f.get = [v, choices]() -> nlohmann::json {
      for (auto& c : choices)
        if (c.second == *v) return c.first;
      return nullptr;
    };
    flags_.push_back(std::move(f));
  }

  // Parses argv[start..]; returns positional arguments. Throws Error on unknown or malformed flags.
  // Sets help_requested() instead of parsing further when --help/-h is seen.
  std::vector<std::string> parse(int argc, char** argv, int start = 1);
  std::vector<std::string> parse(const std::vector<std::string>& args);
  bool help_requested() const { return help_; }
  bool was_set(const std::string& name) const;

  std::string help() const;
  nlohmann::json to_json() const;

 private:
  struct Flag {
    std::string name, type, def, help;
    bool is_bool;
    std::function<void(const std::string&)> set;
    std::function<nlohmann::json()> get;
    bool seen = false;
  };
  Flag* find(const std::string& name);
  std::string program_, summary_;
  std::vector<Flag> flags_;
  bool help_ = false;
};

// The opening of every command: registers cfg's flags, parses argv[first..], then either prints --help and
// returns false (the command exits 0), or runs cfg.validate() and returns true.
template <typename Config>
bool parse_config(FlagTable& t, Config& cfg, int argc, char** argv, int first) {
  cfg.register_flags(t);
  t.parse(argc, argv, first);
  if (t.help_requested()) {
    std::cout << t.help();
    return false;
  }
  cfg.validate();
  return true;
}

// Strict numeric parsing used by the flag table and JSON readers: the whole string must be a number.
int64_t parse_int(const std::string& s, const std::string& what);
double parse_double(const std::string& s, const std::string& what);
bool parse_bool(const std::string& s, const std::string& what);

// Runs a command's body `fn`, printing an Error (or any exception) as "<program>: error: ..." and returning 2.
int run_main(const char* program, const std::function<int()>& fn);

}  // namespace multiref
