#include "train/train_checkpoint.h"

#include <csignal>
#include <filesystem>

#include "io/hf_model.h"
#include "util/common.h"
#include "util/fault.h"
#include "util/json_text.h"

namespace fs = std::filesystem;

namespace multiref {

namespace {
std::atomic<bool> g_stop{false};
void on_signal(int sig) {
  if (g_stop.exchange(true)) {  // second signal: default behaviour
    std::signal(sig, SIG_DFL);
    std::raise(sig);
  }
}

}  // namespace

std::vector<std::pair<int64_t, std::string>> list_checkpoints(const std::string& model_out) {
  std::vector<std::pair<int64_t, std::string>> out;
  if (!dir_exists(model_out)) return out;
  for (auto& e : fs::directory_iterator(model_out)) {
    std::string n = e.path().filename().string();
    // Exactly checkpoint-<digits>: a copy moved aside during a commit (checkpoint-N.old-*) is not a checkpoint.
    if (!e.is_directory() || n.rfind("checkpoint-", 0) != 0 || n.size() == 11 ||
        n.find_first_not_of("0123456789", 11) != std::string::npos)
      continue;
    out.emplace_back(std::stoll(n.substr(11)), e.path().string());
  }
  std::sort(out.begin(), out.end());
  return out;
}

int sweep_unfinished_saves(const std::string& model_out) {
  if (!dir_exists(model_out)) return 0;
  std::vector<std::string> doomed;
  for (auto& e : fs::directory_iterator(model_out)) {
    std::string n = e.path().filename().string();
    bool staged = n[0] == '.' && n.find(".tmp-") != std::string::npos;  // StagedDir, write_file_atomic
    bool deleting = n[0] == '.' && n.size() > 9 && n.compare(n.size() - 9, 9, ".deleting") == 0;  // pruning
    bool aside = n.rfind("checkpoint-", 0) == 0 && n.find(".old-") != std::string::npos;  // a re-save's old copy
    if (staged || deleting || aside) doomed.push_back(e.path().string());
  }
  for (auto& d : doomed) remove_all(d);
  return (int)doomed.size();
}

void install_stop_handlers() {
  std::signal(SIGINT, on_signal);
  std::signal(SIGTERM, on_signal);
}

bool stop_requested() {
  return g_stop.load();
}

void save_checkpoint(const std::string& model_out, int64_t step, Transformer& policy, const std::string& tokenizer_src,
                     const AdamW& opt, const nlohmann::json& trainer_state, const nlohmann::json& run_config,
                     int save_total_limit) {
  std::string dir = join_path(model_out, "checkpoint-" + std::to_string(step));
  StagedDir staged(dir);
  write_model_files(policy, staged.path(), tokenizer_src);
  fault_point("checkpoint");
  opt.save(staged.file("optimizer.safetensors"));
  fault_point("checkpoint");
  write_file_atomic(staged.file("trainer_state.json"), trainer_state.dump(2) + "\n");
  write_file_atomic(staged.file("run_config.json"), run_config.dump(2) + "\n");
  fault_point("checkpoint");
  staged.commit();
  fault_point("checkpoint");
  if (save_total_limit > 0) {
    auto all = list_checkpoints(model_out);
    for (size_t i = 0; i + (size_t)save_total_limit < all.size(); ++i) {
      // Out of sight first (one rename), then deleted: a kill during the deletion leaves a hidden directory, never
      // a checkpoint-N missing half its files that a resume or a user could pick.
      std::string doomed = join_path(model_out, "." + fs::path(all[i].second).filename().string() + ".deleting");
      remove_all(doomed);  // a leftover of an earlier kill
      std::error_code ec;
      fs::rename(all[i].second, doomed, ec);
      fault_point("checkpoint_prune");
      remove_all(ec ? all[i].second : doomed);
    }
  }
}

std::string resolve_checkpoint(const std::string& spec, const std::string& model_out) {
  if (spec == "latest") {
    auto all = list_checkpoints(model_out);
    if (all.empty()) fail("--resume_from_checkpoint latest: no checkpoint-N directory under ", model_out);
    return all.back().second;
  }
  if (!file_exists(join_path(spec, "trainer_state.json")))
    fail("--resume_from_checkpoint ", spec,
         ": not a checkpoint (no trainer_state.json); pass model_out/checkpoint-N or 'latest'");
  return spec;
}

nlohmann::json load_checkpoint(const std::string& dir, Transformer& policy, AdamW& opt) {
  load_weights(policy, dir);
  opt.load(join_path(dir, "optimizer.safetensors"));
  auto path = join_path(dir, "trainer_state.json");
  return parse_json(read_file(path), path);
}

void write_final_model(Transformer& policy, const std::string& output_dir, const std::string& tokenizer_src) {
  StagedDir staged(join_path(output_dir, ".final"));
  write_model_files(policy, staged.path(), tokenizer_src);
  fault_point("final_model");
  // The files move into output_dir one rename at a time, in an order that never shows a loadable mix: first the
  // old weights go (from then on output_dir holds no model a loader would take), then every other file, and the
  // new weights last. A kill in between leaves either the old model, no weights, or the whole new model.
  auto is_weights = [](const std::string& name) {
    return name == "model.safetensors" || name == "model.safetensors.index.json" ||
           (name.rfind("model-", 0) == 0 && name.size() > 12 &&
            name.compare(name.size() - 12, 12, ".safetensors") == 0);
  };
  for (auto& f : fs::directory_iterator(output_dir))
    if (f.is_regular_file() && is_weights(f.path().filename().string())) {
      fs::remove(f.path());
      fault_point("final_model");
    }
  std::vector<std::string> names;
  for (auto& f : fs::directory_iterator(staged.path())) names.push_back(f.path().filename().string());
  auto rank = [&](const std::string& n) { return !is_weights(n) ? 0 : n == "model.safetensors.index.json" ? 2 : 1; };
  std::stable_sort(names.begin(), names.end(), [&](auto& a, auto& b) { return rank(a) < rank(b); });
  for (auto& n : names) {
    fs::rename(join_path(staged.path(), n), join_path(output_dir, n));
    fault_point("final_model");
  }
  fsync_path(output_dir);
}

}  // namespace multiref
