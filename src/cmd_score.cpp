// `multiref score`: per-token log-probabilities of token sequences under a model.
#include <fstream>
#include <iostream>

#include "checkpoint.h"
#include "commands.h"
#include "common.h"
#include "flags.h"
#include "jsonl.h"
#include "logprobs.h"
#include "runtime.h"

namespace multiref {

namespace {

struct ScoreConfig {
  std::string model, input, output;
  int batch_size = 8;
  DTypeChoice dtype = DTypeChoice::Auto;
  DeviceChoice device = DeviceChoice::Auto;
  int threads = 0;

  void register_flags(FlagTable& t) {
    t.add("model", &model, "model directory or hub id (resolved in the local HF cache)");
    t.add("input", &input, "jsonl: {\"input_ids\":[...]} per line, optionally \"completion_start\": k");
    t.add("output", &output, "jsonl: {\"token_logprobs\":[...]} per input line, in input order");
    t.add("batch_size", &batch_size, "sequences per forward pass (batched by length; results do not depend on it)");
    t.add_enum("dtype", &dtype, dtype_choices(), "compute dtype (auto: float32 on CPU, bfloat16 on CUDA)");
    t.add_enum("device", &device, device_choices(), "where to run");
    t.add("threads", &threads, "CPU threads (0 = one per core)");
  }
  void validate() const {
    if (model.empty()) fail("--model is required (a directory or hub id)");
    if (input.empty()) fail("--input is required (a jsonl file)");
    if (output.empty()) fail("--output is required (a jsonl file to write)");
    if (batch_size < 1) fail("--batch_size must be >= 1, got ", batch_size);
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
      if (!v.is_number_integer()) fail(where, ": input_ids must hold integers, got ", v.dump());
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
  cfg.register_flags(flags);
  flags.parse(argc, argv, 2);
  if (flags.help_requested()) {
    std::cout << flags.help();
    return 0;
  }
  cfg.validate();
  set_threads(cfg.threads);
  auto device = resolve_device(cfg.device);
  auto dtype = resolve_dtype(cfg.dtype, device);
  auto lm = load_model(cfg.model, dtype, device);
  if (lm.config.head != ModelHead::CausalLM)
    fail(cfg.model, ": is a ", lm.config.architecture, "; score needs a causal LM (use `multiref reward` for reward models)");
  auto rows = read_score_input(cfg.input, lm.config.vocab_size, lm.config.max_position_embeddings);

  // Longest first, so batches hold similar lengths and padding is small; outputs return to input order.
  std::vector<size_t> order(rows.size());
  for (size_t i = 0; i < order.size(); ++i) order[i] = i;
  std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) { return rows[a].ids.size() > rows[b].ids.size(); });
  std::vector<std::vector<float>> results(rows.size());
  torch::InferenceMode guard;
  double t0 = now_seconds();
  int64_t tokens = 0;
  for (size_t b = 0; b < order.size(); b += (size_t)cfg.batch_size) {
    size_t n = std::min(order.size() - b, (size_t)cfg.batch_size);
    int64_t T = (int64_t)rows[order[b]].ids.size();
    auto ids = torch::zeros({(int64_t)n, T}, torch::kLong);
    auto mask = torch::zeros({(int64_t)n, T}, torch::kLong);
    for (size_t i = 0; i < n; ++i) {
      const auto& r = rows[order[b + i]].ids;
      auto len = (int64_t)r.size();
      ids[(int64_t)i].narrow(0, 0, len).copy_(torch::tensor(r, torch::kLong));
      mask[(int64_t)i].narrow(0, 0, len).fill_(1);
      tokens += len;
    }
    auto lp = token_logprobs(lm.model, ids.to(device), mask.to(device)).to(torch::kCPU).contiguous();  // [n, T-1]
    for (size_t i = 0; i < n; ++i) {
      const auto& r = rows[order[b + i]];
      auto len = (int64_t)r.ids.size();
      const float* p = lp[(int64_t)i].data_ptr<float>();
      results[order[b + i]].assign(p + (r.start - 1), p + (len - 1));
    }
    double dt = now_seconds() - t0;
    std::cerr << "\rscore: " << (b + n) << "/" << rows.size() << " sequences, " << (int64_t)(tokens / std::max(dt, 1e-9))
              << " tok/s" << std::flush;
  }
  std::cerr << "\n";
  std::string out;
  for (auto& r : results) out += nlohmann::json({{"token_logprobs", r}}).dump() + "\n";
  write_file_atomic(cfg.output, out);
  return 0;
}

}  // namespace multiref
