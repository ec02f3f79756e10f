#include <fstream>

#include "io/hub.h"
#include "test_util.h"

using namespace multiref;
using namespace multiref::testing;

namespace {
struct EnvGuard {
  std::vector<std::pair<std::string, std::optional<std::string>>> saved;
  void set(const std::string& k, const std::optional<std::string>& v) {
    const char* old = std::getenv(k.c_str());
    saved.emplace_back(k, old ? std::optional<std::string>(old) : std::nullopt);
    if (v)
      ::setenv(k.c_str(), v->c_str(), 1);
    else
      ::unsetenv(k.c_str());
  }
  ~EnvGuard() {
    for (auto it = saved.rbegin(); it != saved.rend(); ++it) {
      if (it->second)
        ::setenv(it->first.c_str(), it->second->c_str(), 1);
      else
        ::unsetenv(it->first.c_str());
    }
  }
};

void make_snapshot(const std::string& cache, const std::string& repo, const std::string& commit) {
  std::string snap = cache + "/" + repo + "/snapshots/" + commit;
  std::filesystem::create_directories(snap);
  std::ofstream(snap + "/config.json") << "{}";
}
}  // namespace

TEST(Hub, LocalDirectoryWins) {
  TempDir tmp;
  std::ofstream(tmp / "config.json") << "{}";
  EXPECT_EQ(resolve_model_dir(tmp.path), tmp.path);
  std::filesystem::create_directories(tmp / "empty");
  expect_error([&] { resolve_model_dir(tmp / "empty"); }, {"no config.json"});
}

TEST(Hub, ResolvesRefsMainSnapshot) {
  TempDir tmp;
  EnvGuard env;
  env.set("HF_HUB_CACHE", tmp / "hub");
  env.set("HF_HOME", std::nullopt);
  make_snapshot(tmp / "hub", "models--Qwen--Qwen2.5-0.5B-Instruct", "aaa111");
  make_snapshot(tmp / "hub", "models--Qwen--Qwen2.5-0.5B-Instruct", "bbb222");
  std::filesystem::create_directories(tmp / "hub/models--Qwen--Qwen2.5-0.5B-Instruct/refs");
  std::ofstream(tmp / "hub/models--Qwen--Qwen2.5-0.5B-Instruct/refs/main") << "bbb222";
  EXPECT_EQ(resolve_model_dir("Qwen/Qwen2.5-0.5B-Instruct"),
            tmp / "hub/models--Qwen--Qwen2.5-0.5B-Instruct/snapshots/bbb222");
}

TEST(Hub, HfHomeAndSingleSnapshot) {
  TempDir tmp;
  EnvGuard env;
  env.set("HF_HUB_CACHE", std::nullopt);
  env.set("HUGGINGFACE_HUB_CACHE", std::nullopt);
  env.set("HF_HOME", tmp / "hfhome");
  make_snapshot(tmp / "hfhome/hub", "models--Skywork--Reward-Llama-3.1-8B-v0.2", "c0ffee");
  EXPECT_EQ(resolve_model_dir("Skywork/Reward-Llama-3.1-8B-v0.2"),
            tmp / "hfhome/hub/models--Skywork--Reward-Llama-3.1-8B-v0.2/snapshots/c0ffee");
}

TEST(Hub, MissingModelListsWhereItLookedAndHowToFetch) {
  TempDir tmp;
  EnvGuard env;
  env.set("HF_HUB_CACHE", tmp / "hub");
  env.set("HF_HOME", tmp / "home");
  expect_error([&] { resolve_model_dir("Qwen/Qwen2.5-Math-1.5B"); },
               {"Qwen/Qwen2.5-Math-1.5B", tmp / "hub/models--Qwen--Qwen2.5-Math-1.5B",
                tmp / "home/hub/models--Qwen--Qwen2.5-Math-1.5B", "huggingface-cli download Qwen/Qwen2.5-Math-1.5B"});
}

TEST(Hub, BrokenRefIsExplained) {
  TempDir tmp;
  EnvGuard env;
  env.set("HF_HUB_CACHE", tmp / "hub");
  std::filesystem::create_directories(tmp / "hub/models--a--b/refs");
  std::ofstream(tmp / "hub/models--a--b/refs/main") << "deadbeef";
  expect_error([&] { resolve_model_dir("a/b"); }, {"refs/main", "deadbeef", "missing"});
}
