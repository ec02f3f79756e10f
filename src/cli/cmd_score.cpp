// `multiref score`: per-token log-probabilities of token sequences under a model.
#include <fstream>
#include <iostream>

#include "cli/commands.h"
#include "io/hf_model.h"
#include "model/batching.h"
#include "model/logprobs.h"
#include "objectives/objectives.h"
#include "util/common.h"
#include "util/dtype_flag.h"
#include "util/flags.h"
#include "util/json_text.h"
#include "util/jsonl.h"
#include "util/runtime.h"

namespace multiref {

namespace {

struct ScoreConfig {
  std::string model, input, output;
  int batch_size = 8;
  DTypeChoice dtype = DTypeChoice::Auto;
  DeviceChoice device = DeviceChoice::Auto;
  int threads = 0;
  std::vector<std::string> refs;
  std::vector<double> ref_weights;
  std::string kl_type = "rkl";

  void register_flags(FlagTable& t) {
    t.add("model", &model, "model directory or hub id (resolved in the local HF cache)");
    t.add("input", &input, "jsonl: {\"input_ids\":[...]} per line, optionally \"completion_start\": k");
    t.add("output", &output, "jsonl: {\"token_logprobs\":[...]} per input line, in input order");
    t.add("batch_size", &batch_size, "sequences per forward pass (batched by length; results do not depend on it)");
    register_dtype_flags(t, &dtype, nullptr);
    t.add_enum("device", &device, device_choices(), "where to run");
    t.add("threads", &threads, "CPU threads (0 = one per core)");
    t.add("ref", &refs,
          "reference model(s), repeatable or comma-separated; adds per-reference, mixture and KL outputs");
    t.add("ref_weights", &ref_weights, "mixture weights of the references, summing to 1 (default: uniform)");
    t.add("kl_type", &kl_type,
          "rkl: geometric mixture, token_kl = sum_i w_i KL(pi||pi_i); fkl: arithmetic mixture, sum_i w_i KL(pi_i||pi)");
  }
  void validate() const {
    if (model.empty()) fail("--model is required (a directory or hub id)");
    if (input.empty()) fail("--input is required (a jsonl file)");
    if (output.empty()) fail("--output is required (a jsonl file to write)");
    if (batch_size < 1) fail("--batch_size must be >= 1, got ", batch_size);
    if (kl_type != "rkl" && kl_type != "fkl") fail("--kl_type must be rkl or fkl, got '", kl_type, "'");
    if (refs.empty() && !ref_weights.empty()) fail("--ref_weights given without --ref");
  }
};

struct ScoreRow {
  std::vector<int64_t> ids;
  int64_t start = 1;  // first position t whose log p(ids[t] | ids[<t]) is reported
};

std::vector<ScoreRow> read_score_input(const std::string& path, int64_t vocab, int64_t max_len) {
  std::vector<ScoreRow> rows;
  for (auto& [j, where] : read_jsonl(path)) {
    if (!j.contains("input_ids") || !j["input_ids"].is_array()) fail(where, ": expected {\"input_ids\": [...]}");
    ScoreRow r;
    for (auto& v : j["input_ids"]) {
      if (!v.is_number_integer()) fail(where, ": input_ids must hold integers, got ", json_excerpt(v));
      int64_t id = v.get<int64_t>();
      if (id < 0 || id >= vocab) fail(where, ": token id ", id, " is outside the model's vocabulary [0, ", vocab, ")");
      r.ids.push_back(id);
    }
    if (r.ids.empty()) fail(where, ": input_ids is empty");
    if ((int64_t)r.ids.size() > max_len)
      fail(where, ": ", r.ids.size(), " tokens exceed the model's max_position_embeddings ", max_len);
    if (j.contains("completion_start")) {
      if (!j["completion_start"].is_number_integer()) fail(where, ": completion_start must be an integer");
      r.start = j["completion_start"].get<int64_t>();
      if (r.start < 1 || r.start > (int64_t)r.ids.size())
        fail(where, ": completion_start ", r.start, " must lie in [1, ", r.ids.size(), "]");
    }
    rows.push_back(std::move(r));
  }
  return rows;
}

}  // namespace

int cmd_score(int argc, char** argv) {
  ScoreConfig cfg;
  FlagTable flags("multiref score", "Per-token log-probabilities log p(ids[t] | ids[<t]) of each input sequence.");
  if (!parse_config(flags, cfg, argc, argv, 2)) return 0;
  set_threads(cfg.threads);
  auto device = resolve_device(cfg.device);
  auto dtype = resolve_dtype(cfg.dtype, device);
  auto lm = load_model(cfg.model, dtype, device);
  if (lm.config.head != ModelHead::CausalLM)
    fail(cfg.model, ": is a ", lm.config.architecture,
         "; score needs a causal LM (use `multiref reward` for reward models)");
  std::vector<LoadedModel> refs;
  for (auto& id : cfg.refs) {
    refs.push_back(load_model(id, dtype, device));
    if (refs.back().config.vocab_size != lm.config.vocab_size)
      fail("--ref ", id, ": vocabulary of ", refs.back().config.vocab_size, " tokens differs from --model's ",
           lm.config.vocab_size, "; token-level mixtures and KLs need a shared vocabulary");
  }
  std::vector<double> w = cfg.ref_weights;
  if (!refs.empty() && w.empty()) w.assign(refs.size(), 1.0 / (double)refs.size());
  if (!refs.empty()) validate_weights(w, refs.size(), "--ref_weights");
  int64_t max_len = lm.config.max_position_embeddings;
  for (auto& r : refs) max_len = std::min(max_len, r.config.max_position_embeddings);
  auto rows = read_score_input(cfg.input, lm.config.vocab_size, max_len);

  // Batches of similar lengths (longest first); outputs return to input order.
  std::vector<size_t> lengths;
  for (auto& r : rows) lengths.push_back(r.ids.size());
  std::vector<nlohmann::json> results(rows.size());
  torch::InferenceMode guard;
  double t0 = now_seconds();
  int64_t tokens = 0;
  size_t done = 0;
  for (const auto& batch : longest_first_batches(lengths, (size_t)cfg.batch_size)) {
    size_t n = batch.size();
    std::vector<const TokenRow*> batch_rows;
    for (size_t i : batch) batch_rows.push_back(&rows[i].ids);
    auto padded = pad_right(batch_rows);
    int64_t T = padded.ids.size(1);
    tokens += padded.tokens;
    auto ids = padded.ids.to(device), mask = padded.mask.to(device);
    auto hidden = lm.model->hidden_states(ids, mask);
    auto lp = token_logprobs_from_hidden(lm.model, hidden, ids, mask).to(torch::kCPU).contiguous();  // [n, T-1]
    torch::Tensor ref_lp, mix, token_kl;  // [K, n, T-1], [n, T-1], [n, T-1]
    if (!refs.empty() && T > 1) {
      std::vector<torch::Tensor> ref_hidden;
      std::vector<torch::Tensor> per_ref;
      for (auto& r : refs) {
        ref_hidden.push_back(r.model->hidden_states(ids, mask));
        per_ref.push_back(token_logprobs_from_hidden(r.model, ref_hidden.back(), ids, mask));
      }
      ref_lp = torch::stack(per_ref, 0).to(torch::kCPU).contiguous();
      // Full-vocabulary terms over chunks of positions: at most (K + 1) x [n, chunk, V] log-probs at once.
      std::vector<LogpChunk> ref_chunks;
      for (size_t k = 0; k < refs.size(); ++k) ref_chunks.push_back(vocab_logp_chunks(refs[k].model, ref_hidden[k]));
      int64_t chunk =
          std::max<int64_t>(1, (1 << 24) / ((int64_t)(refs.size() + 1) * (int64_t)n * lm.config.vocab_size));
      auto targets = ids.narrow(1, 1, T - 1);
      auto terms = vocab_terms_chunked(vocab_logp_chunks(lm.model, hidden.narrow(1, 0, T - 1)), ref_chunks, targets, w,
                                       w, chunk);
      bool rkl = cfg.kl_type == "rkl";
      mix = (rkl ? terms.log_geo_target : terms.log_arith_target).to(torch::kCPU).contiguous();
      auto per = rkl ? terms.kl_policy_ref : terms.kl_ref_policy;  // [K, n, T-1]
      token_kl = torch::zeros_like(per[0]);
      for (size_t k = 0; k < refs.size(); ++k) token_kl = token_kl + w[k] * per[(int64_t)k];
      token_kl = token_kl.to(torch::kCPU).contiguous();
    }
    // Values as computed: float32 written as floats (shortest form), float64 (--dtype float64) with every digit.
    auto slice = [](const torch::Tensor& row, int64_t from, int64_t to) -> nlohmann::json {
      auto t = row.narrow(0, from, to - from).contiguous();
      if (t.scalar_type() == torch::kFloat64) {
        const double* p = t.data_ptr<double>();
        return std::vector<double>(p, p + (to - from));
      }
      t = t.to(torch::kFloat32);
      const float* p = t.data_ptr<float>();
      return std::vector<float>(p, p + (to - from));
    };
    for (size_t i = 0; i < n; ++i) {
      const auto& r = rows[batch[i]];
      auto len = (int64_t)r.ids.size();
      auto row = (int64_t)i;
      nlohmann::json j = {{"token_logprobs", slice(lp[row], r.start - 1, len - 1)}};
      if (!refs.empty()) {
        nlohmann::json per = nlohmann::json::array();
        for (size_t k = 0; k < refs.size(); ++k)
          per.push_back(T > 1 ? slice(ref_lp[(int64_t)k][row], r.start - 1, len - 1) : nlohmann::json::array());
        j["ref_token_logprobs"] = per;
        j["mixture_token_logprobs"] = T > 1 ? slice(mix[row], r.start - 1, len - 1) : nlohmann::json::array();
        j["token_kl"] = T > 1 ? slice(token_kl[row], r.start - 1, len - 1) : nlohmann::json::array();
      }
      results[batch[i]] = std::move(j);
    }
    done += n;
    double dt = now_seconds() - t0;
    std::cerr << "\rscore: " << done << "/" << rows.size() << " sequences, " << (int64_t)(tokens / std::max(dt, 1e-9))
              << " tok/s" << std::flush;
  }
  std::cerr << "\n";
  std::string out;
  for (auto& r : results) out += r.dump() + "\n";
  write_file_atomic(cfg.output, out);
  return 0;
}

}  // namespace multiref
