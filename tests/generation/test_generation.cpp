// Generation: the KV-cached engine against the uncached oracle (greedy and sampled, left-padded batches,
// group sharing, compaction of finished rows, bf16), log-probs against `score`'s, seeds, EOS, stop strings,
// the context limit and bad prompts; the KV cache's row operations.
#include <map>

#include "generation/generation.h"
#include "io/hf_model.h"
#include "model/kv_cache.h"
#include "model/logprobs.h"
#include "test_util.h"
#include "tokenizer/tokenizer.h"

using namespace multiref;
using namespace multiref::testing;

namespace {

// A tiny random model. initializer_range 0.2 (HF uses 0.02) makes next-token distributions peaked like a
// trained model's rather than nearly uniform, so greedy choices are not decided by rounding noise.
Transformer tiny_model(const std::string& arch, int64_t vocab = 0, int64_t ctx = 0, uint64_t seed = 1) {
  auto c = preset_config(arch, "tiny");
  if (vocab > 0) c.vocab_size = vocab;
  if (ctx > 0) c.max_position_embeddings = ctx;
  Transformer m(c, torch::TensorOptions().dtype(torch::kFloat32));
  init_weights(m, seed, 0.2);
  m->eval();
  return m;
}

std::vector<std::vector<int64_t>> some_prompts(int64_t vocab) {
  std::vector<std::vector<int64_t>> p = {
      {5, 17, 3}, {9}, {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12}, {40, 41, 42, 43, 44, 45, 46}};
  for (auto& s : p)
    for (auto& t : s) t %= vocab;
  return p;
}

GenerationConfig greedy(int64_t max_new) {
  GenerationConfig g;
  g.max_new_tokens = max_new;
  g.sampling.temperature = 0;
  return g;
}

void expect_same_tokens(const GenerationResult& a, const GenerationResult& b, const std::string& what,
                        double logprob_tol = 1e-4) {
  ASSERT_EQ(a.sequences.size(), b.sequences.size()) << what;
  for (size_t i = 0; i < a.sequences.size(); ++i) {
    EXPECT_EQ(a.sequences[i].ids, b.sequences[i].ids) << what << ": sequence " << i;
    EXPECT_EQ(a.sequences[i].finish, b.sequences[i].finish) << what << ": sequence " << i;
    ASSERT_EQ(a.sequences[i].logprobs.size(), b.sequences[i].logprobs.size()) << what;
    for (size_t t = 0; t < a.sequences[i].logprobs.size(); ++t)
      EXPECT_NEAR(a.sequences[i].logprobs[t], b.sequences[i].logprobs[t], logprob_tol)
          << what << ": seq " << i << " t " << t;
  }
}

GenerationResult run(Transformer& m, const std::vector<std::vector<int64_t>>& prompts, GenerationConfig g, bool cache) {
  g.use_cache = cache;
  return generate(m, prompts, g);
}

}  // namespace

TEST(Generation, CachedGreedyEqualsUncachedInLeftPaddedBatches) {
  for (std::string arch : {"qwen2", "llama"}) {
    auto m = tiny_model(arch);
    auto prompts = some_prompts(m->config.vocab_size);
    auto oracle = run(m, prompts, greedy(24), false);
    for (int64_t bs : {1, 3, 64}) {
      auto g = greedy(24);
      g.batch_size = bs;
      expect_same_tokens(run(m, prompts, g, true), oracle, arch + " batch " + std::to_string(bs));
    }
    for (auto& s : oracle.sequences) {
      EXPECT_EQ(s.ids.size(), 24u);
      EXPECT_EQ(s.finish, FinishReason::Length);
    }
  }
}

