// `multiref init`: a randomly initialized, genuine HF checkpoint, so tests, benchmarks and demos need no
// downloads.
#include <iostream>

#include "cli/commands.h"
#include "io/hf_model.h"
#include "io/hub.h"
#include "tokenizer/tokenizer.h"
#include "util/common.h"
#include "util/flags.h"
#include "util/runtime.h"

namespace multiref {

namespace {
struct InitConfig {
  std::string arch = "qwen2";
  std::string preset = "tiny";
  std::string head = "causal_lm";
  int64_t seed = 0;
  int64_t vocab_size = 0;
  int64_t num_labels = 1;
  double initializer_range = 0.02;
  std::string output_dir;
  std::string tokenizer;
  DTypeChoice dtype = DTypeChoice::Float32;

  void register_flags(FlagTable& t) {
    t.add("arch", &arch, "model family: qwen2 or llama");
    t.add("preset", &preset, "shape: tiny, small, qwen2.5-0.5b, qwen2.5-1.5b (the last two: qwen2 only)");
    t.add("head", &head, "causal_lm, or seq_cls for a reward model (score head on the last token)");
    t.add("seed", &seed, "random seed of the weights");
    t.add("initializer_range", &initializer_range,
          "std of the normal weights (HF's initializer_range); large values make peaked, disagreeing toy models");
    t.add("vocab_size", &vocab_size, "override the preset's vocabulary size (0 = keep)");
    t.add("num_labels", &num_labels, "outputs of the seq_cls score head");
    t.add("output_dir", &output_dir, "directory to write (replaced atomically if it exists)");
    t.add("tokenizer", &tokenizer,
          "tokenizer directory: sizes the vocabulary to it, copies its files, sets bos/eos/pad ids");
    t.add_enum("dtype", &dtype, dtype_choices(), "dtype of the saved weights (auto = float32)");
  }
  void validate() const {
    if (output_dir.empty()) fail("--output_dir is required: where to write the checkpoint");
    if (head != "causal_lm" && head != "seq_cls") fail("--head '", head, "': expected causal_lm or seq_cls");
    if (vocab_size < 0) fail("--vocab_size must be >= 0");
    if (num_labels < 1) fail("--num_labels must be >= 1");
    if (!(initializer_range > 0)) fail("--initializer_range must be > 0, got ", initializer_range);
  }
};
}  // namespace

int cmd_init(int argc, char** argv) {
  InitConfig cfg;
  FlagTable flags("multiref init",
                  "Write a randomly initialized Hugging Face checkpoint (config.json, "
                  "generation_config.json, model.safetensors).");
  if (!parse_config(flags, cfg, argc, argv, 2)) return 0;
  ModelConfig c = preset_config(cfg.arch, cfg.preset);
  nlohmann::json raw = model_config_to_json(c);
  if (cfg.vocab_size > 0) raw["vocab_size"] = cfg.vocab_size;
  std::string tok_dir;
  if (!cfg.tokenizer.empty()) {
    tok_dir = resolve_tokenizer_dir(cfg.tokenizer);
    auto tok = Tokenizer::load(tok_dir);
    if (cfg.vocab_size > 0 && cfg.vocab_size < tok->vocab_size())
      fail("--vocab_size ", cfg.vocab_size, " is smaller than the tokenizer's ", tok->vocab_size(), " ids");
    if (cfg.vocab_size == 0) raw["vocab_size"] = tok->vocab_size();
    raw["bos_token_id"] = tok->bos_id ? nlohmann::json(*tok->bos_id) : nlohmann::json(nullptr);
    std::vector<int64_t> eos;
    if (tok->eos_id) eos.push_back(*tok->eos_id);
    // Like Qwen2.5-Instruct's generation_config: generation also stops at the pad/end-of-text token.
    if (tok->pad_id && (!tok->eos_id || *tok->pad_id != *tok->eos_id)) eos.push_back(*tok->pad_id);
    if (eos.empty()) fail(tok_dir, ": the tokenizer defines no eos_token; generation could never stop");
    raw["eos_token_id"] = eos.size() == 1 ? nlohmann::json(eos[0]) : nlohmann::json(eos);
    if (tok->pad_id) raw["pad_token_id"] = *tok->pad_id;
  }
  if (cfg.head == "seq_cls") {
    raw["architectures"] = {cfg.arch == "qwen2" ? "Qwen2ForSequenceClassification" : "LlamaForSequenceClassification"};
    raw["num_labels"] = cfg.num_labels;
    if (!raw.contains("pad_token_id")) raw["pad_token_id"] = 0;
    raw["tie_word_embeddings"] = false;
  }
  // Saved weights, not a CPU computation: float16 is fine here (drawn in float32, then rounded).
  bool half = cfg.dtype == DTypeChoice::Float16;
  auto dt = half ? torch::kFloat16 : resolve_dtype(cfg.dtype, torch::kCPU);
  raw["torch_dtype"] = dtype_name(dt);
  c = parse_model_config(raw, "init");
  Transformer model(c, torch::TensorOptions().dtype(half ? torch::kFloat32 : dt));
  init_weights(model, (uint64_t)cfg.seed, cfg.initializer_range);
  if (half) model->to(torch::kFloat16);
  save_model(model, cfg.output_dir, tok_dir);
  std::cerr << "multiref init: wrote " << c.architecture << " (" << cfg.preset << ", " << c.num_parameters() / 1e6
            << "M parameters, " << dtype_name(dt) << ") to " << cfg.output_dir << "\n";
  return 0;
}

}  // namespace multiref
