// config.json -> ModelConfig for the architectures multiref runs: Qwen2 and Llama causal LMs and their
// sequence-classification (reward model) variants. Anything else is an error, never a silent fallback.
#pragma once
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

namespace multiref {

enum class ModelFamily { Qwen2, Llama };
enum class ModelHead { CausalLM, SequenceClassification };

struct RopeScaling {
  std::string rope_type;  // only "llama3" is supported
  double factor = 1.0, low_freq_factor = 1.0, high_freq_factor = 4.0;
  int64_t original_max_position_embeddings = 8192;
};

struct ModelConfig {
  std::string architecture;  // e.g. "Qwen2ForCausalLM"
  ModelFamily family = ModelFamily::Qwen2;
  ModelHead head = ModelHead::CausalLM;
  int64_t vocab_size = 0, hidden_size = 0, intermediate_size = 0, num_hidden_layers = 0;
  int64_t num_attention_heads = 0, num_key_value_heads = 0, head_dim = 0;
  int64_t max_position_embeddings = 0;
  double rms_norm_eps = 1e-6, rope_theta = 10000.0;
  std::optional<RopeScaling> rope_scaling;
  bool qkv_bias = false;  // Qwen2: always true; Llama: attention_bias
  bool o_bias = false;    // Llama: attention_bias; Qwen2: never
  bool mlp_bias = false;
  bool tie_word_embeddings = false;
  std::string torch_dtype = "float32";
  std::optional<int64_t> bos_token_id, pad_token_id;
  std::vector<int64_t> eos_token_ids;  // config.json's eos_token_id, int or list
  int64_t num_labels = 1;              // sequence classification only
  nlohmann::json raw;                  // the parsed file, re-emitted on save so unknown keys survive

  int64_t kv_groups() const { return num_attention_heads / num_key_value_heads; }
  // Parameters, counting the tied head once.
  int64_t num_parameters() const;
};

// Parses a config.json object. `source` (a path) prefixes every error message.
ModelConfig parse_model_config(const nlohmann::json& j, const std::string& source);
// Reads DIR/config.json.
ModelConfig load_model_config(const std::string& dir);
// The config.json HF would write for this config (starting from `raw`, so unknown keys survive).
nlohmann::json model_config_to_json(const ModelConfig& c);

// The eos ids of a model directory: config.json's plus generation_config.json's, deduplicated.
std::vector<int64_t> load_eos_ids(const std::string& dir, const ModelConfig& c);

}  // namespace multiref
