#include "generation/generation.h"

#include <algorithm>
#include <numeric>

#include "model/batching.h"
#include "model/kv_cache.h"
#include "tokenizer/tokenizer.h"
#include "util/common.h"

namespace multiref {

std::vector<int64_t> generation_eos_ids(const std::string& model_dir, const ModelConfig& config,
                                        const Tokenizer* tokenizer) {
  auto ids = load_eos_ids(model_dir, config);
  if (tokenizer && tokenizer->eos_id && std::find(ids.begin(), ids.end(), *tokenizer->eos_id) == ids.end())
    ids.push_back(*tokenizer->eos_id);
  return ids;
}

const char* finish_reason_name(FinishReason r) {
  return r == FinishReason::Stop ? "stop" : "length";
}

void GenerationConfig::validate() const {
  if (max_new_tokens < 1) fail("--max_new_tokens must be >= 1, got ", max_new_tokens);
  sampling.validate();
  if (num_return_sequences < 1) fail("--num_return_sequences must be >= 1, got ", num_return_sequences);
  if (batch_size < 1) fail("--batch_size must be >= 1, got ", batch_size);
  if (sync_every < 1) fail("GenerationConfig::sync_every must be >= 1, got ", sync_every);
  for (auto& s : stop_strings)
    if (s.empty()) fail("--stop: stop strings must be non-empty (an empty one would end every sequence at once)");
  if (!stop_strings.empty() && !decode)
    fail(
        "--stop needs a tokenizer to read the completions' text (pass --tokenizer, or use a model directory "
        "that holds one)");
}

StopStringMatcher::StopStringMatcher(std::vector<std::string> stops,
                                     std::function<std::string(const std::vector<int64_t>&)> decode)
    : stops_(std::move(stops)), decode_(std::move(decode)) {
  // Every token decodes to at least one byte, so the last (longest stop + 1) tokens hold any occurrence
  // that ends in the newest token; one more for a newest token that is only part of a UTF-8 character.
  for (auto& s : stops_) window_ = std::max(window_, s.size() + 2);
}

bool StopStringMatcher::matches(const std::vector<int64_t>& ids) const {
  if (stops_.empty() || ids.empty()) return false;
  size_t w = std::min(ids.size(), window_);
  std::string text = decode_(std::vector<int64_t>(ids.end() - (std::ptrdiff_t)w, ids.end()));
  for (auto& s : stops_)
    if (text.find(s) != std::string::npos) return true;
  return false;
}

namespace {

// Decodes one batch of prompt groups, cached or not, appending to the result's sequences.
class BatchDecoder {
 public:
  BatchDecoder(Transformer& model, const std::vector<std::vector<int64_t>>& prompts, const GenerationConfig& cfg,
               GenerationResult& res)
      : model_(model), prompts_(prompts), cfg_(cfg), res_(res), stops_(cfg.stop_strings, cfg.decode) {
    auto w = model->model->embed_tokens->weight;
    device_ = w.device();
    kv_dtype_ = compute_dtype(w);
  }

  void report() const {
    if (cfg_.on_progress)
      cfg_.on_progress(
          {finished_, (int64_t)res_.sequences.size(), res_.stats.generated_tokens, now_seconds() - start_});
  }

  void run(const std::vector<int64_t>& batch) {
    setup(batch);
    if (!cfg_.use_cache)
      run_uncached();
    else if (cfg_.static_decode)
      run_static();
    else
      run_cached();
  }

 private:
  struct Row {
    int64_t out = 0;     // output index p * G + g (also its random stream)
    int64_t prompt = 0;  // index into prompts_
    int64_t budget = 0;  // max new tokens: max_new_tokens, or fewer where the context ends first
    bool done = false;
  };

  void setup(const std::vector<int64_t>& batch) {
    int64_t G = cfg_.num_return_sequences, ctx = model_->config.max_position_embeddings;
    batch_ = batch;
    rows_.clear();
    max_len_ = max_budget_ = 0;
    for (int64_t p : batch) max_len_ = std::max<int64_t>(max_len_, (int64_t)prompts_[(size_t)p].size());
    for (int64_t p : batch)
      for (int64_t g = 0; g < G; ++g) {
        Row r;
        r.out = p * G + g;
        r.prompt = p;
        r.budget = std::min<int64_t>(cfg_.max_new_tokens, ctx - (int64_t)prompts_[(size_t)p].size());
        max_budget_ = std::max(max_budget_, r.budget);
        rows_.push_back(r);
      }
    res_.stats.prompts += (int64_t)batch.size();
    res_.stats.sequences += (int64_t)rows_.size();
    for (int64_t p : batch) res_.stats.prompt_tokens += (int64_t)prompts_[(size_t)p].size();
  }

