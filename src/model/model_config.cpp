#include "model/model_config.h"

#include "util/common.h"
#include "util/json_text.h"

namespace multiref {

namespace {

struct Reader {
  const nlohmann::json& j;
  const std::string& src;

  bool has(const char* k) const { return j.contains(k) && !j[k].is_null(); }

  int64_t integer(const char* k, std::optional<int64_t> def = std::nullopt, int64_t min = 1) const {
    if (!has(k)) {
      if (def) return *def;
      fail(src, ": missing required field \"", k, "\"");
    }
    if (!j[k].is_number_integer()) fail(src, ": field \"", k, "\" must be an integer, got ", json_excerpt(j[k]));
    int64_t v = j[k].get<int64_t>();
    if (v < min) fail(src, ": field \"", k, "\" = ", v, " must be >= ", min);
    return v;
  }
  double number(const char* k, double def) const {
    if (!has(k)) return def;
    if (!j[k].is_number()) fail(src, ": field \"", k, "\" must be a number, got ", json_excerpt(j[k]));
    return j[k].get<double>();
  }
  bool boolean(const char* k, bool def) const {
    if (!has(k)) return def;
    if (!j[k].is_boolean()) fail(src, ": field \"", k, "\" must be true or false, got ", json_excerpt(j[k]));
    return j[k].get<bool>();
  }
  std::optional<int64_t> token_id(const char* k) const {
    if (!has(k)) return std::nullopt;
    if (!j[k].is_number_integer()) fail(src, ": field \"", k, "\" must be a token id, got ", json_excerpt(j[k]));
    return j[k].get<int64_t>();
  }
};

std::vector<int64_t> read_eos(const nlohmann::json& v, const std::string& src) {
  std::vector<int64_t> out;
  if (v.is_null()) return out;
  if (v.is_number_integer()) return {v.get<int64_t>()};
  if (v.is_array()) {
    for (auto& e : v) {
      if (!e.is_number_integer()) fail(src, ": eos_token_id entries must be integers, got ", json_excerpt(e));
      out.push_back(e.get<int64_t>());
    }
    return out;
  }
  fail(src, ": eos_token_id must be an integer or a list of integers, got ", json_excerpt(v));
}

}  // namespace

int64_t ModelConfig::num_parameters() const {
  int64_t h = hidden_size, kvd = num_key_value_heads * head_dim, qd = num_attention_heads * head_dim;
  int64_t attn = h * qd + 2 * h * kvd + qd * h + (qkv_bias ? qd + 2 * kvd : 0) + (o_bias ? h : 0);
  int64_t mlp = 3 * h * intermediate_size + (mlp_bias ? 2 * intermediate_size + h : 0);
  int64_t layer = attn + mlp + 2 * h;
  int64_t head_params = head == ModelHead::CausalLM ? (tie_word_embeddings ? 0 : vocab_size * h) : num_labels * h;
  return vocab_size * h + num_hidden_layers * layer + h + head_params;
}

ModelConfig parse_model_config(const nlohmann::json& j, const std::string& src) {
  if (!j.is_object()) fail(src, ": config must be a JSON object");
  Reader r{j, src};
  ModelConfig c;
  c.raw = j;
  std::string model_type = r.has("model_type") && j["model_type"].is_string() ? j["model_type"].get<std::string>() : "";
  if (r.has("architectures")) {
    if (!j["architectures"].is_array() || j["architectures"].empty() || !j["architectures"][0].is_string())
      fail(src, ": \"architectures\" must be a non-empty list of class names");
    c.architecture = j["architectures"][0].get<std::string>();
  } else if (model_type == "qwen2") {
    c.architecture = "Qwen2ForCausalLM";
  } else if (model_type == "llama") {
    c.architecture = "LlamaForCausalLM";
  } else {
    fail(src, ": no \"architectures\" and model_type '", model_type, "' is not qwen2 or llama");
  }
  const std::string& a = c.architecture;
  if (a == "Qwen2ForCausalLM" || a == "Qwen2ForSequenceClassification") {
    c.family = ModelFamily::Qwen2;
  } else if (a == "LlamaForCausalLM" || a == "LlamaForSequenceClassification") {
    c.family = ModelFamily::Llama;
  } else {
    fail(src, ": architecture '", a,
         "' is not supported; multiref runs Qwen2ForCausalLM, LlamaForCausalLM, "
         "Qwen2ForSequenceClassification and LlamaForSequenceClassification");
  }
  if (!model_type.empty() && model_type != (c.family == ModelFamily::Qwen2 ? "qwen2" : "llama"))
    fail(src, ": model_type '", model_type, "' does not match architecture ", a);
  c.head =
      a.find("SequenceClassification") != std::string::npos ? ModelHead::SequenceClassification : ModelHead::CausalLM;
  c.vocab_size = r.integer("vocab_size");
  c.hidden_size = r.integer("hidden_size");
  c.intermediate_size = r.integer("intermediate_size");
  c.num_hidden_layers = r.integer("num_hidden_layers");
  c.num_attention_heads = r.integer("num_attention_heads");
  c.num_key_value_heads = r.integer("num_key_value_heads", c.num_attention_heads);
  if (c.num_attention_heads % c.num_key_value_heads != 0)
    fail(src, ": num_attention_heads (", c.num_attention_heads, ") must be a multiple of num_key_value_heads (",
         c.num_key_value_heads, ")");
  std::optional<int64_t> hd_default;
  if (c.hidden_size % c.num_attention_heads == 0) hd_default = c.hidden_size / c.num_attention_heads;
  c.head_dim = r.integer("head_dim", hd_default);
  if (c.head_dim % 2 != 0) fail(src, ": head_dim ", c.head_dim, " must be even for rotary embeddings");
  c.max_position_embeddings = r.integer("max_position_embeddings", 2048);
  c.rms_norm_eps = r.number("rms_norm_eps", 1e-6);
  if (!(c.rms_norm_eps > 0)) fail(src, ": rms_norm_eps must be > 0");
  c.rope_theta = r.number("rope_theta", 10000.0);
  if (!(c.rope_theta > 0)) fail(src, ": rope_theta must be > 0");
  std::string act = r.has("hidden_act") ? j["hidden_act"].get<std::string>() : "silu";
  if (act != "silu") fail(src, ": hidden_act '", act, "' is not supported (only silu)");
  if (r.has("rope_scaling")) {
    const auto& s = j["rope_scaling"];
    if (!s.is_object()) fail(src, ": rope_scaling must be an object or null");
    std::string type = s.contains("rope_type") ? s["rope_type"].get<std::string>()
                       : s.contains("type")    ? s["type"].get<std::string>()
                                               : "";
    if (type == "default") {
      // same as no scaling
    } else if (type == "llama3") {
      Reader sr{s, src};
      RopeScaling rs;
      rs.rope_type = type;
      rs.factor = sr.number("factor", 8.0);
      rs.low_freq_factor = sr.number("low_freq_factor", 1.0);
      rs.high_freq_factor = sr.number("high_freq_factor", 4.0);
      rs.original_max_position_embeddings = sr.integer("original_max_position_embeddings", 8192);
      if (!(rs.factor >= 1.0) || !(rs.high_freq_factor > rs.low_freq_factor) || !(rs.low_freq_factor > 0))
        fail(src, ": rope_scaling needs factor >= 1 and high_freq_factor > low_freq_factor > 0");
      c.rope_scaling = rs;
    } else {
      fail(src, ": rope_scaling type '", type, "' is not supported (only llama3 or none)");
    }
  }
  if (c.family == ModelFamily::Qwen2) {
    c.qkv_bias = true;
    c.o_bias = false;
    if (r.boolean("use_sliding_window", false))
      fail(src, ": use_sliding_window=true is not supported; set it to false (Qwen2.5 ships it false)");
    if (r.boolean("use_mrope", false)) fail(src, ": use_mrope=true (multimodal rope) is not supported");
  } else {
    c.qkv_bias = c.o_bias = r.boolean("attention_bias", false);
    c.mlp_bias = r.boolean("mlp_bias", false);
  }
  c.tie_word_embeddings = r.boolean("tie_word_embeddings", c.family == ModelFamily::Qwen2 ? false : false);
  std::string dt_key = r.has("torch_dtype") ? "torch_dtype" : "dtype";
  if (r.has(dt_key.c_str())) {
    c.torch_dtype = j[dt_key].get<std::string>();
    if (c.torch_dtype != "float32" && c.torch_dtype != "bfloat16" && c.torch_dtype != "float16" &&
        c.torch_dtype != "float64")
      fail(src, ": ", dt_key, " '", c.torch_dtype, "' is not supported (float32, bfloat16, float16, float64)");
  }
  c.bos_token_id = r.token_id("bos_token_id");
  c.pad_token_id = r.token_id("pad_token_id");
  if (j.contains("eos_token_id")) c.eos_token_ids = read_eos(j["eos_token_id"], src);
  if (c.head == ModelHead::SequenceClassification) {
    int64_t from_labels = r.has("id2label") && j["id2label"].is_object() ? (int64_t)j["id2label"].size() : 2;
    c.num_labels = r.integer("num_labels", from_labels);
  }
  return c;
}

ModelConfig load_model_config(const std::string& dir) {
  std::string path = join_path(dir, "config.json");
  if (!file_exists(path)) fail(dir, ": no config.json (is this a Hugging Face model directory?)");
  return parse_model_config(parse_json(read_file(path), path), path);
}

nlohmann::json model_config_to_json(const ModelConfig& c) {
  nlohmann::json j = c.raw.is_object() ? c.raw : nlohmann::json::object();
  bool qwen = c.family == ModelFamily::Qwen2;
  j["architectures"] = {c.architecture};
  j["model_type"] = qwen ? "qwen2" : "llama";
  j["vocab_size"] = c.vocab_size;
  j["hidden_size"] = c.hidden_size;
  j["intermediate_size"] = c.intermediate_size;
  j["num_hidden_layers"] = c.num_hidden_layers;
  j["num_attention_heads"] = c.num_attention_heads;
  j["num_key_value_heads"] = c.num_key_value_heads;
  if (!qwen || c.head_dim != c.hidden_size / c.num_attention_heads) j["head_dim"] = c.head_dim;
  j["max_position_embeddings"] = c.max_position_embeddings;
  j["rms_norm_eps"] = c.rms_norm_eps;
  j["rope_theta"] = c.rope_theta;
  j["hidden_act"] = "silu";
  if (c.rope_scaling) {
    j["rope_scaling"] = {{"rope_type", c.rope_scaling->rope_type},
                         {"factor", c.rope_scaling->factor},
                         {"low_freq_factor", c.rope_scaling->low_freq_factor},
                         {"high_freq_factor", c.rope_scaling->high_freq_factor},
                         {"original_max_position_embeddings", c.rope_scaling->original_max_position_embeddings}};
  } else {
    j["rope_scaling"] = nullptr;
  }
  if (qwen) {
    if (!j.contains("use_sliding_window")) j["use_sliding_window"] = false;
    if (!j.contains("sliding_window")) j["sliding_window"] = c.max_position_embeddings;
    if (!j.contains("max_window_layers")) j["max_window_layers"] = c.num_hidden_layers;
  } else {
    j["attention_bias"] = c.qkv_bias;
    j["mlp_bias"] = c.mlp_bias;
  }
  j["tie_word_embeddings"] = c.tie_word_embeddings;
  j["torch_dtype"] = c.torch_dtype;
  j["bos_token_id"] = c.bos_token_id ? nlohmann::json(*c.bos_token_id) : nlohmann::json(nullptr);
  if (c.eos_token_ids.size() == 1)
    j["eos_token_id"] = c.eos_token_ids[0];
  else if (c.eos_token_ids.empty())
    j["eos_token_id"] = nullptr;
  else
    j["eos_token_id"] = c.eos_token_ids;
  if (c.pad_token_id) j["pad_token_id"] = *c.pad_token_id;
  if (c.head == ModelHead::SequenceClassification) j["num_labels"] = c.num_labels;
  if (!j.contains("attention_dropout")) j["attention_dropout"] = 0.0;
  if (!j.contains("initializer_range")) j["initializer_range"] = 0.02;
  if (!j.contains("use_cache")) j["use_cache"] = true;
  return j;
}

std::vector<int64_t> load_eos_ids(const std::string& dir, const ModelConfig& c) {
  std::vector<int64_t> ids = c.eos_token_ids;
  std::string gp = join_path(dir, "generation_config.json");
  if (file_exists(gp)) {
    nlohmann::json g = parse_json(read_file(gp), gp);
    if (g.contains("eos_token_id"))
      for (int64_t id : read_eos(g["eos_token_id"], gp))
        if (std::find(ids.begin(), ids.end(), id) == ids.end()) ids.push_back(id);
  }
  return ids;
}

}  // namespace multiref