TEST(Generation, CachedSamplingEqualsUncachedWithGroupSharing) {
  // Each sequence draws from its own stream, so the cached engine with one shared prefill per prompt must
  // reproduce the oracle, which runs every sample's full sequence separately.
  auto m = tiny_model("qwen2");
  auto prompts = some_prompts(m->config.vocab_size);
  GenerationConfig g;
  g.max_new_tokens = 16;
  g.num_return_sequences = 3;
  g.seed = 42;
  for (auto sp : {SamplingParams{1.0, 0, 1.0, 0.0}, SamplingParams{0.7, 20, 0.9, 0.05}}) {
    g.sampling = sp;
    auto oracle = run(m, prompts, g, false);
    for (int64_t bs : {3, 7, 64}) {
      g.batch_size = bs;
      auto cached = run(m, prompts, g, true);
      expect_same_tokens(cached, oracle, cat("T=", sp.temperature, " batch ", bs));
    }
    // Samples of one prompt differ from each other (they are G draws, not G copies).
    EXPECT_NE(oracle.sequences[0].ids, oracle.sequences[1].ids);
  }
  // Greedy samples of a group are identical.
  g = greedy(10);
  g.num_return_sequences = 4;
  auto res = run(m, prompts, g, true);
  for (size_t p = 0; p < prompts.size(); ++p)
    for (size_t s = 1; s < 4; ++s) EXPECT_EQ(res.sequences[p * 4 + s].ids, res.sequences[p * 4].ids);
}

TEST(Generation, FinishedRowsLeaveTheBatchWithoutChangingTheOthers) {
  // A small vocabulary with several eos ids ends rows at scattered steps: the cached engine compacts its
  // batch as they finish, the oracle keeps every row; the outputs must agree.
  auto m = tiny_model("llama", /*vocab=*/40);
  std::vector<std::vector<int64_t>> prompts;
  for (int64_t i = 0; i < 12; ++i) prompts.push_back({i % 40, (3 * i + 1) % 40, (7 * i + 2) % 40});
  GenerationConfig g;
  g.max_new_tokens = 40;
  g.num_return_sequences = 2;
  g.eos_ids = {3, 11, 29};
  g.seed = 9;
  auto oracle = run(m, prompts, g, false);
  auto cached = run(m, prompts, g, true);
  expect_same_tokens(cached, oracle, "eos-compacted");
  std::set<size_t> lengths;
  int stopped = 0;
  for (auto& s : cached.sequences) {
    lengths.insert(s.ids.size());
    if (s.finish == FinishReason::Stop) {
      ++stopped;
      EXPECT_TRUE(s.ids.back() == 3 || s.ids.back() == 11 || s.ids.back() == 29);
      for (size_t t = 0; t + 1 < s.ids.size(); ++t) EXPECT_FALSE(s.ids[t] == 3 || s.ids[t] == 11 || s.ids[t] == 29);
    } else {
      EXPECT_EQ(s.ids.size(), 40u);
    }
  }
  EXPECT_GE(stopped, 8) << "the test needs rows that finish early";
  EXPECT_GE(lengths.size(), 5u) << "the test needs rows finishing at different steps";
}