  // Prompts of `which` rows (indices into prompts_), left-padded to `len`: ids and mask [n, len] on CPU.
  std::pair<torch::Tensor, torch::Tensor> left_padded(const std::vector<int64_t>& which, int64_t len) const {
    std::vector<const TokenRow*> rows;
    for (int64_t w : which) rows.push_back(&prompts_[(size_t)w]);
    auto padded = pad_left(rows, len);
    return {padded.ids, padded.mask};
  }

  // One uniform per row of `live` (indices into rows_) for the row's next token.
  torch::Tensor uniforms(const std::vector<int64_t>& live) const {
    if (cfg_.sampling.greedy()) return torch::Tensor();
    auto u = torch::empty({(int64_t)live.size()}, torch::kFloat64);
    auto* up = u.data_ptr<double>();
    for (size_t i = 0; i < live.size(); ++i) {
      const Row& r = rows_[(size_t)live[i]];
      up[i] = stream_uniform(cfg_.seed, (uint64_t)(cfg_.first_sequence + r.out),
                             (uint64_t)res_.sequences[(size_t)r.out].ids.size());
    }
    return u;
  }

  // Samples from logits [n, V] (row i = rows_[live[i]]) and records the token of every unfinished row.
  // Returns the sampled tokens [n] on CPU and how many rows were still running.
  std::pair<torch::Tensor, int64_t> sample_and_accept(const torch::Tensor& logits, const std::vector<int64_t>& live,
                                                      const torch::Tensor& probs_scratch = {}) {
    auto st = sample_tokens(logits, cfg_.sampling, uniforms(live), probs_scratch);
    auto tok = st.tokens.to(torch::kCPU).contiguous();
    auto lp = st.logprobs.to(torch::kCPU).contiguous();
    const auto* tp = tok.data_ptr<int64_t>();
    const auto* lpp = lp.data_ptr<float>();
    int64_t running = 0;
    for (size_t i = 0; i < live.size(); ++i) running += accept(rows_[(size_t)live[i]], tp[i], lpp[i]);
    if (++steps_ % kProgressEvery == 0) report();
    return {tok, running};
  }

  // Appends token `t` (log-prob `lp`) to row r unless it has ended; ends it at EOS, a stop string or its budget.
  // Returns whether the row was still running.
  bool accept(Row& r, int64_t t, float lp) {
    if (r.done) return false;
    auto& c = res_.sequences[(size_t)r.out];
    c.ids.push_back(t);
    c.logprobs.push_back(lp);
    ++res_.stats.generated_tokens;
    if (cfg_.on_token) cfg_.on_token(r.out, t);
    if (std::find(cfg_.eos_ids.begin(), cfg_.eos_ids.end(), t) != cfg_.eos_ids.end() || stops_.matches(c.ids)) {
      c.finish = FinishReason::Stop;
      r.done = true;
    } else if ((int64_t)c.ids.size() >= r.budget) {
      c.finish = FinishReason::Length;
      r.done = true;
    }
    finished_ += r.done;
    return true;
  }

  // The prefill runs in chunks of rows and of time (a chunk of positions attends to the cached earlier ones),
  // so its transient activations (~rows x chunk x intermediate) and fp32 attention scores (rows x heads x
  // chunk x len) stay bounded whatever the batch size and prompt length.
  static constexpr int64_t kPrefillTimeChunk = 512, kPrefillTokens = 4096, kPrefillScores = int64_t(1) << 26;
  int64_t prefill_time_chunk() const { return std::min(max_len_, kPrefillTimeChunk); }
  int64_t prefill_row_chunk(int64_t P) const {
    int64_t tc = prefill_time_chunk();
    int64_t by_tokens = std::max<int64_t>(1, kPrefillTokens / tc);
    int64_t by_scores = std::max<int64_t>(1, kPrefillScores / (model_->config.num_attention_heads * tc * max_len_));
    return std::min({P, by_tokens, by_scores});
  }

