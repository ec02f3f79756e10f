#include "rl/grpo_trainer.h"

#include <filesystem>
#include <iostream>
#include <random>

#include "data/epoch_sampler.h"
#include "data/prompt_data.h"
#include "eval/eval_gsm8k.h"
#include "eval/eval_task.h"
#include "eval/task_rewards.h"
#include "generation/generation.h"
#include "io/hf_model.h"
#include "io/hub.h"
#include "model/batching.h"
#include "model/logprobs.h"
#include "objectives/objectives.h"
#include "tokenizer/chat_template.h"
#include "tokenizer/tokenizer.h"
#include "train/trainer_flags.h"
#include "util/common.h"

namespace multiref {

namespace {

// Log-probs of the completion tokens only [N, C] (= columns P-1.. of token_logprobs): prompt positions never go
// through the vocabulary projection, which is most of a scoring pass's time at Qwen's vocabulary.
torch::Tensor completion_logprobs(Transformer& model, const torch::Tensor& hidden, const torch::Tensor& ids,
                                  const torch::Tensor& mask, int64_t prompt_len) {
  int64_t C1 = ids.size(1) - prompt_len + 1;
  return token_logprobs_from_hidden(model, hidden.narrow(1, prompt_len - 1, C1), ids.narrow(1, prompt_len - 1, C1),
                                    mask.narrow(1, prompt_len - 1, C1));
}

// Exact FKL: completions sampled from the references (reference i with probability beta_i), drawn once.
struct RefSample {
  std::vector<int64_t> prompt, completion;
  std::vector<float> lp;  // log pi_i(completion | prompt) from the sampler (untempered)
  int64_t ref = 0;
};

}  // namespace

struct GrpoTrainer::Impl {
  GrpoConfig cfg;
  torch::Device device = torch::kCPU;
  torch::ScalarType dtype = torch::kFloat32;
  LoadedModel policy;
  std::vector<LoadedModel> refs;
  std::shared_ptr<const Tokenizer> tok;  // null for a policy without one (prompt_ids data)
  std::string tok_dir;                   // where the tokenizer (and generation_config.json) are copied from
  std::optional<ChatFormat> chat;
  std::string system_prompt;
  std::vector<PromptRow> train, test;
  std::vector<std::unique_ptr<TaskPrompt>> train_prompts;  // made on first use, one per train row
  std::unique_ptr<EpochSampler> sampler;
  std::unique_ptr<TaskRewards> rewards;
  std::vector<int64_t> eos_ids;
  int64_t data_pos = 0;
  std::vector<RefSample> pool;
  // The generation round the optimizer steps are using, and how many of its num_iterations steps have run.
  std::unique_ptr<Rollout> current;
  int iterations_done = 0;

  TaskPrompt make_prompt(const PromptRow& row) const {
    return task_prompt(row, tok.get(), chat ? &*chat : nullptr, system_prompt, cfg.max_prompt_length);
  }
  const TaskPrompt& train_prompt(size_t i) {
    if (!train_prompts[i]) train_prompts[i] = std::make_unique<TaskPrompt>(make_prompt(train[i]));
    return *train_prompts[i];
  }

  GenerationConfig gen_config(uint64_t seed, int64_t G) const {
    GenerationConfig g;
    g.max_new_tokens = cfg.max_completion_length;
    g.sampling.temperature = cfg.temperature;
    g.sampling.top_p = cfg.top_p;
    g.num_return_sequences = G;
    g.eos_ids = eos_ids;
    g.seed = seed;
    g.batch_size = std::max<int64_t>(G, 32);
    return g;
  }

