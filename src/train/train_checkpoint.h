// Trainer checkpoints shared by GRPO and DPO: model_out/checkpoint-N/ is a genuine HF model directory
// (config, generation_config, safetensors, tokenizer files) plus optimizer.safetensors, trainer_state.json and
// run_config.json. Written atomically (staged, fsynced, renamed); old ones rotated by save_total_limit.
// Every random stream of the trainers is derived from (seed, step), so step + data position are the whole
// RNG state: a resumed run draws exactly what the uninterrupted one would have.
#pragma once
#include <atomic>
#include <nlohmann/json.hpp>
#include <string>

#include "model/transformer.h"
#include "train/optimizer.h"

namespace multiref {

void save_checkpoint(const std::string& model_out, int64_t step, Transformer& policy, const std::string& tokenizer_src,
                     const AdamW& opt, const nlohmann::json& trainer_state, const nlohmann::json& run_config,
                     int save_total_limit);

// The final model into output_dir itself, next to the checkpoints and metrics: staged in a hidden directory, then
// moved in file by file so that output_dir never holds a loadable mix of two models (the old weights are removed
// first, the new weights arrive last).
void write_final_model(Transformer& policy, const std::string& output_dir, const std::string& tokenizer_src);

// (N, path) of every checkpoint-N directory under model_out, by N; empty when there is none.
std::vector<std::pair<int64_t, std::string>> list_checkpoints(const std::string& model_out);

// Removes what saves interrupted by a kill left in model_out: staging directories and temporary files
// (".name.tmp-*"), checkpoints caught mid-deletion (".checkpoint-N.deleting") and copies moved aside during a
// re-save ("checkpoint-N.old-*"). None of them is ever a checkpoint. Returns how many there were.
int sweep_unfinished_saves(const std::string& model_out);

// "latest" -> the highest checkpoint-N under model_out; a directory -> itself. Errors say what exists.
std::string resolve_checkpoint(const std::string& spec, const std::string& model_out);

// Loads the policy weights and optimizer state of a checkpoint; returns its trainer_state.json.
nlohmann::json load_checkpoint(const std::string& dir, Transformer& policy, AdamW& opt);

// SIGINT / SIGTERM set this flag (the first time; a second signal kills as usual) so the trainer can save a
// checkpoint and exit cleanly at the end of the current step.
void install_stop_handlers();
bool stop_requested();

}  // namespace multiref