TEST(Generation, Bf16CachedMatchesUncached) {
  // On CPU bf16 weights multiply in fp32 and the cache holds fp32 keys/values, so cached and uncached
  // decoding differ only in summation order inside the matmuls (one row vs the whole sequence), which the
  // per-layer rounding to bf16 can turn into a bf16 ulp on a logit. So the claim tested: the two agree token
  // for token, except that from a step whose top two logits lie within bf16 rounding of each other the
  // tie may be broken either way (after which the sequences legitimately differ). Log-probs agree to bf16
  // precision. (On the machine this was written on, every sequence is identical.)
  auto m = tiny_model("qwen2");
  m->to(torch::kBFloat16);
  auto prompts = some_prompts(m->config.vocab_size);
  auto g = greedy(20);
  g.num_return_sequences = 2;
  auto cached = run(m, prompts, g, true);
  auto oracle = run(m, prompts, g, false);
  const double tie = 0.05;  // logits here are O(1-10); bf16 keeps 8 bits, and a few roundings compound
  int near_ties = 0;
  double min_margin = 1e9;
  for (size_t i = 0; i < cached.sequences.size(); ++i) {
    const auto& c = cached.sequences[i];
    const auto& o = oracle.sequences[i];
    ASSERT_EQ(c.ids.size(), o.ids.size());
    std::vector<int64_t> full = prompts[i / 2];
    full.insert(full.end(), o.ids.begin(), o.ids.end());
    auto ids = torch::tensor(full, torch::kLong).unsqueeze(0);
    torch::NoGradGuard ng;
    auto logits = m->forward(ids, torch::ones_like(ids))[0].to(torch::kFloat32);  // [T, V]
    int64_t P = (int64_t)prompts[i / 2].size();
    for (size_t t = 0; t < o.ids.size(); ++t) {
      auto top2 = std::get<0>(logits[P - 1 + (int64_t)t].topk(2));
      double margin = (top2[0] - top2[1]).item<double>();
      min_margin = std::min(min_margin, margin);
      if (c.ids[t] != o.ids[t]) {
        EXPECT_LT(margin, tie) << "sequence " << i << " step " << t
                               << ": cached and uncached disagree on a clear choice";
        ++near_ties;
        break;
      }
      EXPECT_NEAR(c.logprobs[t], o.logprobs[t], 0.05) << "sequence " << i << " step " << t;
    }
  }
  EXPECT_LE(near_ties, 2) << "near-ties must be rare (smallest top-2 margin seen: " << min_margin << ")";
}

TEST(Generation, LogprobsEqualScore) {
  for (std::string arch : {"qwen2", "llama"}) {
    auto m = tiny_model(arch);
    auto prompts = some_prompts(m->config.vocab_size);
    GenerationConfig g;
    g.max_new_tokens = 12;
    g.num_return_sequences = 2;
    // Tempered and truncated sampling (log-probs stay the model's own), and plain sampling (log-probs taken
    // from the sampling distribution itself).
    for (auto sp : {SamplingParams{0.5, 30, 0.9, 0.0}, SamplingParams{1.0, 0, 1.0, 0.0}}) {
      g.sampling = sp;
      g.seed = 3;
      auto res = generate(m, prompts, g);
      torch::NoGradGuard ng;
      for (size_t i = 0; i < res.sequences.size(); ++i) {
        const auto& c = res.sequences[i];
        const auto& p = prompts[i / 2];
        std::vector<int64_t> full = p;
        full.insert(full.end(), c.ids.begin(), c.ids.end());
        auto ids = torch::tensor(full, torch::kLong).unsqueeze(0);
        auto lp = token_logprobs(m, ids, torch::ones_like(ids))[0];  // [T-1]
        for (size_t t = 0; t < c.ids.size(); ++t)
          EXPECT_NEAR(c.logprobs[t], lp[(int64_t)(p.size() - 1 + t)].item<double>(), 1e-4)
              << arch << " T=" << sp.temperature << " seq " << i << " t " << t;
      }
    }
  }
}

TEST(Generation, SameSeedSameOutputWhateverTheBatch) {
  auto m = tiny_model("qwen2");
  auto prompts = some_prompts(m->config.vocab_size);
  GenerationConfig g;
  g.max_new_tokens = 10;
  g.num_return_sequences = 2;
  g.seed = 123;
  auto a = generate(m, prompts, g);
  g.batch_size = 2;
  auto b = generate(m, prompts, g);
  expect_same_tokens(a, b, "same seed, batch 64 vs 2");
  g.seed = 124;
  auto c = generate(m, prompts, g);
  int differ = 0;
  for (size_t i = 0; i < a.sequences.size(); ++i) differ += a.sequences[i].ids != c.sequences[i].ids;
  EXPECT_GE(differ, 6) << "another seed must give other samples";
}

