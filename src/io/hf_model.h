// Hugging Face model directories in and out: strict weight loading into a Transformer, atomic saving,
// and randomly initialized checkpoints from presets (`multiref init`).
#pragma once
#include <torch/torch.h>

#include <string>

#include "model/model_config.h"
#include "model/transformer.h"

namespace multiref {

struct LoadedModel {
  std::string dir;  // resolved local directory
  ModelConfig config;
  Transformer model{nullptr};
};

// Resolves `id` (directory or hub id), reads config.json, allocates the model in `dtype` on `device` and
// copies every tensor in. Missing, unexpected or mis-shaped tensors are errors naming the tensor and file.
LoadedModel load_model(const std::string& id, torch::ScalarType dtype, const torch::Device& device);

// Strict copy of checkpoint tensors into `model`'s parameters.
void load_weights(Transformer& model, const std::string& dir);

// HF key -> tensor, exactly the set a HF checkpoint holds (a tied lm_head is not saved, as in HF).
std::vector<std::pair<std::string, torch::Tensor>> state_dict(Transformer& model);

// Writes a complete HF directory atomically (staged, fsynced, renamed over `out_dir`): config.json with
// torch_dtype set to the weights' dtype, generation_config.json, model.safetensors, and the tokenizer files
// of `tokenizer_from` when given.
void save_model(Transformer& model, const std::string& out_dir, const std::string& tokenizer_from = "");
// The same into an already-staged directory (checkpoints add their own files before committing).
void write_model_files(Transformer& model, const std::string& dir, const std::string& tokenizer_from = "");

// Tokenizer files copied along with a model.
const std::vector<std::string>& tokenizer_file_names();

// HF's _init_weights: normal(0, initializer_range) for linear and embedding weights, zero biases, unit
// norms. Deterministic for a seed.
void init_weights(Transformer& model, uint64_t seed, double initializer_range = 0.02);

// Shapes for `multiref init --preset`: tiny / small (tests, demos) and the real Qwen2.5 shapes for
// benchmarks. Errors list the presets.
ModelConfig preset_config(const std::string& arch, const std::string& preset);

}  // namespace multiref
