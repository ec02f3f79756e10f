// multiref_fuzz: a deterministic mutation fuzzer over every input multiref reads — safetensors, config.json, the
// tokenizer files, the JSONL inputs of score / tokenize / generate / reward, theory problems, preference and GSM8K
// data, and the flags of every command.
//
// Each execution mutates one valid seed (tests/fuzz/mutator.h), then runs the real entry point (cmd_score(), the
// loaders, parse_config(), ...) in a forked child with an alarm and an address-space cap, so one input cannot take
// the driver down. Findings:
//   crash   the child died of a signal (segfault, abort from an uncaught exception, ...);
//   hang    it outlived --timeout seconds;
//   memory  it grew by more than --max_rss_mb, or failed to allocate (bad_alloc, torch's "can't allocate");
//   message it failed without an "error:" line, or with a line longer than 2,000 bytes (an echoed input);
//   output  it failed yet left its --output file behind (output is written only when everything succeeded);
//   status  an exit status other than 0 (success), 1 or 2 (a reported error).
// Each finding is saved under --findings (the input, the command, its stderr) and the driver exits 1.
//
//   multiref_fuzz --execs 3000              # what CI runs (ctest: fuzz_smoke), about two minutes
//   multiref_fuzz --seconds 3600 --seed 7   # longer, on demand; --target score_input to aim at one target
// Everything is reproducible from (--seed, execution number): a finding names both.
#include <fcntl.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iostream>
#include <map>

#include "cli/commands.h"
#include "data/gsm8k.h"
#include "data/preference_data.h"
#include "data/prompt_data.h"
#include "fuzz/mutator.h"
#include "rl/dpo_config.h"
#include "rl/grpo_config.h"
#include "util/common.h"
#include "util/flags.h"

namespace fs = std::filesystem;
using namespace multiref;
using namespace multiref::fuzz;