TEST(Generation, EosEndsTheSequenceAndIsKept) {
  auto m = tiny_model("qwen2");
  std::vector<std::vector<int64_t>> prompts = {{7, 8, 9}};
  auto free_run = generate(m, prompts, greedy(20)).sequences[0].ids;
  ASSERT_EQ(free_run.size(), 20u);
  int64_t eos = free_run[5];
  size_t first = std::find(free_run.begin(), free_run.end(), eos) - free_run.begin();
  auto g = greedy(20);
  g.eos_ids = {999999, eos};
  auto res = generate(m, prompts, g).sequences[0];
  EXPECT_EQ(res.finish, FinishReason::Stop);
  EXPECT_EQ(res.ids, std::vector<int64_t>(free_run.begin(), free_run.begin() + (std::ptrdiff_t)first + 1));
  EXPECT_EQ(res.logprobs.size(), res.ids.size());
}

TEST(Generation, StopStringsEndTheSequence) {
  auto m = tiny_model("qwen2");
  std::vector<std::vector<int64_t>> prompts = {{7, 8, 9}, {100, 3}};
  // A toy detokenizer: token t is the text "<t>".
  auto decode = [](const std::vector<int64_t>& ids) {
    std::string s;
    for (auto t : ids) s += "<" + std::to_string(t) + ">";
    return s;
  };
  auto free_run = generate(m, prompts, greedy(20));
  const auto& ref = free_run.sequences[0].ids;
  // Stop at the text of tokens 4..5 (which spans a token boundary), or at an unrelated string.
  std::string stop = decode({ref[4], ref[5]});
  auto g = greedy(20);
  g.stop_strings = {"never-appears", stop};
  g.decode = decode;
  auto res = generate(m, prompts, g);
  std::string text = decode(ref);
  size_t end = text.find(stop) + stop.size();
  size_t n = 0;
  while (decode(std::vector<int64_t>(ref.begin(), ref.begin() + (std::ptrdiff_t)n)).size() < end) ++n;
  EXPECT_EQ(res.sequences[0].finish, FinishReason::Stop);
  EXPECT_EQ(res.sequences[0].ids, std::vector<int64_t>(ref.begin(), ref.begin() + (std::ptrdiff_t)n));
  // The other prompt is unaffected unless its own text holds the stop string.
  if (decode(free_run.sequences[1].ids).find(stop) == std::string::npos) {
    EXPECT_EQ(res.sequences[1].ids, free_run.sequences[1].ids);
    EXPECT_EQ(res.sequences[1].finish, FinishReason::Length);
  }
  g.decode = nullptr;
  expect_error([&] { generate(m, prompts, g); }, {"--stop", "tokenizer"});
}

TEST(Generation, StopStringMatcherSeesOnlyTheTail) {
  int calls = 0;
  size_t longest = 0;
  StopStringMatcher sm({"ab", "xyz"}, [&](const std::vector<int64_t>& ids) {
    ++calls;
    longest = std::max(longest, ids.size());
    std::string s;
    for (auto t : ids) s += (char)t;
    return s;
  });
  std::vector<int64_t> ids;
  for (char c : std::string("qqqqqqqqqqqqqqqqqqqqxy")) {
    ids.push_back(c);
    EXPECT_FALSE(sm.matches(ids));
  }
  ids.push_back('z');
  EXPECT_TRUE(sm.matches(ids));
  EXPECT_LE(longest, 5u) << "only the tail that can hold a new occurrence is decoded";
}

TEST(Generation, LongPromptsPrefillInTimeChunks) {
  // Prompts beyond one prefill chunk (512 positions) are prefilled chunk by chunk against the cache; a short
  // prompt in the same batch is all padding in the first chunk.
  auto m = tiny_model("qwen2");
  std::vector<std::vector<int64_t>> prompts = {{}, {4, 5, 6}, {}};
  for (int64_t t = 0; t < 700; ++t) prompts[0].push_back((t * 7 + 3) % m->config.vocab_size);
  for (int64_t t = 0; t < 530; ++t) prompts[2].push_back((t * 5 + 1) % m->config.vocab_size);
  auto g = greedy(6);
  expect_same_tokens(run(m, prompts, g, true), run(m, prompts, g, false), "long prompts");
}

