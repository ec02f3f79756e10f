// config.json files of the real models, transcribed from their Hugging Face model cards.
#include "io/hf_model.h"
#include "model/model_config.h"
#include "test_util.h"

using namespace multiref;
using namespace multiref::testing;

namespace {

const char* kQwen25_05B_Instruct = R"({
  "architectures": ["Qwen2ForCausalLM"], "attention_dropout": 0.0, "bos_token_id": 151643,
  "eos_token_id": 151645, "hidden_act": "silu", "hidden_size": 896, "initializer_range": 0.02,
  "intermediate_size": 4864, "max_position_embeddings": 32768, "max_window_layers": 21, "model_type": "qwen2",
  "num_attention_heads": 14, "num_hidden_layers": 24, "num_key_value_heads": 2, "rms_norm_eps": 1e-06,
  "rope_theta": 1000000.0, "sliding_window": 32768, "tie_word_embeddings": true, "torch_dtype": "bfloat16",
  "transformers_version": "4.43.1", "use_cache": true, "use_sliding_window": false, "vocab_size": 151936})";

const char* kQwen25_Math_15B = R"({
  "architectures": ["Qwen2ForCausalLM"], "attention_dropout": 0.0, "bos_token_id": 151643,
  "eos_token_id": 151643, "hidden_act": "silu", "hidden_size": 1536, "initializer_range": 0.02,
  "intermediate_size": 8960, "max_position_embeddings": 4096, "max_window_layers": 21, "model_type": "qwen2",
  "num_attention_heads": 12, "num_hidden_layers": 28, "num_key_value_heads": 2, "rms_norm_eps": 1e-06,
  "rope_theta": 10000, "sliding_window": 4096, "tie_word_embeddings": true, "torch_dtype": "bfloat16",
  "transformers_version": "4.37.0", "use_cache": true, "use_mrope": false, "use_sliding_window": false,
  "vocab_size": 151936})";

const char* kLlama31_8B = R"({
  "architectures": ["LlamaForCausalLM"], "attention_bias": false, "attention_dropout": 0.0,
  "bos_token_id": 128000, "eos_token_id": 128001, "hidden_act": "silu", "hidden_size": 4096,
  "initializer_range": 0.02, "intermediate_size": 14336, "max_position_embeddings": 131072, "mlp_bias": false,
  "model_type": "llama", "num_attention_heads": 32, "num_hidden_layers": 32, "num_key_value_heads": 8,
  "pretraining_tp": 1, "rms_norm_eps": 1e-05,
  "rope_scaling": {"factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                   "original_max_position_embeddings": 8192, "rope_type": "llama3"},
  "rope_theta": 500000.0, "tie_word_embeddings": false, "torch_dtype": "bfloat16",
  "transformers_version": "4.43.0.dev0", "use_cache": true, "vocab_size": 128256})";

// The Llama-3.1-Instruct variant lists three eos ids.
const char* kLlama31_8B_Instruct_eos = R"([128001, 128008, 128009])";

// A Llama-3.1-8B reward model (Skywork-Reward-Llama-3.1-8B-v0.2 shape): sequence classification, 1 label.
const char* kSkyworkReward = R"({
  "architectures": ["LlamaForSequenceClassification"], "attention_bias": false, "attention_dropout": 0.0,
  "bos_token_id": 128000, "eos_token_id": 128009, "hidden_act": "silu", "hidden_size": 4096,
  "id2label": {"0": "LABEL_0"}, "label2id": {"LABEL_0": 0}, "initializer_range": 0.02,
  "intermediate_size": 14336, "max_position_embeddings": 131072, "mlp_bias": false, "model_type": "llama",
  "num_attention_heads": 32, "num_hidden_layers": 32, "num_key_value_heads": 8, "pad_token_id": 128256,
  "pretraining_tp": 1, "rms_norm_eps": 1e-05,
  "rope_scaling": {"factor": 8.0, "high_freq_factor": 4.0, "low_freq_factor": 1.0,
                   "original_max_position_embeddings": 8192, "rope_type": "llama3"},
  "rope_theta": 500000.0, "tie_word_embeddings": false, "torch_dtype": "bfloat16", "vocab_size": 128257})";

ModelConfig parse(const char* s) {
  return parse_model_config(nlohmann::json::parse(s), "config.json");
}

}  // namespace

TEST(ModelConfig, Qwen25_05B_Instruct) {
  auto c = parse(kQwen25_05B_Instruct);
  EXPECT_EQ(c.family, ModelFamily::Qwen2);
  EXPECT_EQ(c.head, ModelHead::CausalLM);
  EXPECT_EQ(c.vocab_size, 151936);
  EXPECT_EQ(c.hidden_size, 896);
  EXPECT_EQ(c.num_attention_heads, 14);
  EXPECT_EQ(c.num_key_value_heads, 2);
  EXPECT_EQ(c.head_dim, 64);
  EXPECT_EQ(c.kv_groups(), 7);
  EXPECT_TRUE(c.qkv_bias);
  EXPECT_FALSE(c.o_bias);
  EXPECT_TRUE(c.tie_word_embeddings);
  EXPECT_DOUBLE_EQ(c.rope_theta, 1e6);
  EXPECT_FALSE(c.rope_scaling.has_value());
  EXPECT_EQ(c.torch_dtype, "bfloat16");
  EXPECT_EQ(c.eos_token_ids, std::vector<int64_t>{151645});
  // The model card's "0.49B": 494,032,768 parameters (tied head counted once).
  EXPECT_EQ(c.num_parameters(), 494032768);
}

