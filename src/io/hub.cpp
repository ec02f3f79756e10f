#include "io/hub.h"

#include <cstdlib>
#include <filesystem>

#include "util/common.h"

namespace fs = std::filesystem;

namespace multiref {

std::vector<std::string> hub_cache_dirs() {
  std::vector<std::string> dirs;
  auto add = [&](const std::string& d) {
    if (!d.empty() && std::find(dirs.begin(), dirs.end(), d) == dirs.end()) dirs.push_back(d);
  };
  if (const char* v = std::getenv("HF_HUB_CACHE")) add(v);
  if (const char* v = std::getenv("HUGGINGFACE_HUB_CACHE")) add(v);
  if (const char* v = std::getenv("HF_HOME")) add(join_path(v, "hub"));
  if (const char* v = std::getenv("XDG_CACHE_HOME")) add(join_path(v, "huggingface/hub"));
  if (const char* v = std::getenv("HOME")) add(join_path(v, ".cache/huggingface/hub"));
  return dirs;
}

namespace {
bool has_any(const std::string& dir, const std::vector<std::string>& files) {
  for (auto& f : files)
    if (file_exists(join_path(dir, f))) return true;
  return false;
}
std::string names(const std::vector<std::string>& files) {
  std::string s;
  for (size_t i = 0; i < files.size(); ++i) s += (i ? (i + 1 == files.size() ? " or " : ", ") : "") + files[i];
  return s;
}
}  // namespace

static const std::vector<std::string>& tokenizer_markers() {
  static const std::vector<std::string> files = {"tokenizer.json", "vocab.json", "tokenizer.model"};
  return files;
}

std::string resolve_tokenizer_dir(const std::string& id) {
  return resolve_model_dir(id, tokenizer_markers());
}

bool has_tokenizer(const std::string& dir) {
  return dir_exists(dir) && has_any(dir, tokenizer_markers());
}

std::string resolve_model_dir(const std::string& id, const std::vector<std::string>& any_of) {
  if (id.empty()) fail("empty model id: pass a local directory or a hub id such as Qwen/Qwen2.5-0.5B-Instruct");
  if (dir_exists(id)) {
    if (!has_any(id, any_of))
      fail(id, ": directory has no ", names(any_of), " (is it a Hugging Face model directory?)");
    return id;
  }
  if (file_exists(id)) fail(id, ": is a file; pass the model's directory (the one holding config.json)");
  std::vector<std::string> looked;
  bool hub_like =
      id.find("..") == std::string::npos && id[0] != '/' && id[0] != '.' && std::count(id.begin(), id.end(), '/') <= 1;
  if (hub_like) {
    std::string repo = "models--" + id;
    for (size_t p; (p = repo.find('/')) != std::string::npos;) repo.replace(p, 1, "--");
    for (const auto& cache : hub_cache_dirs()) {
      std::string base = join_path(cache, repo);
      looked.push_back(base);
      if (!dir_exists(base)) continue;
      std::string snapshots = join_path(base, "snapshots");
      std::string ref = join_path(base, "refs/main");
      std::string snap;
      if (file_exists(ref)) {
        std::string commit = trim(read_file(ref));
        snap = join_path(snapshots, commit);
        if (!dir_exists(snap))
          fail(base, ": refs/main names snapshot ", commit, " which is missing (interrupted download?)");
      } else if (dir_exists(snapshots)) {
        std::vector<std::string> all;
        for (auto& e : fs::directory_iterator(snapshots))
          if (e.is_directory()) all.push_back(e.path().string());
        if (all.size() == 1) snap = all[0];
        if (all.size() > 1)
          fail(base, ": has ", all.size(), " snapshots and no refs/main; pass the snapshot directory you want");
      }
      if (snap.empty()) continue;
      if (!has_any(snap, any_of)) fail(snap, ": snapshot has no ", names(any_of), " (incomplete download?)");
      return snap;
    }
  }
  std::string where;
  for (auto& l : looked) where += "\n  " + l;
  fail("model '", id, "' not found: it is not a local directory",
       looked.empty() ? "" : ", nor in the Hugging Face cache at:", where, "\nfix: pass a directory that holds ",
       names(any_of),
       ", or download it on a machine with "
       "network access (`huggingface-cli download ",
       id, "`) and copy the cache here (set HF_HUB_CACHE or HF_HOME if it lives elsewhere)");
}

}  // namespace multiref