TEST(Generation, ContextLimitEndsWithLength) {
  auto m = tiny_model("llama", 0, /*ctx=*/16);
  std::vector<std::vector<int64_t>> prompts = {{1, 2, 3, 4, 5, 6, 7, 8, 9, 10}, {4, 5}};
  auto g = greedy(50);
  auto cached = generate(m, prompts, g);
  EXPECT_EQ(cached.sequences[0].ids.size(), 6u);  // 10 + 6 = the context of 16
  EXPECT_EQ(cached.sequences[1].ids.size(), 14u);
  EXPECT_EQ(cached.sequences[0].finish, FinishReason::Length);
  expect_same_tokens(cached, run(m, prompts, g, false), "at the context limit");
}

TEST(Generation, BadPromptsAndSettingsAreClearErrors) {
  auto m = tiny_model("qwen2", 0, /*ctx=*/16);
  auto g = greedy(4);
  expect_error([&] { generate(m, {{1, 2}, {}}, g); }, {"prompt 1", "empty"});
  expect_error([&] { generate(m, {std::vector<int64_t>(16, 1)}, g); }, {"prompt 0", "16 tokens", "context", "16"});
  expect_error([&] { generate(m, {{1, 512}}, g); }, {"token id 512", "vocabulary"});
  g.sampling.temperature = -1;
  expect_error([&] { generate(m, {{1}}, g); }, {"--temperature"});
  g = greedy(4);
  g.sampling.top_p = 0;
  expect_error([&] { generate(m, {{1}}, g); }, {"--top_p", "(0, 1]"});
  g = greedy(0);
  expect_error([&] { generate(m, {{1}}, g); }, {"--max_new_tokens"});
  g = greedy(4);
  g.num_return_sequences = 0;
  expect_error([&] { generate(m, {{1}}, g); }, {"--num_return_sequences"});
}

TEST(Generation, StatsCountTokens) {
  auto m = tiny_model("qwen2");
  auto prompts = some_prompts(m->config.vocab_size);
  auto g = greedy(8);
  g.num_return_sequences = 2;
  auto res = generate(m, prompts, g);
  EXPECT_EQ(res.stats.prompts, 4);
  EXPECT_EQ(res.stats.sequences, 8);
  EXPECT_EQ(res.stats.prompt_tokens, 3 + 1 + 12 + 7);
  EXPECT_EQ(res.stats.generated_tokens, 64);
  EXPECT_EQ(res.stats.decode_tokens, 56);  // every token after each sequence's first
  EXPECT_EQ(res.stats.prefill_tokens, 4 * 12) << "one prefill per prompt, not per sample";
  EXPECT_GT(res.stats.max_cache_bytes, 0);
}