  // The prompts into `cache` (each once, in row and time chunks), then shared by their G rows: the first
  // tokens' logits [R, V].
  torch::Tensor prefill(KVCache& cache) {
    int64_t P = (int64_t)batch_.size(), G = cfg_.num_return_sequences;

    // Prefill: each prompt once, in row and time chunks written straight into the cache.
    auto [ids, mask] = left_padded(batch_, max_len_);  // [P, L]
    std::vector<torch::Tensor> parts;
    int64_t rc = prefill_row_chunk(P), tc = prefill_time_chunk();
    for (int64_t r0 = 0; r0 < P; r0 += rc) {
      int64_t n = std::min(rc, P - r0);
      auto sub = cache.row_slice(r0, n);
      torch::Tensor h;  // [n, len, H] of the last time chunk
      for (int64_t s0 = 0; s0 < max_len_; s0 += tc) {
        int64_t len = std::min(tc, max_len_ - s0);
        h = model_->hidden_states(ids.narrow(0, r0, n).narrow(1, s0, len).to(device_),
                                  mask.narrow(0, r0, n).narrow(1, s0, len).to(device_), &sub);
      }
      parts.push_back(model_->logits_from_hidden(h.select(1, h.size(1) - 1)).to(torch::kFloat32));  // [n, V]
    }
    cache.set_length(max_len_);
    res_.stats.prefill_tokens += P * max_len_;
    auto logits = parts.size() == 1 ? parts[0] : torch::cat(parts, 0);  // [P, V]
    if (G > 1) {
      // Group sharing: prompt p's cache and next-token logits serve its rows p*G .. p*G + G - 1.
      auto rep = torch::arange(P, torch::kLong).repeat_interleave(G).to(device_);  // [R]
      cache.select_rows(rep);
      logits = logits.index_select(0, rep);
    }
    return logits;
  }

  KVCache make_cache() {
    KVCache cache(model_->config, (int64_t)rows_.size(), max_len_ + max_budget_, kv_dtype_, device_);
    res_.stats.max_cache_bytes = std::max(res_.stats.max_cache_bytes, cache.bytes());
    return cache;
  }

  void run_cached() {
    int64_t R = (int64_t)rows_.size();
    double t0 = now_seconds();
    KVCache cache = make_cache();
    auto logits = prefill(cache);
    std::vector<int64_t> live(rows_.size());  // cache row i holds rows_[live[i]]
    std::iota(live.begin(), live.end(), 0);
    // Every step's logits and sampling distribution go into these (their first n rows): at batch 64 each is
    // 39 MB for Qwen2, which glibc maps fresh on every allocation (blocks over 32 MB), so each step faulted in
    // ~120 MB of zeroed pages (with the bf16 round trip the kernel now avoids). Kernel time in a bf16 batch-64
    // decode profile: 9% before, 4% after.
    auto buffer = [&] {
      return torch::empty({R, model_->config.vocab_size}, torch::dtype(torch::kFloat32).device(device_));
    };
    auto logits_buf = buffer(), probs_buf = buffer();
    bool first = true;
    while (true) {
      auto [tok, running] = sample_and_accept(logits, live, probs_buf.narrow(0, 0, (int64_t)live.size()));
      double t = now_seconds();
      if (first) {
        res_.stats.prefill_seconds += t - t0;
        t0 = t;
        first = false;
      } else {
        res_.stats.decode_tokens += running;
        ++res_.stats.decode_steps;
      }
      std::vector<int64_t> keep;
      for (size_t i = 0; i < live.size(); ++i)
        if (!rows_[(size_t)live[i]].done) keep.push_back((int64_t)i);
      if (keep.empty()) break;
      // Finished rows leave once they are a quarter of the batch: compaction copies the cache, so doing it
      // geometrically keeps its total cost near one copy while the batch shrinks with its tail.
      if ((int64_t)(live.size() - keep.size()) * 4 >= (int64_t)live.size()) {
        auto idx = torch::tensor(keep, torch::kLong);
        cache.select_rows(idx);
        tok = tok.index_select(0, idx);
        std::vector<int64_t> next;
        for (int64_t i : keep) next.push_back(live[(size_t)i]);
        live = std::move(next);
      }
      int64_t n = (int64_t)live.size();
      auto step_mask = torch::ones({n, 1}, torch::TensorOptions().dtype(torch::kLong).device(device_));
      auto h = model_->hidden_states(tok.view({n, 1}).to(device_), step_mask, &cache);       // [n, 1, H]
      logits = model_->logits_fp32_from_hidden(h.select(1, 0), logits_buf.narrow(0, 0, n));  // [n, V]
    }
    res_.stats.decode_seconds += now_seconds() - t0;
  }

