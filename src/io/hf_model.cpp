#include "io/hf_model.h"

#include <filesystem>

#include "io/hub.h"
#include "io/safetensors.h"
#include "util/common.h"
#include "util/runtime.h"

namespace fs = std::filesystem;

namespace multiref {

const std::vector<std::string>& tokenizer_file_names() {
  static const std::vector<std::string> names = {"tokenizer.json",  "tokenizer_config.json",   "vocab.json",
                                                 "merges.txt",      "special_tokens_map.json", "added_tokens.json",
                                                 "tokenizer.model", "chat_template.jinja"};
  return names;
}

std::vector<std::pair<std::string, torch::Tensor>> state_dict(Transformer& model) {
  std::vector<std::pair<std::string, torch::Tensor>> out;
  for (auto& p : model->named_parameters(/*recurse=*/true)) out.emplace_back(p.key(), p.value());
  return out;
}

namespace {

// The sizes config.json gives against the shapes the checkpoint holds, before anything is allocated: a corrupt or
// hostile config (num_hidden_layers 10^6, hidden_size 2^31) must fail here with its field named, not build gigabytes
// of layers first. The tensors are views of the mapped files, so reading their shapes costs nothing.
void check_config_against_weights(const ModelConfig& c, const std::map<std::string, torch::Tensor>& tensors,
                                  const std::string& dir) {
  auto shape = [&](const std::string& key) -> std::vector<int64_t> {
    auto it = tensors.find(key);
    if (it == tensors.end()) return {};
    return it->second.sizes().vec();
  };
  auto disagree = [&](const char* field, int64_t config_value, int64_t weights_value, const std::string& key) {
    fail(dir, "/config.json: ", field, " is ", config_value, " but the weights have ", weights_value, " (", key,
         "); config.json and the weights disagree — is one of them from another model?");
  };
  auto embed = shape("model.embed_tokens.weight");
  if (embed.size() == 2) {
    if (embed[0] != c.vocab_size) disagree("vocab_size", c.vocab_size, embed[0], "model.embed_tokens.weight");
    if (embed[1] != c.hidden_size) disagree("hidden_size", c.hidden_size, embed[1], "model.embed_tokens.weight");
  }
  int64_t layers = 0;
  for (auto& kv : tensors) {
    const std::string prefix = "model.layers.";
    if (kv.first.rfind(prefix, 0) != 0) continue;
    size_t dot = kv.first.find('.', prefix.size());
    try {
      layers = std::max<int64_t>(layers, std::stoll(kv.first.substr(prefix.size(), dot - prefix.size())) + 1);
    } catch (const std::exception&) {
    }
  }
  if (layers != c.num_hidden_layers) disagree("num_hidden_layers", c.num_hidden_layers, layers, "model.layers.N");
  auto gate = shape("model.layers.0.mlp.gate_proj.weight");
  if (gate.size() == 2 && gate[0] != c.intermediate_size)
    disagree("intermediate_size", c.intermediate_size, gate[0], "model.layers.0.mlp.gate_proj.weight");
}

void load_weights(Transformer& model, const std::map<std::string, torch::Tensor>& tensors, const std::string& dir) {
  const auto& c = model->config;
  std::vector<std::string> missing, unexpected;
  torch::NoGradGuard ng;
  auto params = model->named_parameters(true);
  for (auto& p : params) {
    auto it = tensors.find(p.key());
    if (it == tensors.end()) {
      missing.push_back(p.key());
      continue;
    }
    if (it->second.sizes() != p.value().sizes())
      fail(dir, ": tensor '", p.key(), "' has shape ", it->second.sizes(), " but config.json implies ",
           p.value().sizes(), " (config.json and weights disagree)");
    p.value().copy_(it->second);
  }
  for (auto& [name, t] : tensors) {
    if (params.find(name)) continue;
    // Tolerated extras HF itself ignores: a saved copy of a tied head, and old rotary buffers.
    if (name == "lm_head.weight" && c.tie_word_embeddings) continue;
    if (name.find("rotary_emb.inv_freq") != std::string::npos) continue;
    unexpected.push_back(name);
  }
  auto list = [](const std::vector<std::string>& v) {
    std::string s;
    for (size_t i = 0; i < v.size() && i < 6; ++i) s += (i ? ", " : "") + v[i];
    if (v.size() > 6) s += cat(", ... (", v.size(), " in all)");
    return s;
  };
  if (!missing.empty())
    fail(dir, ": checkpoint lacks tensors the ", c.architecture, " config requires: ", list(missing),
         c.tie_word_embeddings ? "" : " (if lm_head.weight is missing, should tie_word_embeddings be true?)");
  if (!unexpected.empty())
    fail(dir, ": checkpoint has tensors a ", c.architecture, " with this config.json does not use: ", list(unexpected));
}

}  // namespace

void load_weights(Transformer& model, const std::string& dir) {
  load_weights(model, load_checkpoint_tensors(dir), dir);
}

LoadedModel load_model(const std::string& id, torch::ScalarType dtype, const torch::Device& device) {
  LoadedModel m;
  m.dir = resolve_model_dir(id);
  m.config = load_model_config(m.dir);
  auto tensors = load_checkpoint_tensors(m.dir);
  check_config_against_weights(m.config, tensors, m.dir);
  m.model = Transformer(m.config, torch::TensorOptions().dtype(dtype).device(device));
  load_weights(m.model, tensors, m.dir);
  m.model->eval();
  tensors.clear();
  release_free_memory();  // the files' buffers (util/runtime.h)
  return m;
}

static void copy_file(const std::string& from, const std::string& to) {
  std::error_code ec;
  fs::copy_file(from, to, fs::copy_options::overwrite_existing, ec);
  if (ec) fail("cannot copy ", from, " to ", to, ": ", ec.message());
}

void write_model_files(Transformer& model, const std::string& dir, const std::string& source) {
  auto sd = state_dict(model);
  torch::ScalarType dt = sd.empty() ? torch::kFloat32 : sd[0].second.scalar_type();
  ModelConfig c = model->config;
  c.torch_dtype = dtype_name(dt);
  write_file_atomic(join_path(dir, "config.json"), model_config_to_json(c).dump(2) + "\n");
  std::string gen_src = source.empty() ? "" : join_path(source, "generation_config.json");
  if (!gen_src.empty() && file_exists(gen_src)) {
    copy_file(gen_src, join_path(dir, "generation_config.json"));
  } else {
    nlohmann::json g = {{"_from_model_config", true}, {"transformers_version", "4.46.0"}};
    if (c.bos_token_id) g["bos_token_id"] = *c.bos_token_id;
    if (c.eos_token_ids.size() == 1) g["eos_token_id"] = c.eos_token_ids[0];
    if (c.eos_token_ids.size() > 1) g["eos_token_id"] = c.eos_token_ids;
    if (c.pad_token_id) g["pad_token_id"] = *c.pad_token_id;
    write_file_atomic(join_path(dir, "generation_config.json"), g.dump(2) + "\n");
  }
  save_safetensors(join_path(dir, "model.safetensors"), sd);
  if (!source.empty())
    for (auto& f : tokenizer_file_names())
      if (file_exists(join_path(source, f))) copy_file(join_path(source, f), join_path(dir, f));
}

void save_model(Transformer& model, const std::string& out_dir, const std::string& tokenizer_from) {
  StagedDir staged(out_dir);
  write_model_files(model, staged.path(), tokenizer_from);
  staged.commit();
}

void init_weights(Transformer& model, uint64_t seed, double std) {
  torch::NoGradGuard ng;
  auto gen = at::detail::createCPUGenerator(seed);
  for (auto& p : model->named_parameters(true)) {
    const std::string& n = p.key();
    auto& t = p.value();
    torch::Tensor v;
    if (n.find("norm.weight") != std::string::npos || n.find("layernorm.weight") != std::string::npos) {
      v = torch::ones(t.sizes());
    } else if (n.size() >= 5 && n.compare(n.size() - 5, 5, ".bias") == 0) {
      v = torch::zeros(t.sizes());
    } else {
      v = at::normal(0.0, std, t.sizes(), gen);
    }
    t.copy_(v);
  }
  const auto& c = model->config;
  if (c.pad_token_id && *c.pad_token_id >= 0 && *c.pad_token_id < c.vocab_size)
    model->model->embed_tokens->weight[*c.pad_token_id].zero_();  // HF zeroes the padding_idx row
}

ModelConfig preset_config(const std::string& arch, const std::string& preset) {
  if (arch != "qwen2" && arch != "llama") fail("--arch '", arch, "': expected qwen2 or llama");
  bool qwen = arch == "qwen2";
  nlohmann::json j = {{"architectures", {qwen ? "Qwen2ForCausalLM" : "LlamaForCausalLM"}},
                      {"model_type", arch},
                      {"hidden_act", "silu"},
                      {"initializer_range", 0.02},
                      {"bos_token_id", 1},
                      {"eos_token_id", 2},
                      {"torch_dtype", "float32"},
                      {"attention_dropout", 0.0}};
  auto shape = [&](int64_t V, int64_t H, int64_t I, int64_t L, int64_t heads, int64_t kv, int64_t ctx, bool tie) {
    j["vocab_size"] = V;
    j["hidden_size"] = H;
    j["intermediate_size"] = I;
    j["num_hidden_layers"] = L;
    j["num_attention_heads"] = heads;
    j["num_key_value_heads"] = kv;
    j["max_position_embeddings"] = ctx;
    j["tie_word_embeddings"] = tie;
  };
  if (preset == "tiny") {
    shape(512, 64, 128, 2, 4, 2, 1024, qwen);
  } else if (preset == "small") {
    shape(4096, 256, 704, 4, 8, 2, 2048, qwen);
  } else if (preset == "qwen2.5-0.5b" && qwen) {
    shape(151936, 896, 4864, 24, 14, 2, 32768, true);
    j["bos_token_id"] = 151643;
    j["eos_token_id"] = 151645;
  } else if (preset == "qwen2.5-1.5b" && qwen) {
    shape(151936, 1536, 8960, 28, 12, 2, 32768, true);
    j["bos_token_id"] = 151643;
    j["eos_token_id"] = 151643;
  } else {
    fail("--preset '", preset, "' is not available for --arch ", arch,
         "; presets: tiny, small (qwen2 and llama), qwen2.5-0.5b, qwen2.5-1.5b (qwen2)");
  }
  if (qwen) {
    j["rms_norm_eps"] = 1e-6;
    j["rope_theta"] = 1000000.0;
    j["use_sliding_window"] = false;
    j["sliding_window"] = j["max_position_embeddings"];
    j["max_window_layers"] = j["num_hidden_layers"];
  } else {
    j["rms_norm_eps"] = 1e-5;
    j["rope_theta"] = 500000.0;
    j["attention_bias"] = false;
    j["mlp_bias"] = false;
    // Llama 3.1's scaling with the window shrunk to the preset's size, so tiny models exercise it.
    j["rope_scaling"] = {{"rope_type", "llama3"},
                         {"factor", 8.0},
                         {"low_freq_factor", 1.0},
                         {"high_freq_factor", 4.0},
                         {"original_max_position_embeddings", j["max_position_embeddings"].get<int64_t>() / 8}};
  }
  return parse_model_config(j, "preset " + arch + "/" + preset);
}

}  // namespace multiref