TEST(KVCache, RowSelectionAndSlices) {
  auto c = preset_config("qwen2", "tiny");
  c.num_hidden_layers = 1;
  KVCache cache(c, 4, 8, torch::kFloat32, torch::kCPU);
  int64_t KV = c.num_key_value_heads, D = c.head_dim;
  // Prefill rows 0..1 through a slice: row r holds value r + 1 at positions 0..2.
  auto sub = cache.row_slice(0, 2);
  auto mask = torch::tensor({{0, 1, 1}, {1, 1, 1}}, torch::kLong);
  auto [keys, pos] = sub.begin_step(mask);
  EXPECT_TRUE(pos.equal(torch::tensor({{0, 0, 1}, {0, 1, 2}}, torch::kLong)));
  auto k = torch::arange(1, 3, torch::kFloat32).view({2, 1, 1, 1}).expand({2, KV, 3, D}).contiguous();
  auto [kk, vv] = sub.update(0, k, k * 10);
  EXPECT_EQ(kk.sizes(), torch::IntArrayRef({2, KV, 3, D}));
  sub.end_step();
  cache.set_length(3);
  // Group sharing: rows 0,0,1,1.
  cache.select_rows(torch::tensor({0, 0, 1, 1}, torch::kLong));
  EXPECT_EQ(cache.rows(), 4);
  auto [km, p2] = cache.begin_step(torch::ones({4, 1}, torch::kLong));
  EXPECT_TRUE(p2.view({-1}).equal(torch::tensor({2, 2, 3, 3}, torch::kLong)))
      << "next RoPE positions count real tokens";
  EXPECT_TRUE(km.narrow(1, 0, 3).equal(torch::tensor({{0, 1, 1}, {0, 1, 1}, {1, 1, 1}, {1, 1, 1}}, torch::kLong)));
  auto step = torch::full({4, KV, 1, D}, 7.0f);
  auto [k4, v4] = cache.update(0, step, step);
  cache.end_step();
  EXPECT_EQ(k4.size(2), 4);
  for (int64_t r = 0; r < 4; ++r) {
    EXPECT_EQ(k4[r][0][1][0].item<float>(), (float)(r / 2 + 1));
    EXPECT_EQ(v4[r][0][2][0].item<float>(), (float)(10 * (r / 2 + 1)));
    EXPECT_EQ(k4[r][0][3][0].item<float>(), 7.0f);
  }
  // Compaction: keep rows 1 and 2.
  cache.select_rows(torch::tensor({1, 2}, torch::kLong));
  auto [km2, p3] = cache.begin_step(torch::ones({2, 1}, torch::kLong));
  EXPECT_TRUE(p3.view({-1}).equal(torch::tensor({3, 4}, torch::kLong)));
  auto [k5, v5] = cache.update(0, torch::zeros({2, KV, 1, D}), torch::zeros({2, KV, 1, D}));
  cache.end_step();
  EXPECT_EQ(k5[0][0][1][0].item<float>(), 1.0f);
  EXPECT_EQ(k5[1][0][1][0].item<float>(), 2.0f);
  EXPECT_EQ(cache.length(), 5);
  expect_error([&] { cache.begin_step(torch::ones({2, 4}, torch::kLong)); }, {"capacity"});
}

// One EOS rule for every generating command: config.json's eos ids, then generation_config.json's, then the
// tokenizer's EOS (Qwen2.5's tokenizer_config says <|im_end|> = 151645), each once.
TEST(GenerationEos, ConfigThenGenerationConfigThenTokenizer) {
  TempDir tmp;
  std::string d = fixture_dir() + "/tokenizers";
  std::filesystem::create_symlink(d + "/qwen2/vocab.json", tmp / "vocab.json");
  std::filesystem::create_symlink(d + "/qwen2/merges.txt", tmp / "merges.txt");
  std::filesystem::create_symlink(d + "/qwen2.5/tokenizer_config.json", tmp / "tokenizer_config.json");
  auto tok = Tokenizer::load(tmp.path);
  ASSERT_EQ(tok->eos_id, std::optional<int64_t>(151645));
  ModelConfig c;
  c.eos_token_ids = {151643};
  EXPECT_EQ(generation_eos_ids(tmp.path, c, nullptr), (std::vector<int64_t>{151643}));
  EXPECT_EQ(generation_eos_ids(tmp.path, c, tok.get()), (std::vector<int64_t>{151643, 151645}));
  tmp.write("generation_config.json", R"({"eos_token_id": [151645, 151643, 7]})");
  EXPECT_EQ(generation_eos_ids(tmp.path, c, nullptr), (std::vector<int64_t>{151643, 151645, 7}));
  EXPECT_EQ(generation_eos_ids(tmp.path, c, tok.get()), (std::vector<int64_t>{151643, 151645, 7}));
}