  // Fixed shapes: every row decodes every step (a finished row's tokens are drawn and ignored), the uniforms come
  // from the rows' streams on the device, tokens and log-probs collect in device buffers, and the host reads them
  // every sync_every steps, replaying accept() column by column: the same tokens, log-probs, ends and statistics
  // as run_cached (each row's computation does not depend on its batch-mates).
  void run_static() {
    int64_t R = (int64_t)rows_.size();
    double t0 = now_seconds();
    KVCache cache = make_cache();
    auto logits = prefill(cache);
    auto opts = torch::TensorOptions().device(device_);
    std::vector<int64_t> outs;
    for (auto& r : rows_) outs.push_back(cfg_.first_sequence + r.out);
    auto streams = torch::tensor(outs, torch::kLong).to(device_),
         position = torch::zeros({R}, opts.dtype(torch::kLong));
    auto toks = torch::zeros({R, max_budget_}, opts.dtype(torch::kLong));
    auto lps = torch::zeros({R, max_budget_}, opts.dtype(torch::kFloat32));
    auto step_mask = torch::ones({R, 1}, opts.dtype(torch::kLong));
    auto logits_buf = torch::empty({R, model_->config.vocab_size}, opts.dtype(torch::kFloat32));
    auto probs_buf = torch::empty_like(logits_buf);
    int64_t synced = 0;  // columns the host has read
    auto sync = [&](int64_t upto) {
      int64_t n = upto - synced;
      auto t = toks.narrow(1, synced, n).cpu().contiguous();
      auto l = lps.narrow(1, synced, n).cpu().contiguous();
      const int64_t* tp = t.data_ptr<int64_t>();
      const float* lp = l.data_ptr<float>();
      for (int64_t col = 0; col < n; ++col) {
        int64_t running = 0;
        for (int64_t i = 0; i < R; ++i) running += accept(rows_[(size_t)i], tp[i * n + col], lp[i * n + col]);
        if (synced + col > 0 && running > 0) {
          res_.stats.decode_tokens += running;
          ++res_.stats.decode_steps;
        }
        if (++steps_ % kProgressEvery == 0) report();
      }
      synced = upto;
      return std::all_of(rows_.begin(), rows_.end(), [](const Row& r) { return r.done; });
    };
    double t_first = t0;
    for (int64_t step = 0; step < max_budget_; ++step) {
      torch::Tensor u;
      if (!cfg_.sampling.greedy()) u = stream_uniforms(cfg_.seed, streams, position.fill_(step));
      auto st = sample_tokens(logits, cfg_.sampling, u, probs_buf, /*may_sync=*/false);
      toks.select(1, step).copy_(st.tokens);
      lps.select(1, step).copy_(st.logprobs);
      if (step == 0) {
        t_first = now_seconds();
        res_.stats.prefill_seconds += t_first - t0;
      }
      bool last = step + 1 == max_budget_;
      if ((step + 1) % cfg_.sync_every == 0 || last)
        if (sync(step + 1) || last) break;
      auto h = model_->hidden_states(st.tokens.view({R, 1}), step_mask, &cache);  // [R, 1, H]
      logits = model_->logits_fp32_from_hidden(h.select(1, 0), logits_buf);       // [R, V]
    }
    res_.stats.decode_seconds += now_seconds() - t_first;
  }