TEST(ModelConfig, Qwen25_Math_15B) {
  auto c = parse(kQwen25_Math_15B);
  EXPECT_EQ(c.hidden_size, 1536);
  EXPECT_EQ(c.num_hidden_layers, 28);
  EXPECT_EQ(c.head_dim, 128);
  EXPECT_EQ(c.max_position_embeddings, 4096);
  EXPECT_DOUBLE_EQ(c.rope_theta, 10000.0);
  EXPECT_EQ(c.eos_token_ids, std::vector<int64_t>{151643});
  EXPECT_EQ(c.num_parameters(), 1543714304);  // "1.54B"
}

TEST(ModelConfig, Llama31_8B) {
  auto c = parse(kLlama31_8B);
  EXPECT_EQ(c.family, ModelFamily::Llama);
  EXPECT_FALSE(c.qkv_bias);
  EXPECT_FALSE(c.tie_word_embeddings);
  ASSERT_TRUE(c.rope_scaling.has_value());
  EXPECT_EQ(c.rope_scaling->rope_type, "llama3");
  EXPECT_DOUBLE_EQ(c.rope_scaling->factor, 8.0);
  EXPECT_EQ(c.rope_scaling->original_max_position_embeddings, 8192);
  EXPECT_EQ(c.head_dim, 128);
  EXPECT_EQ(c.num_parameters(), 8030261248);  // "8.03B"
  auto j = nlohmann::json::parse(kLlama31_8B);
  j["eos_token_id"] = nlohmann::json::parse(kLlama31_8B_Instruct_eos);
  EXPECT_EQ(parse_model_config(j, "x").eos_token_ids, (std::vector<int64_t>{128001, 128008, 128009}));
}

TEST(ModelConfig, RewardModelHead) {
  auto c = parse(kSkyworkReward);
  EXPECT_EQ(c.head, ModelHead::SequenceClassification);
  EXPECT_EQ(c.num_labels, 1);  // from id2label, as HF derives it
  EXPECT_EQ(c.pad_token_id, 128256);
  auto q = nlohmann::json::parse(kQwen25_05B_Instruct);
  q["architectures"] = {"Qwen2ForSequenceClassification"};
  q["num_labels"] = 1;
  EXPECT_EQ(parse_model_config(q, "x").head, ModelHead::SequenceClassification);
}

TEST(ModelConfig, RoundTripThroughJson) {
  for (auto s : {kQwen25_05B_Instruct, kLlama31_8B, kSkyworkReward}) {
    auto a = parse(s);
    auto b = parse_model_config(model_config_to_json(a), "again");
    EXPECT_EQ(a.num_parameters(), b.num_parameters());
    EXPECT_EQ(a.head_dim, b.head_dim);
    EXPECT_EQ(a.rope_scaling.has_value(), b.rope_scaling.has_value());
    EXPECT_EQ(a.eos_token_ids, b.eos_token_ids);
    EXPECT_EQ(a.architecture, b.architecture);
  }
}

TEST(ModelConfig, UnsupportedValuesAreErrors) {
  auto base = nlohmann::json::parse(kLlama31_8B);
  auto with = [&](const char* key, nlohmann::json v) {
    auto j = base;
    j[key] = v;
    return j;
  };
  expect_error([&] { parse_model_config(with("architectures", {"MistralForCausalLM"}), "cfg.json"); },
               {"cfg.json", "MistralForCausalLM", "not supported"});
  expect_error(
      [&] {
        parse_model_config(with("rope_scaling", {{"rope_type", "yarn"}, {"factor", 4.0}}), "cfg.json");
      },
      {"cfg.json", "yarn"});
  expect_error([&] { parse_model_config(with("num_key_value_heads", 5), "cfg.json"); },
               {"num_attention_heads (32)", "num_key_value_heads (5)"});
  expect_error([&] { parse_model_config(with("hidden_act", "gelu"), "cfg.json"); }, {"hidden_act", "gelu"});
  expect_error([&] { parse_model_config(with("hidden_size", "big"), "cfg.json"); }, {"\"hidden_size\"", "integer"});
  expect_error([&] { parse_model_config(with("torch_dtype", "int8"), "cfg.json"); }, {"torch_dtype", "int8"});
  expect_error([&] { parse_model_config(with("model_type", "qwen2"), "cfg.json"); }, {"model_type", "does not match"});
  auto j = base;
  j.erase("vocab_size");
  expect_error([&] { parse_model_config(j, "cfg.json"); }, {"cfg.json", "missing required field \"vocab_size\""});
  auto q = nlohmann::json::parse(kQwen25_05B_Instruct);
  q["use_sliding_window"] = true;
  expect_error([&] { parse_model_config(q, "cfg.json"); }, {"use_sliding_window"});
}

TEST(ModelConfig, PresetsMatchRealShapes) {
  auto p = preset_config("qwen2", "qwen2.5-0.5b");
  auto real = parse(kQwen25_05B_Instruct);
  EXPECT_EQ(p.num_parameters(), real.num_parameters());
  EXPECT_EQ(preset_config("qwen2", "qwen2.5-1.5b").num_parameters(), parse(kQwen25_Math_15B).num_parameters());
  expect_error([&] { preset_config("llama", "qwen2.5-0.5b"); }, {"--preset", "tiny"});
  expect_error([&] { preset_config("gpt2", "tiny"); }, {"--arch", "gpt2"});
}