// Issue 20: the static decode loop (fixed shapes, uniforms drawn as tensors, the host reading every k steps) gives
// exactly the compacting loop's tokens, finish reasons and token counts, and its log-probs to the last bits —
// greedy and sampled (temperature, top-k, top-p, min-p), G > 1, EOS, stop strings, context limits, several batch
// sizes and sync intervals.
TEST(Generation, StaticDecodeEqualsTheCompactingLoopExactly) {
  auto m = tiny_model("qwen2", 0, 40);  // a 40-token context: the long prompt's budget ends before max_new_tokens
  auto prompts = some_prompts(m->config.vocab_size);
  auto decode = [](const std::vector<int64_t>& ids) {
    std::string s;
    for (auto t : ids) s += "<" + std::to_string(t) + ">";
    return s;
  };
  struct Case {
    std::string name;
    GenerationConfig g;
  };
  std::vector<Case> cases;
  auto base = [&](double temperature) {
    GenerationConfig g;
    g.max_new_tokens = 30;
    g.sampling.temperature = temperature;
    g.seed = 11;
    return g;
  };
  cases.push_back({"greedy", base(0)});
  cases.push_back({"sampled", base(1.0)});
  {
    auto g = base(0.8);
    g.sampling.top_k = 20;
    g.sampling.top_p = 0.9;
    g.num_return_sequences = 3;
    cases.push_back({"top-k top-p G=3", g});
  }
  {
    auto g = base(1.2);
    g.sampling.min_p = 0.05;
    g.num_return_sequences = 2;
    g.first_sequence = 17;
    cases.push_back({"min-p G=2 offset streams", g});
  }
  // EOS: the most common token of a free run ends sequences at different steps.
  {
    auto g = base(1.0);
    auto free = generate(m, prompts, g);
    std::map<int64_t, int> count;
    for (auto& s : free.sequences)
      for (auto t : s.ids) ++count[t];
    int64_t eos =
        std::max_element(count.begin(), count.end(), [](auto& a, auto& b) { return a.second < b.second; })->first;
    g.eos_ids = {eos};
    cases.push_back({"eos", g});
    g.stop_strings = {"<" + std::to_string(free.sequences[1].ids.at(3)) + ">"};
    g.decode = decode;
    cases.push_back({"eos and stop strings", g});
  }
  int checked = 0;
  for (auto& c : cases)
    for (int64_t batch : {1, 3, 64})
      for (int64_t k : {1, 4, 64}) {
        auto g = c.g;
        g.batch_size = batch * g.num_return_sequences;
        auto compacting = generate(m, prompts, g);
        g.static_decode = true;
        g.sync_every = k;
        auto fixed = generate(m, prompts, g);
        std::string what = c.name + ", batch " + std::to_string(batch) + ", sync every " + std::to_string(k);
        ASSERT_EQ(compacting.sequences.size(), fixed.sequences.size()) << what;
        for (size_t i = 0; i < fixed.sequences.size(); ++i) {
          EXPECT_EQ(compacting.sequences[i].ids, fixed.sequences[i].ids) << what << ": sequence " << i;
          // Log-probs to rounding: when the compacting loop drops finished rows, its matmuls run at another row
          // count (the decoding kernel has a <= 8-row and a 16-row-panel regime), which may move the last bits.
          ASSERT_EQ(compacting.sequences[i].logprobs.size(), fixed.sequences[i].logprobs.size()) << what;
          for (size_t t = 0; t < fixed.sequences[i].logprobs.size(); ++t)
            EXPECT_NEAR(compacting.sequences[i].logprobs[t], fixed.sequences[i].logprobs[t], 1e-5)
                << what << ": sequence " << i << " token " << t;
          EXPECT_EQ(compacting.sequences[i].finish, fixed.sequences[i].finish) << what << ": sequence " << i;
        }
        EXPECT_EQ(compacting.stats.generated_tokens, fixed.stats.generated_tokens) << what;
        EXPECT_EQ(compacting.stats.decode_tokens, fixed.stats.decode_tokens) << what;
        ++checked;
      }
  EXPECT_EQ(checked, 54);
}