  // The oracle: every step runs the whole left-padded sequence (no cache, no group sharing). Finished
  // rows stay in the batch, right-padded with masked tokens.
  void run_uncached() {
    int64_t R = (int64_t)rows_.size();
    std::vector<int64_t> prompt_of(rows_.size());
    for (size_t i = 0; i < rows_.size(); ++i) prompt_of[i] = rows_[i].prompt;
    auto [pids, pmask] = left_padded(prompt_of, max_len_);  // [R, L]
    std::vector<int64_t> live(rows_.size());
    std::iota(live.begin(), live.end(), 0);
    double t0 = now_seconds();
    for (int64_t step = 0;; ++step) {
      auto ids = torch::zeros({R, max_len_ + step}, torch::kLong),
           mask = torch::zeros({R, max_len_ + step}, torch::kLong);
      ids.narrow(1, 0, max_len_).copy_(pids);
      mask.narrow(1, 0, max_len_).copy_(pmask);
      for (int64_t i = 0; i < R; ++i) {
        const auto& gen = res_.sequences[(size_t)rows_[(size_t)i].out].ids;
        int64_t n = (int64_t)gen.size();
        if (n == 0) continue;
        ids[i].narrow(0, max_len_, n).copy_(torch::tensor(gen, torch::kLong));
        mask[i].narrow(0, max_len_, n).fill_(1);
      }
      auto h = model_->hidden_states(ids.to(device_), mask.to(device_));                               // [R, T, H]
      auto logits = model_->logits_from_hidden(h.select(1, max_len_ + step - 1)).to(torch::kFloat32);  // [R, V]
      auto running = sample_and_accept(logits, live).second;
      double t = now_seconds();
      if (step == 0) {
        res_.stats.prefill_seconds += t - t0;
        res_.stats.prefill_tokens += R * max_len_;
        t0 = t;
      } else {
        res_.stats.decode_tokens += running;
        ++res_.stats.decode_steps;
      }
      if (std::all_of(rows_.begin(), rows_.end(), [](const Row& r) { return r.done; })) break;
    }
    res_.stats.decode_seconds += now_seconds() - t0;
  }

  Transformer& model_;
  const std::vector<std::vector<int64_t>>& prompts_;
  const GenerationConfig& cfg_;
  GenerationResult& res_;
  StopStringMatcher stops_;
  torch::Device device_{torch::kCPU};
  torch::ScalarType kv_dtype_ = torch::kFloat32;
  std::vector<int64_t> batch_;  // prompt indices of this batch
  std::vector<Row> rows_;       // rows of this batch, prompt-major
  int64_t max_len_ = 0, max_budget_ = 0;
  static constexpr int64_t kProgressEvery = 16;  // steps between progress reports
  int64_t steps_ = 0, finished_ = 0;
  double start_ = now_seconds();
};

void validate_prompts(const std::vector<std::vector<int64_t>>& prompts, const ModelConfig& c) {
  for (size_t i = 0; i < prompts.size(); ++i) {
    const auto& p = prompts[i];
    if (p.empty()) fail("prompt ", i, " is empty: generation needs at least one token to condition on");
    if ((int64_t)p.size() >= c.max_position_embeddings)
      fail("prompt ", i, " has ", p.size(), " tokens, but the model's context (max_position_embeddings) is ",
           c.max_position_embeddings, " and must leave room for at least one new token: shorten the prompt");
    for (int64_t id : p)
      if (id < 0 || id >= c.vocab_size)
        fail("prompt ", i, ": token id ", id, " is outside the model's vocabulary [0, ", c.vocab_size, ")");
  }
}

}  // namespace

GenerationResult generate(Transformer& model, const std::vector<std::vector<int64_t>>& prompts,
                          const GenerationConfig& cfg) {
  cfg.validate();
  if (model->config.head != ModelHead::CausalLM)
    fail("generation needs a causal LM; this model is a ", model->config.architecture);
  validate_prompts(prompts, model->config);
  torch::InferenceMode guard;
  int64_t G = cfg.num_return_sequences;
  GenerationResult res;
  res.sequences.resize(prompts.size() * (size_t)G);

  // Longest prompts first, so each batch pads little; results keep input order.
  std::vector<size_t> lengths;
  for (auto& p : prompts) lengths.push_back(p.size());
  size_t per_batch = (size_t)std::max<int64_t>(1, cfg.batch_size / G);
  BatchDecoder dec(model, prompts, cfg, res);
  for (const auto& b : longest_first_batches(lengths, per_batch)) {
    std::vector<int64_t> batch(b.begin(), b.end());
    dec.run(batch);
    dec.report();
  }
  return res;
}

}  // namespace multiref