namespace {

struct Options {
  int64_t execs = 3000;
  double seconds = 0;  // > 0: run until this much time has passed instead of counting executions
  int64_t seed = 1;
  std::string target;  // only this one (empty: all, round robin)
  std::string work;    // scratch directory (default: a fresh one under the temp directory)
  std::string findings = "fuzz-findings";
  int timeout = 20;
  int64_t max_rss_mb = 1024;
  bool verbose = false;
};

// The entry point a child runs: multiref's own subcommands by name, plus the loaders and config parsers the
// trainers call before anything heavy ("load-preferences", "load-prompts", "grpo-flags", "dpo-flags").
int run_entry(std::vector<std::string> args) {
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  int argc = (int)args.size();
  const std::string& cmd = args.at(1);
  return run_main(("multiref " + cmd).c_str(), [&]() -> int {
    if (cmd == "init") return cmd_init(argc, argv.data());
    if (cmd == "train-tokenizer") return cmd_train_tokenizer(argc, argv.data());
    if (cmd == "score") return cmd_score(argc, argv.data());
    if (cmd == "generate") return cmd_generate(argc, argv.data());
    if (cmd == "reward") return cmd_reward(argc, argv.data());
    if (cmd == "tokenize") return cmd_tokenize(argc, argv.data());
    if (cmd == "theory") return cmd_theory(argc, argv.data());
    if (cmd == "grpo-flags") {
      GrpoConfig cfg;
      FlagTable t("gsm8k_grpo", "");
      parse_config(t, cfg, argc, argv.data(), 2);
      return 0;
    }
    if (cmd == "dpo-flags") {
      DpoConfig cfg;
      FlagTable t("dpo_training", "");
      parse_config(t, cfg, argc, argv.data(), 2);
      return 0;
    }
    if (cmd == "load-preferences") {
      load_preferences({args.at(2)});
      return 0;
    }
    if (cmd == "load-prompts") {
      load_gsm8k(args.at(2), "", "train");
      load_prompt_rows(args.at(2), "train");
      return 0;
    }
    fail("fuzz driver: unknown entry ", cmd);
  });
}

int64_t status_kb(const char* key) {
  std::ifstream in("/proc/self/status");
  for (std::string line; std::getline(in, line);)
    if (line.rfind(key, 0) == 0) return std::stoll(line.substr(std::string(key).size()));
  return 0;
}

struct Outcome {
  bool signaled = false;
  int sig = 0, code = 0;
  int64_t maxrss_kb = 0;
  std::string err;
};

// Runs `args` in a forked child: stdout to /dev/null, stderr to `err_path`, alarm `timeout`, address space capped.
Outcome run_child(const std::vector<std::string>& args, const std::string& err_path, int timeout, int64_t as_cap) {
  pid_t pid = fork();
  if (pid < 0) fail("fork: ", std::strerror(errno));
  if (pid == 0) {
    int out = open("/dev/null", O_WRONLY), err = open(err_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    dup2(out, 1);
    dup2(err, 2);
    rlimit as{(rlim_t)as_cap, (rlim_t)as_cap};
    setrlimit(RLIMIT_AS, &as);
    alarm((unsigned)timeout);
    int rc = run_entry(args);
    std::cout.flush();
    std::cerr.flush();
    fflush(nullptr);
    _exit(rc);
  }
  int status = 0;
  rusage ru{};
  while (wait4(pid, &status, 0, &ru) < 0 && errno == EINTR) {
  }
  Outcome o;
  o.signaled = WIFSIGNALED(status);
  o.sig = o.signaled ? WTERMSIG(status) : 0;
  o.code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  o.maxrss_kb = ru.ru_maxrss;
  o.err = file_exists(err_path) ? read_file(err_path) : "";
  return o;
}

// One fuzz target: a seed file, where its mutant goes, and the command line that reads it.
struct Target {
  std::string name;
  std::string seed_file;     // the valid input that is mutated ("" for flag targets: the arguments are)
  std::string place_as;      // the mutant's file name in the execution's directory
  std::string link_dir;      // every other file of this directory is symlinked next to the mutant (a model dir)
  size_t binary_header = 0;  // > 0: a safetensors file; edits mostly land in its first bytes
  // The command line, given the execution's directory: args[1] names the entry (see run_entry).
  std::function<std::vector<std::string>(const std::string& dir)> args;
  bool mutate_args = false;  // flag targets: the arguments are mutated instead of a file
  std::string output;        // the --output file name in dir, if the command writes one
};

void write(const std::string& path, const std::string& text) {
  std::ofstream f(path, std::ios::binary);
  f << text;
  if (!f) fail("cannot write ", path);
}

// The seeds: a small BPE tokenizer, a tiny causal LM and a tiny reward model made with multiref itself (in children:
// the driver never runs LibTorch, so forking stays safe), inputs for every command, and the repository's data
// fixtures.
std::vector<Target> make_targets(const std::string& S) {
  std::string fixtures = std::string(MULTIREF_SOURCE_DIR) + "/tests/fixtures";
  make_dirs(S);
  {
    std::ifstream in(fixtures + "/gsm8k/train.jsonl");
    std::string corpus, line, gsm;
    for (int i = 0; i < 120 && std::getline(in, line); ++i) {
      auto j = nlohmann::json::parse(line);
      corpus += j["question"].get<std::string>() + "\n" + j["answer"].get<std::string>() + "\n";
      if (i < 6) gsm += line + "\n";
    }
    write(S + "/corpus.txt", corpus);
    write(S + "/gsm8k.jsonl", gsm);
  }
  {
    std::ifstream in(fixtures + "/ultrafeedback/sample.jsonl");
    std::string line, pref;
    for (int i = 0; i < 3 && std::getline(in, line); ++i) pref += line + "\n";
    write(S + "/prefs.jsonl", pref);
  }
  auto setup = [&](std::vector<std::string> a) {
    a.insert(a.begin(), "multiref");
    auto o = run_child(a, S + "/setup.err", 600, (int64_t)1 << 40);
    if (o.signaled || o.code != 0) fail("fuzz setup failed: ", a[1], " ", read_file(S + "/setup.err"));
  };
  setup({"train-tokenizer", "--input", S + "/corpus.txt", "--vocab_size", "400", "--special_tokens",
         "<|endoftext|>,<|im_start|>,<|im_end|>", "--output", S + "/tok"});
  setup({"init", "--arch", "qwen2", "--preset", "tiny", "--seed", "1", "--tokenizer", S + "/tok", "--output_dir",
         S + "/model"});
  setup({"init", "--arch", "qwen2", "--preset", "tiny", "--seed", "2", "--head", "seq_cls", "--tokenizer", S + "/tok",
         "--output_dir", S + "/rm"});
  // The same BPE as vocab.json + merges.txt (the Qwen2 / GPT-2 layout), with its tokenizer_config.json.
  {
    auto tj = nlohmann::json::parse(read_file(S + "/tok/tokenizer.json"));
    make_dirs(S + "/vm");
    write(S + "/vm/vocab.json", tj["model"]["vocab"].dump());
    std::string merges = "#version: 0.2\n";
    for (auto& m : tj["model"]["merges"])
      merges += (m.is_string() ? m.get<std::string>() : m[0].get<std::string>() + " " + m[1].get<std::string>()) + "\n";
    write(S + "/vm/merges.txt", merges);
    auto cfg = nlohmann::json::parse(read_file(S + "/tok/tokenizer_config.json"));
    cfg["tokenizer_class"] = "Qwen2Tokenizer";
    nlohmann::json added = nlohmann::json::object();
    for (auto& a : tj["added_tokens"])
      added[std::to_string(a["id"].get<int64_t>())] = {{"content", a["content"]}, {"special", true}};
    cfg["added_tokens_decoder"] = added;
    write(S + "/vm/tokenizer_config.json", cfg.dump(2));
  }
  // A chat template, so that {"messages"} lines and tokenizer_config.json's template are exercised.
  {
    auto cfg = nlohmann::json::parse(read_file(S + "/tok/tokenizer_config.json"));
    cfg["chat_template"] =
        nlohmann::json::parse(read_file(fixtures + "/tokenizers/qwen2.5/tokenizer_config.json"))["chat_template"];
    cfg["eos_token"] = "<|im_end|>";
    make_dirs(S + "/chat");
    fs::copy_file(S + "/tok/tokenizer.json", S + "/chat/tokenizer.json");
    write(S + "/chat/tokenizer_config.json", cfg.dump(2));
  }
  write(S + "/score.jsonl", "{\"input_ids\": [1, 2, 3, 4, 5]}\n{\"input_ids\": [7, 8, 9], \"completion_start\": 1}\n");
  write(S + "/tokenize.jsonl",
        "{\"text\": \"Natalia sold 48 clips.\"}\n{\"messages\": [{\"role\": \"user\", \"content\": \"How many?\"}, "
        "{\"role\": \"assistant\", \"content\": \"72\"}]}\n");
  write(S + "/decode.jsonl", "{\"ids\": [10, 20, 30, 40]}\n{\"ids\": []}\n");
  write(S + "/generate.jsonl",
        "{\"prompt\": \"Natalia sold\"}\n{\"prompt_ids\": [5, 6, 7]}\n{\"messages\": [{\"role\": \"user\", "
        "\"content\": \"Add 2 and 3.\"}]}\n");
  write(S + "/reward.jsonl",
        "{\"input_ids\": [3, 4, 5, 6]}\n{\"messages\": [{\"role\": \"user\", \"content\": \"Hi\"}, "
        "{\"role\": \"assistant\", \"content\": \"Hello\"}]}\n");
  write(S + "/theory.json",
        "{\"kl_type\":\"rkl\",\"gamma\":0.5,\"weights\":[0.5,0.5],\"refs\":[[0.5,0.3,0.2,0.0],[0.1,0.2,0.3,0.4]],"
        "\"rewards\":[1.0,0.0,2.0,3.0]}\n");

  std::string model = S + "/model", rm = S + "/rm";
  auto mr = [](std::vector<std::string> a) {
    a.insert(a.begin(), "multiref");
    return a;
  };
  std::vector<Target> t;
  auto score_with = [=](const std::string& m) {
    return mr({"score", "--model", m, "--input", S + "/score.jsonl", "--output", "", "--threads", "1"});
  };
  auto with_out = [](std::vector<std::string> a, const std::string& dir) {
    for (size_t i = 0; i + 1 < a.size(); ++i)
      if (a[i] == "--output" && a[i + 1].empty()) a[i + 1] = dir + "/out.jsonl";
    return a;
  };
  t.push_back({"model_config", model + "/config.json", "config.json", model, 0,
               [=](const std::string& d) { return with_out(score_with(d), d); }, false, "out.jsonl"});
  t.push_back({"safetensors", model + "/model.safetensors", "model.safetensors", model, 4096,
               [=](const std::string& d) { return with_out(score_with(d), d); }, false, "out.jsonl"});
  auto tokenize = [=](const std::string& tok, const std::string& input, const std::string& d, bool decode) {
    auto a = mr({"tokenize", "--tokenizer", tok, "--input", input, "--output", d + "/out.jsonl", "--threads", "1"});
    if (decode) a.push_back("--decode");
    return a;
  };
  t.push_back({"tokenizer_json", S + "/chat/tokenizer.json", "tokenizer.json", S + "/chat", 0,
               [=](const std::string& d) { return tokenize(d, S + "/tokenize.jsonl", d, false); }, false, "out.jsonl"});
  t.push_back({"tokenizer_config", S + "/chat/tokenizer_config.json", "tokenizer_config.json", S + "/chat", 0,
               [=](const std::string& d) { return tokenize(d, S + "/tokenize.jsonl", d, false); }, false, "out.jsonl"});
  t.push_back({"vocab_json", S + "/vm/vocab.json", "vocab.json", S + "/vm", 0,
               [=](const std::string& d) { return tokenize(d, S + "/decode.jsonl", d, true); }, false, "out.jsonl"});
  t.push_back({"merges_txt", S + "/vm/merges.txt", "merges.txt", S + "/vm", 0,
               [=](const std::string& d) { return tokenize(d, S + "/tokenize.jsonl", d, false); }, false, "out.jsonl"});
  t.push_back({"score_input", S + "/score.jsonl", "in.jsonl", "", 0,
               [=](const std::string& d) {
                 return mr({"score", "--model", model, "--ref", S + "/model", "--input", d + "/in.jsonl", "--output",
                            d + "/out.jsonl", "--threads", "1"});
               },
               false, "out.jsonl"});
  t.push_back({"tokenize_input", S + "/tokenize.jsonl", "in.jsonl", "", 0,
               [=](const std::string& d) { return tokenize(S + "/chat", d + "/in.jsonl", d, false); }, false,
               "out.jsonl"});
  t.push_back({"decode_input", S + "/decode.jsonl", "in.jsonl", "", 0,
               [=](const std::string& d) { return tokenize(S + "/chat", d + "/in.jsonl", d, true); }, false,
               "out.jsonl"});
  t.push_back({"generate_input", S + "/generate.jsonl", "in.jsonl", "", 0,
               [=](const std::string& d) {
                 return mr({"generate", "--model", model, "--tokenizer", S + "/chat", "--input", d + "/in.jsonl",
                            "--output", d + "/out.jsonl", "--max_new_tokens", "4", "--threads", "1"});
               },
               false, "out.jsonl"});
  t.push_back({"reward_input", S + "/reward.jsonl", "in.jsonl", "", 0,
               [=](const std::string& d) {
                 return mr({"reward", "--model", rm, "--chat_template", "chatml", "--input", d + "/in.jsonl",
                            "--output", d + "/out.jsonl", "--threads", "1"});
               },
               false, "out.jsonl"});
  t.push_back({"theory_problem", S + "/theory.json", "in.json", "", 0,
               [=](const std::string& d) {
                 return mr({"theory", "--input", d + "/in.json", "--output", d + "/out.json"});
               },
               false, "out.json"});
  t.push_back({"preference_data", S + "/prefs.jsonl", "in.jsonl", "", 0,
               [=](const std::string& d) {
                 return mr({"load-preferences", d + "/in.jsonl"});
               },
               false, ""});
  t.push_back({"gsm8k_data", S + "/gsm8k.jsonl", "in.jsonl", "", 0,
               [=](const std::string& d) {
                 return mr({"load-prompts", d + "/in.jsonl"});
               },
               false, ""});
  // Flags: the seed's own command lines (references pointing at the tiny model), and the small commands.
  t.push_back({"grpo_flags", "", "", "", 0,
               [=](const std::string&) {
                 return mr({"grpo-flags",  "--dataset",
                            "gsm8k",       "--ref_a",
                            model,         "--ref_b",
                            model,         "--alpha",
                            "0.5",         "--beta",
                            "0.5",         "--kl_type",
                            "rkl",         "--gamma",
                            "0.1",         "--model_out",
                            S + "/runs/g", "--per_device_train_batch_size",
                            "4",           "--gradient_accumulation_steps",
                            "8",           "--max_steps",
                            "2000",        "--bf16"});
               },
               true, ""});
  t.push_back({"dpo_flags", "", "", "", 0,
               [=](const std::string&) {
                 return mr({"dpo-flags",
                            "--dataset",
                            "ultrafeedback",
                            "--ref_a",
                            model,
                            "--ref_b",
                            model,
                            "--kl_type",
                            "rkl",
                            "--alpha",
                            "0.5",
                            "--beta",
                            "0.5",
                            "--gamma",
                            "1.0",
                            "--output_dir",
                            S + "/runs/d",
                            "--per_device_train_batch_size",
                            "2",
                            "--gradient_accumulation_steps",
                            "16",
                            "--num_train_epochs",
                            "1",
                            "--bf16"});
               },
               true, ""});
  t.push_back({"tokenize_flags", "", "", "", 0,
               [=](const std::string& d) { return tokenize(S + "/chat", S + "/tokenize.jsonl", d, false); }, true,
               "out.jsonl"});
  t.push_back({"theory_flags", "", "", "", 0,
               [=](const std::string& d) {
                 return mr({"theory", "--input", S + "/theory.json", "--output", d + "/out.json", "--bounds", "--n",
                            "1000", "--delta", "0.05", "--epsilon", "0.1"});
               },
               true, "out.json"});
  return t;
}

// The execution's directory: the input as tg.place_as, and for a model directory its other files as symlinks.
void place_input(const Target& tg, const std::string& X, const std::string& text) {
  if (!tg.link_dir.empty())
    for (auto& e : fs::directory_iterator(tg.link_dir))
      if (e.path().filename() != tg.place_as) fs::create_symlink(e.path(), X + "/" + e.path().filename().string());
  write(X + "/" + tg.place_as, text);
}

std::string describe(const std::vector<std::string>& a) {
  std::string s;
  for (auto& x : a) s += (s.empty() ? "" : " ") + (x.size() > 200 ? x.substr(0, 200) + "…" : x);
  return s;
}

// What is wrong with an outcome, or "" if nothing.
std::string judge(const Outcome& o, const Options& opt, int64_t base_rss_kb, bool output_left) {
  if (o.signaled) return o.sig == SIGALRM ? "hang" : std::string("crash (signal ") + strsignal(o.sig) + ")";
  if (o.maxrss_kb - base_rss_kb > opt.max_rss_mb * 1024)
    return "memory (" + std::to_string(o.maxrss_kb / 1024) + " MiB)";
  for (const char* m : {"bad_alloc", "can't allocate memory", "not enough memory"})
    if (o.err.find(m) != std::string::npos) return std::string("memory (") + m + ")";
  if (o.code != 0 && o.code != 1 && o.code != 2) return "status " + std::to_string(o.code);
  if (o.code != 0) {
    if (o.err.find("error:") == std::string::npos) return "message (no error line)";
    if (output_left) return "output (left behind by a failed run)";
  }
  size_t start = 0;
  while (start < o.err.size()) {
    size_t end = o.err.find('\n', start);
    if (end == std::string::npos) end = o.err.size();
    if (end - start > 2000) return "message (a line of " + std::to_string(end - start) + " bytes)";
    start = end + 1;
  }
  return "";
}

}  // namespace

int main(int argc, char** argv) {
  signal(SIGPIPE, SIG_IGN);
  Options opt;
  FlagTable flags("multiref_fuzz", "Deterministic mutation fuzzing of every input multiref reads (tests/fuzz/).");
  flags.add("execs", &opt.execs, "executions in all (ignored with --seconds)");
  flags.add("seconds", &opt.seconds, "run for this long instead (0 = count --execs)");
  flags.add("seed", &opt.seed, "seed of the mutations: (seed, execution number) reproduces any input");
  flags.add("target", &opt.target, "fuzz only this target (default: all, round robin)");
  flags.add("work", &opt.work, "scratch directory (default: a fresh one in the temp directory, removed after)");
  flags.add("findings", &opt.findings, "where each finding's input, command and stderr are saved");
  flags.add("timeout", &opt.timeout, "seconds one execution may take before it counts as a hang");
  flags.add("max_rss_mb", &opt.max_rss_mb, "growth of resident memory one execution may reach");
  flags.add("verbose", &opt.verbose, "print every execution");
  return run_main("multiref_fuzz", [&]() -> int {
    flags.parse(argc, argv, 1);
    if (flags.help_requested()) {
      std::cout << flags.help();
      return 0;
    }
    bool own_work = opt.work.empty();
    if (own_work) opt.work = (fs::temp_directory_path() / ("multiref-fuzz-" + std::to_string(getpid()))).string();
    remove_all(opt.work);
    make_dirs(opt.work);
    std::string S = opt.work + "/seeds", X = opt.work + "/exec";
    double t0 = now_seconds();
    auto targets = make_targets(S);
    if (!opt.target.empty()) {
      std::vector<Target> keep;
      for (auto& t : targets)
        if (t.name == opt.target) keep.push_back(t);
      if (keep.empty()) {
        std::string names;
        for (auto& t : targets) names += " " + t.name;
        fail("--target ", opt.target, ": no such target; targets:", names);
      }
      targets = keep;
    }
    // Every seed must pass as it is: a target whose seed is rejected only fuzzes its first error check.
    for (auto& tg : targets) {
      remove_all(X);
      make_dirs(X);
      if (!tg.mutate_args) place_input(tg, X, read_file(tg.seed_file));
      Outcome o = run_child(tg.args(X), opt.work + "/stderr.txt", 600, (int64_t)1 << 40);
      if (o.signaled || o.code != 0) fail("fuzz target ", tg.name, ": its seed fails unmutated: ", o.err);
    }
    std::cout << "fuzz: " << targets.size() << " targets, seeds ready in " << (int)(now_seconds() - t0) << " s\n";
    int64_t base_rss = status_kb("VmRSS:"), cap = (status_kb("VmSize:") << 10) + ((int64_t)4 << 30);
    std::map<std::string, std::array<int64_t, 3>> per;  // target -> {executions, rejected, findings}
    int64_t findings = 0, n = 0;
    double start = now_seconds(), last_report = start;
    for (;; ++n) {
      if (opt.seconds > 0 ? now_seconds() - start >= opt.seconds : n >= opt.execs) break;
      const Target& tg = targets[(size_t)n % targets.size()];
      Rng rng(stream_seed((uint64_t)opt.seed, n, 0x46757a7a));
      remove_all(X);
      make_dirs(X);
      std::vector<std::string> args = tg.args(X);
      std::string input_desc;
      if (tg.mutate_args) {
        std::vector<std::string> tail(args.begin() + 2, args.end());
        tail = mutate_args(tail, rng);
        args.resize(2);
        args.insert(args.end(), tail.begin(), tail.end());
      } else {
        place_input(tg, X, mutate(read_file(tg.seed_file), rng, tg.binary_header));
      }
      Outcome o = run_child(args, opt.work + "/stderr.txt", opt.timeout, cap);
      bool output_left = !tg.output.empty() && fs::exists(X + "/" + tg.output);
      std::string verdict = judge(o, opt, base_rss, output_left);
      auto& p = per[tg.name];
      p[0]++;
      p[1] += o.code != 0;
      if (opt.verbose)
        std::cout << n << " " << tg.name << " rc=" << o.code << " "
                  << (o.err.size() > 300 ? o.err.substr(0, 300) : o.err) << (o.err.empty() ? "\n" : "");
      if (!verdict.empty()) {
        p[2]++;
        ++findings;
        std::string dir =
            opt.findings + "/" + tg.name + "-seed" + std::to_string(opt.seed) + "-exec" + std::to_string(n);
        make_dirs(dir);
        if (!tg.mutate_args)
          fs::copy_file(X + "/" + tg.place_as, dir + "/" + tg.place_as, fs::copy_options::overwrite_existing);
        write(dir + "/command.txt", describe(args) + "\n");
        write(dir + "/stderr.txt", o.err);
        std::cout << "FINDING " << verdict << ": target " << tg.name << ", --seed " << opt.seed << " execution " << n
                  << " (saved in " << dir << ")\n  " << (o.err.size() > 400 ? o.err.substr(0, 400) : o.err) << "\n";
      }
      if (now_seconds() - last_report > 10) {
        last_report = now_seconds();
        std::cout << "fuzz: " << n + 1 << " executions, " << findings << " findings, "
                  << (int)((n + 1) / (last_report - start)) << " exec/s\n";
        std::cout.flush();
      }
    }
    std::cout << "fuzz: " << n << " executions in " << (int)(now_seconds() - start) << " s, " << findings
              << " findings\n";
    for (auto& [name, p] : per)
      std::cout << "  " << name << ": " << p[0] << " executions, " << p[1] << " rejected, " << p[2] << " findings\n";
    if (own_work) remove_all(opt.work);
    return findings == 0 ? 0 : 1;
  });
}