  void build_pool() {
    if (cfg.penalty != KLPenalty::FklRefSamples || !pool.empty()) return;
    double t0 = now_seconds();
    std::mt19937_64 rng(stream_seed((uint64_t)cfg.seed, -1, 7));
    std::discrete_distribution<int64_t> pick(cfg.weights.begin(), cfg.weights.end());
    std::vector<std::vector<std::vector<int64_t>>> per_ref(refs.size());
    for (int i = 0; i < cfg.fkl_pool_size; ++i) {
      const auto& prompt = train_prompt((size_t)(rng() % train.size()));
      per_ref[(size_t)pick(rng)].push_back(prompt.ids);
    }
    for (size_t k = 0; k < refs.size(); ++k) {
      if (per_ref[k].empty()) continue;
      auto res = generate(refs[k].model, per_ref[k], gen_config(stream_seed((uint64_t)cfg.seed, -1, 8 + k), 1));
      for (size_t j = 0; j < per_ref[k].size(); ++j)
        pool.push_back({per_ref[k][j], res.sequences[j].ids, res.sequences[j].logprobs, (int64_t)k});
    }
    std::cerr << "gsm8k_grpo: drew " << pool.size() << " reference samples for exact FKL in " << now_seconds() - t0
              << " s\n";
  }

  // The exact FKL term of micro-batch `micro` of step `step`: the policy's NLL on its slice of the reference
  // samples, weighted by gamma.
  FklSampleLoss fkl_pool_loss(int64_t step, int64_t micro) {
    std::vector<const TokenRow*> pp, cc;
    std::vector<int64_t> which;
    std::vector<const std::vector<float>*> rl;
    int64_t m = std::max<int64_t>(1, (int64_t)pool.size() / cfg.gradient_accumulation_steps);
    for (int64_t j = 0; j < m; ++j) {
      int64_t at = step * cfg.gradient_accumulation_steps + micro;
      const auto& s = pool[(size_t)((at * m + j) % (int64_t)pool.size())];
      pp.push_back(&s.prompt);
      cc.push_back(&s.completion);
      which.push_back(s.ref);
      rl.push_back(&s.lp);
    }
    auto b = pack_aligned(pp, cc, device);
    auto flp =
        completion_logprobs(policy.model, policy.model->hidden_states(b.ids, b.mask), b.ids, b.mask, b.prompt_len);
    auto frl = torch::zeros_like(flp);
    for (size_t j = 0; j < rl.size(); ++j)
      if (!rl[j]->empty()) frl[(int64_t)j].narrow(0, 0, (int64_t)rl[j]->size()).copy_(torch::tensor(*rl[j]));
    return fkl_ref_sample_loss(flp, frl, b.completion_mask, which, (int64_t)refs.size(), cfg.gamma);
  }
};

GrpoTrainer::GrpoTrainer(GrpoConfig cfg) : impl_(std::make_unique<Impl>()) {
  auto& I = *impl_;
  I.cfg = std::move(cfg);
  auto& c = I.cfg;
  // Cheap checks first: every model is where it is said to be (no weights read), then the data (a bad row fails
  // before any model loads).
  resolve_model_dir(c.policy);
  for (auto& id : c.ref_ids) resolve_model_dir(id);
  std::string data_dir = c.data_dir.empty() ? default_data_dir() : c.data_dir;
  I.train = load_task_rows(c.dataset, data_dir, "train");
  if (c.eval_steps > 0) {
    I.test = load_task_rows(c.dataset, data_dir, "test");
    if (I.test.empty())
      fail("--eval_steps ", c.eval_steps, ": ", c.dataset,
           " has no test split; give a directory holding train.jsonl and test.jsonl, or --eval_steps 0");
    if ((int64_t)I.test.size() > c.eval_samples) I.test.resize((size_t)c.eval_samples);
  }
  if (!c.any()) {
    if (!are_gsm8k_rows(I.train))
      fail("no reward: give --reward (e.g. exact_match), --reward_model or --reward_program; only GSM8K data has a ",
           "default (gsm8k_xml)");
    c.reward = "gsm8k_xml";
  }
  I.system_prompt = resolve_system_prompt(c.system_prompt, I.train);
  I.train_prompts.resize(I.train.size());
  set_threads(c.threads);
  I.device = resolve_device(c.device);
  I.dtype = resolve_dtype(c.dtype, I.device);
  torch::manual_seed((uint64_t)c.seed);
  I.policy = load_model(c.policy, I.dtype, I.device);
  I.policy.model->train();
  I.policy.model->model->gradient_checkpointing = c.gradient_checkpointing;
  for (auto* rows : {&I.train, &I.test})
    for (auto& row : *rows)
      for (int64_t id : row.ids)
        if (id >= I.policy.config.vocab_size)
          fail(row.where, ": prompt id ", id, " is outside the policy's vocabulary (", I.policy.config.vocab_size,
               " ids)");
  for (auto& id : c.ref_ids) {
    I.refs.push_back(load_model(id, I.dtype, I.device));
    for (auto& p : I.refs.back().model->parameters()) p.set_requires_grad(false);  // before any rollout
  }
  for (auto& r : I.refs)
    if (r.config.vocab_size != I.policy.config.vocab_size)
      fail(
          "the references' vocabularies differ from the policy's: GRPO scores the policy's tokens under every "
          "reference, so all models must share one tokenizer");
  I.tok_dir = I.policy.dir;
  if (has_tokenizer(I.policy.dir)) {
    I.tok_dir = resolve_tokenizer_dir(I.policy.dir);
    I.tok = Tokenizer::load(I.tok_dir);
    I.chat = resolve_chat_format(I.tok->chat_template, I.tok->bos_token, c.chat_template, I.tok_dir);
  } else if (c.chat_template != "auto") {
    fail("--chat_template ", c.chat_template, ": the policy ", c.policy, " has no tokenizer to render prompts with");
  }
  if (!I.tok)
    for (auto* rows : {&I.train, &I.test})
      for (auto& row : *rows)
        if (row.kind != PromptKind::Ids)
          fail(row.where, ": a text prompt needs a tokenizer, and the policy ", c.policy,
               " has none (no tokenizer.json, vocab.json or tokenizer.model); give \"prompt_ids\" rows");
  I.eos_ids = generation_eos_ids(I.policy.dir, I.policy.config, I.tok.get());
  if (I.eos_ids.empty())
    std::cerr << "gsm8k_grpo: warning: " << c.policy << " names no EOS token (config.json, generation_config.json); "
              << "every completion runs to --max_completion_length\n";
  I.rewards = std::make_unique<TaskRewards>(c, I.tok != nullptr, c.max_completion_length, I.dtype, I.device);
  I.sampler = std::make_unique<EpochSampler>((int64_t)I.train.size(), (uint64_t)c.seed);
}

GrpoTrainer::~GrpoTrainer() = default;

Transformer& GrpoTrainer::policy() {
  return impl_->policy.model;
}
int64_t GrpoTrainer::data_position() const {
  return impl_->data_pos;
}

Rollout GrpoTrainer::rollout(int64_t step) {
  auto& I = *impl_;
  const auto& cfg = I.cfg;
  Rollout r;
  int64_t G = cfg.num_generations, N = (int64_t)cfg.per_device_train_batch_size * cfg.gradient_accumulation_steps;
  auto idx = I.sampler->take(I.data_pos, N / G);
  I.data_pos += N / G;
  std::vector<const TaskPrompt*> prompts;
  std::vector<std::vector<int64_t>> prompt_ids;
  for (size_t i : idx) {
    prompts.push_back(&I.train_prompt(i));
    prompt_ids.push_back(prompts.back()->ids);
  }
  double t0 = now_seconds();
  auto res = generate(I.policy.model, prompt_ids, I.gen_config(stream_seed((uint64_t)cfg.seed, step, 1), G));
  double t_gen = now_seconds() - t0;
  std::vector<const TokenRow*> row_prompts, comps;
  std::vector<TaskCompletion> scored;
  double lengths = 0;
  for (int64_t n = 0; n < N; ++n) {
    row_prompts.push_back(&prompts[(size_t)(n / G)]->ids);
    comps.push_back(&res.sequences[(size_t)n].ids);
    r.completion_lengths.push_back((int64_t)comps.back()->size());
    lengths += (double)comps.back()->size();
    TaskCompletion c;
    c.prompt = prompts[(size_t)(n / G)];
    c.ids = comps.back();
    if (I.tok)
      c.text = I.tok->decode(*c.ids, /*skip_special_tokens=*/true, std::nullopt, /*unknown_ids_are_errors=*/false);
    scored.push_back(std::move(c));
  }
  double t_r = now_seconds();
  auto scores = I.rewards->score(scored);
  const auto& rewards = scores.total;
  t_r = now_seconds() - t_r;
  auto batch = pack_aligned(row_prompts, comps, I.device);
  r.ids = batch.ids;
  r.mask = batch.mask;
  r.completion_mask = batch.completion_mask;
  r.prompt_len = batch.prompt_len;
  r.tokens = res.stats.generated_tokens;
  // References (and the policy's old log-probs): no-grad passes over prompt + completion.
  double t1 = now_seconds();
  {
    torch::InferenceMode im;
    std::vector<torch::Tensor> lps;
    bool full = kl_penalty_needs_vocab(cfg.penalty);
    for (auto& ref : I.refs) {
      auto h = ref.model->hidden_states(r.ids, r.mask);
      lps.push_back(completion_logprobs(ref.model, h, r.ids, r.mask, r.prompt_len));
      if (full) r.ref_hidden.push_back(h.narrow(1, r.prompt_len - 1, h.size(1) - r.prompt_len).clone());
    }
    r.ref_lp = torch::stack(lps, 0);
    if (cfg.num_iterations > 1 || cfg.kl_in == KLIn::Reward)
      r.old_lp =
          completion_logprobs(I.policy.model, I.policy.model->hidden_states(r.ids, r.mask), r.ids, r.mask, r.prompt_len)
              .clone();
  }
  // The reward statistics come from the host copy (no device round trip).
  auto rw_host = torch::tensor(rewards, torch::kFloat32);
  r.metrics["reward"] = rw_host.mean().item<double>();
  r.metrics["reward_std"] = rw_host.view({-1, G}).std(1).mean().item<double>();
  auto rw = rw_host.to(I.device);
  if (cfg.kl_in == KLIn::Reward && cfg.gamma > 0) {
    // KL in the reward: r - gamma * sum_t kl_t (sampled estimator at the generation-time policy).
    torch::NoGradGuard ng;
    auto pen = token_penalty(cfg.penalty == KLPenalty::RklFull ? KLPenalty::RklK3 : cfg.penalty, r.old_lp, r.ref_lp,
                             r.completion_mask, cfg.weights, nullptr);
    rw = rw - cfg.gamma * pen.per_token.sum(1);
  }
  r.rewards = rw;
  r.advantages = group_advantages(rw, G, cfg.scale_rewards);
  for (auto& [k, v] : scores.means) r.metrics[k] = v;
  r.metrics["completion_length"] = lengths / (double)N;
  r.metrics["time/generate"] = t_gen;
  r.metrics["time/score"] = now_seconds() - t1;
  r.metrics["time/reward"] = t_r;
  r.metrics["tokens_per_second"] = (double)r.tokens / std::max(t_gen, 1e-9);
  return r;
}

void GrpoTrainer::micro_step(Rollout& r, int64_t from, int64_t n, int64_t step, StepStats& stats) {
  auto& I = *impl_;
  const auto& cfg = I.cfg;
  const double gas = (double)cfg.gradient_accumulation_steps;
  auto ids = r.ids.narrow(0, from, n), mask = r.mask.narrow(0, from, n), cm = r.completion_mask.narrow(0, from, n);
  auto h = I.policy.model->hidden_states(ids, mask);
  // Only completion positions go through the head: hidden P-1+t predicts completion token t.
  int64_t P = r.prompt_len, C = ids.size(1) - P;
  auto hc = h.narrow(1, P - 1, C);  // [n, C, H]
  auto targets = ids.narrow(1, P, C), valid = mask.narrow(1, P, C).to(torch::kBool);
  auto ref_lp = r.ref_lp.narrow(1, from, n);
  torch::Tensor lp;  // [n, C]
  VocabTerms terms;
  const VocabTerms* vt = nullptr;
  if (kl_penalty_needs_vocab(cfg.penalty)) {
    std::vector<LogpChunk> rc;
    for (size_t k = 0; k < I.refs.size(); ++k)
      rc.push_back(vocab_logp_chunks(I.refs[k].model, r.ref_hidden[k].narrow(0, from, n)));
    int64_t chunk = std::max<int64_t>(1, (1 << 24) / ((int64_t)(I.refs.size() + 1) * n * I.policy.config.vocab_size));
    terms = policy_vocab_terms(I.policy.model, hc, rc, targets, valid, cfg.weights, cfg.weights, chunk, &lp);
    vt = &terms;
  } else {
    lp = completion_logprobs(I.policy.model, h, ids, mask, P);
  }
  // Per-reference KLs of this micro-batch (undefined where it has none), named after the references.
  std::vector<torch::Tensor> ref_kl(I.refs.size());
  torch::Tensor kl;
  if (cfg.penalty != KLPenalty::FklRefSamples) {
    auto pen = token_penalty(cfg.penalty, lp, ref_lp, cm, cfg.weights, vt);
    kl = pen.per_token;
    ref_kl = pen.per_ref_kl;
  }
  GrpoLossConfig lc;
  lc.epsilon_low = cfg.epsilon;
  lc.epsilon_high = cfg.epsilon_high;
  lc.gamma = cfg.kl_in == KLIn::Loss ? cfg.gamma : 0.0;
  lc.aggregation = cfg.loss_type;
  lc.max_completion_length = cfg.max_completion_length;
  auto old = r.old_lp.defined() ? r.old_lp.narrow(0, from, n) : lp.detach();
  auto out = grpo_loss(lp, old, r.advantages.narrow(0, from, n), cm, kl, lc);
  stats.add("clip_ratio/low_mean", out.stats.clip_low, 1, gas);
  stats.add("clip_ratio/high_mean", out.stats.clip_high, 1, gas);
  stats.add("clip_ratio/region_mean", out.stats.clip_region, 1, gas);
  torch::Tensor fkl_term;  // exact FKL: averaged over micro-batches like any per-sample mean
  if (cfg.penalty == KLPenalty::FklRefSamples) {
    auto f = I.fkl_pool_loss(step, from / std::max<int64_t>(1, n));
    fkl_term = f.loss;
    ref_kl = f.stats.kl;
  }
  // Token-mean is over the whole generation batch, not per micro-batch: weight each micro-batch by its share
  // of the tokens, so that 2 x 2 accumulation equals one batch of 4 (other aggregations average equal parts).
  double scale = 1.0 / gas;
  if (cfg.loss_type == LossAggregation::TokenMean) {
    int64_t mine = 0, all = 0;
    for (size_t i = 0; i < r.completion_lengths.size(); ++i) {
      all += r.completion_lengths[i];
      if ((int64_t)i >= from && (int64_t)i < from + n) mine += r.completion_lengths[i];
    }
    scale = (double)mine / std::max(1.0, (double)all);
  }
  auto total_loss = out.loss * scale;
  if (fkl_term.defined()) total_loss = total_loss + fkl_term / gas;
  total_loss.backward();
  auto loss = out.loss.detach().to(torch::kFloat64);
  if (fkl_term.defined()) loss = loss + fkl_term.detach().to(torch::kFloat64);
  stats.add("loss", loss, 1, gas);
  // kl = sum_i w_i kl_i over the references this micro-batch measured.
  torch::Tensor total = torch::zeros({}, loss.options());
  for (size_t k = 0; k < I.refs.size(); ++k) {
    if (!ref_kl[k].defined()) continue;
    stats.add("kl/" + cfg.ref_names[k], ref_kl[k], 1, gas);
    total = total + cfg.weights[k] * ref_kl[k];
  }
  stats.add("kl", total, 1, gas);
}

void GrpoTrainer::start(int64_t step) {
  impl_->build_pool();
}

Metrics GrpoTrainer::prepare(int64_t step) {
  auto& I = *impl_;
  // One generation round serves num_iterations optimizer steps (a resumed run starts a new round).
  if (!I.current || I.iterations_done == I.cfg.num_iterations) {
    I.current.reset();  // the old round's tensors go before the new round is generated (peak memory)
    I.current = std::make_unique<Rollout>(rollout(step));
    I.iterations_done = 0;
  }
  ++I.iterations_done;
  return I.current->metrics;
}

Metrics GrpoTrainer::accumulate(int64_t step) {
  auto& I = *impl_;
  StepStats stats;
  int64_t bs = I.cfg.per_device_train_batch_size;
  for (int g = 0; g < I.cfg.gradient_accumulation_steps; ++g) micro_step(*I.current, g * bs, bs, step, stats);
  return stats.read();
}

void GrpoTrainer::finish(int64_t step, double seconds, Metrics& m) {
  m["time/update"] = seconds;
}

std::pair<Metrics, std::string> GrpoTrainer::evaluate(int64_t step) {
  auto& I = *impl_;
  Gsm8kEvalConfig ec;
  ec.max_new_tokens = I.cfg.max_completion_length;
  ec.max_prompt_length = I.cfg.max_prompt_length;
  ec.eos_ids = I.eos_ids;
  Metrics em;
  std::string line = "eval at step " + std::to_string(step) + ": ";
  if (are_gsm8k_rows(I.test) && I.tok) {
    // GSM8K keeps its own evaluation: accuracy (numeric match) and the format rate.
    std::vector<MathProblem> problems;
    for (auto& row : I.test) problems.push_back(gsm8k_problem(row));
    auto e = evaluate_gsm8k(I.policy.model, *I.tok, *I.chat, problems, ec);
    for (auto& [k, v] : e.items())
      if (v.is_number()) em["eval/" + k] = v.get<double>();
    return {em, line + "accuracy " + e["accuracy"].dump() + ", format rate " + e["format_rate"].dump()};
  }
  std::vector<TaskPrompt> prompts;
  for (auto& row : I.test) prompts.push_back(I.make_prompt(row));
  auto e = evaluate_task(I.policy.model, I.tok.get(), prompts, *I.rewards, ec);
  for (auto& [k, v] : e.items())
    if (v.is_number()) em["eval/" + k] = v.get<double>();
  return {em, line + "reward " + e["reward"].dump()};
}

nlohmann::json GrpoTrainer::state() const {
  return {{"data_position", impl_->data_pos}, {"seed", impl_->cfg.seed}};
}

void GrpoTrainer::restore(const nlohmann::json& st) {
  impl_->data_pos = st.at("data_position").get<int64_t>();
}

LoopSettings GrpoTrainer::loop_settings(const nlohmann::json& run_config) const {
  const auto& c = impl_->cfg;
  auto s = loop_settings_from_flags(c, c.model_out, c.max_steps);
  s.program = "gsm8k_grpo";
  s.tokenizer_src = impl_->tok_dir;
  for (auto& r : impl_->refs) s.references.push_back(r.model);
  s.run_config = run_config;
  s.run_config["reward"] = c.reward;  // resolved: the default on GSM8K data is gsm8k_xml
  s.console_keys = {"loss", "reward", "kl", "completion_length", "tokens_per_second"};
  return s;
}

void run_grpo(GrpoConfig cfg, const nlohmann::json& run_config) {
  GrpoTrainer t(std::move(cfg));
  run_training_loop(t.policy(), t, t.loop_settings(run_config));
}

}  // namespace multiref
