#include "rl/grpo_trainer.h"

#include <filesystem>
#include <iostream>
#include <random>

#include "data/epoch_sampler.h"
#include "data/prompt_data.h"
#include "dist/comm.h"
#include "eval/eval_gsm8k.h"
#include "eval/eval_task.h"
#include "eval/task_rewards.h"
#include "generation/generation.h"
#include "io/hf_model.h"
#include "io/hub.h"
#include "model/batching.h"
#include "model/logprobs.h"
#include "objectives/objectives.h"
#include "rl/grpo_trainer_impl.h"
#include "tokenizer/chat_template.h"
#include "tokenizer/tokenizer.h"
#include "train/memory_plan.h"
#include "train/trainer_flags.h"
#include "util/common.h"
#include "util/runtime.h"

namespace multiref {

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
  // Before any model loads: a rank that cannot reach the others fails in seconds.
  auto env = DistEnv::from_env();
  I.device = device_for_rank(resolve_device(c.device), env);
  I.comm = std::make_unique<Comm>(env, std::chrono::seconds(c.dist_timeout), I.device);
  I.system_prompt = resolve_system_prompt(c.system_prompt, I.train);
  I.train_prompts.resize(I.train.size());
  set_threads(c.threads);
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
  int64_t G = cfg.num_generations, N = (int64_t)cfg.per_device_train_batch_size * cfg.gradient_accumulation_steps;
  // The step takes N / G prompts per rank (as TRL: the global batch is N x world size completions); rank r has the
  // r-th block of them, whole groups, so group advantages need nothing from the other ranks.
  int64_t W = I.comm->world_size(), R = I.comm->rank(), P = N / G;
  auto idx = I.sampler->take(I.data_pos, P * W);
  I.data_pos += P * W;
  std::vector<const TaskPrompt*> all_prompts, prompts;
  std::vector<std::vector<int64_t>> prompt_ids;
  for (size_t j = 0; j < idx.size(); ++j) {
    all_prompts.push_back(&I.train_prompt(idx[j]));
    if ((int64_t)j / P != R) continue;
    prompts.push_back(all_prompts.back());
    prompt_ids.push_back(prompts.back()->ids);
  }
  double t0 = now_seconds();
  auto gc = I.gen_config(stream_seed((uint64_t)cfg.seed, step, 1), G);
  gc.first_sequence = R * N;  // the same tokens as one rank generating the whole step
  auto res = generate(I.policy.model, prompt_ids, gc);
  double t_gen = now_seconds() - t0;
  std::vector<std::vector<int64_t>> completions;
  std::vector<TaskCompletion> scored;
  for (int64_t n = 0; n < N; ++n) completions.push_back(res.sequences[(size_t)n].ids);
  for (int64_t n = 0; n < N; ++n) {
    TaskCompletion c;
    c.prompt = prompts[(size_t)(n / G)];
    c.ids = &completions[(size_t)n];
    if (I.tok)
      c.text = I.tok->decode(*c.ids, /*skip_special_tokens=*/true, std::nullopt, /*unknown_ids_are_errors=*/false);
    scored.push_back(std::move(c));
  }
  double t_r = now_seconds();
  auto scores = I.rewards->score(scored);
  t_r = now_seconds() - t_r;
  // This rank's place in the step: its completions, its share of the reference samples (the share its
  // micro-batches would take in a one-rank step), the completion tokens of all ranks (token-mean's denominator).
  Rollout shard;
  shard.row_first = R * N;
  shard.row_total = N * W;
  shard.sample_total = cfg.penalty == KLPenalty::FklRefSamples ? I.ref_sample_count(P * W) : 0;
  shard.sample_first = shard.sample_total * R / W;
  int64_t sample_end = shard.sample_total * (R + 1) / W;
  double my_tokens = 0;
  for (auto& c : completions) my_tokens += (double)c.size();
  shard.tokens_all_ranks = (int64_t)I.comm->sum({my_tokens})[0];
  std::vector<RefSample> ref_samples;
  double t_ref = now_seconds();
  if (cfg.penalty == KLPenalty::FklRefSamples)
    ref_samples = I.draw_ref_samples(step, all_prompts, shard.sample_first, sample_end);
  t_ref = now_seconds() - t_ref;
  double t1 = now_seconds();
  Rollout r = score_rollout(prompt_ids, completions, scores.total, std::move(ref_samples), &shard);
  // Generation's KV caches and scoring's activations are freed, in other sizes than the update's: give their pages
  // back rather than keep them resident beside the update's peak (a CPU run; util/runtime.h).
  if (I.device.is_cpu()) release_free_memory();
  r.tokens = res.stats.generated_tokens;
  // The task's reward (before any KL term), from the host copy (no device round trip).
  auto rw_host = torch::tensor(scores.total, torch::kFloat64);
  r.metrics["reward"] = rw_host.mean().item<double>();
  r.metrics["reward_std"] = rw_host.view({-1, G}).std(1).mean().item<double>();
  for (auto& [k, v] : scores.means) r.metrics[k] = v;
  double lengths = 0;
  for (auto& c : completions) lengths += (double)c.size();
  r.metrics["completion_length"] = lengths / (double)N;
  r.metrics["time/generate"] = t_gen;
  r.metrics["time/score"] = now_seconds() - t1;
  r.metrics["time/reward"] = t_r;
  if (cfg.penalty == KLPenalty::FklRefSamples) r.metrics["time/ref_samples"] = t_ref;
  // All ranks' tokens: the run's generation throughput (the loop averages each metric over the ranks).
  r.metrics["tokens_per_second"] = I.comm->sum({(double)r.tokens})[0] / std::max(t_gen, 1e-9);
  return r;
}

Rollout GrpoTrainer::score_rollout(const std::vector<std::vector<int64_t>>& prompts,
                                   const std::vector<std::vector<int64_t>>& completions,
                                   const std::vector<double>& rewards, std::vector<RefSample> ref_samples,
                                   const Rollout* shard) {
  auto& I = *impl_;
  const auto& cfg = I.cfg;
  const int64_t G = cfg.num_generations, N = (int64_t)completions.size();
  if (N != (int64_t)prompts.size() * G || (int64_t)rewards.size() != N)
    fail("score_rollout: ", prompts.size(), " prompts x ", G, " generations, ", N, " completions, ", rewards.size(),
         " rewards");
  Rollout r;
  std::vector<const TokenRow*> row_prompts, comps;
  int64_t tokens = 0;
  for (int64_t n = 0; n < N; ++n) {
    row_prompts.push_back(&prompts[(size_t)(n / G)]);
    comps.push_back(&completions[(size_t)n]);
    r.completion_lengths.push_back((int64_t)completions[(size_t)n].size());
    r.prompt_lengths.push_back((int64_t)prompts[(size_t)(n / G)].size());
    tokens += r.completion_lengths.back();
  }
  r.row_total = N;
  r.sample_total = (int64_t)ref_samples.size();
  r.tokens_all_ranks = tokens;
  if (shard) {
    r.row_first = shard->row_first;
    r.row_total = shard->row_total;
    r.sample_first = shard->sample_first;
    r.sample_total = shard->sample_total;
    r.tokens_all_ranks = shard->tokens_all_ranks;
  }
  auto batch = pack_aligned(row_prompts, comps, I.device);
  r.ids = batch.ids;
  r.mask = batch.mask;
  r.completion_mask = batch.completion_mask;
  r.prompt_len = batch.prompt_len;
  auto rw = torch::tensor(rewards, torch::kFloat64).to(I.device);
  // References (and the policy's old log-probs, and the KL it has now): no-grad passes over prompt + completion, in
  // blocks of rows: the whole step at once on a GPU (large batched forwards), a few thousand tokens per pass on a CPU,
  // where a larger batch gains nothing and its transient activations (a 1.5B MLP: 36 KB per token) would add gigabytes
  // to the step's peak memory. Each row's values do not depend on the blocks.
  {
    torch::InferenceMode im;
    const int64_t T = r.ids.size(1), P = r.prompt_len, C = T - P;
    int64_t budget = cfg.scoring_batch_tokens > 0 ? (int64_t)cfg.scoring_batch_tokens
                     : I.device.is_cuda()         ? kScoreTokensCuda
                                                  : kScoreTokensCpu;
    const int64_t rows = std::max<int64_t>(1, budget / T);
    bool full = kl_penalty_needs_vocab(cfg.penalty);
    bool kl_to_go = cfg.penalty == KLPenalty::RklFull && cfg.gamma > 0;
    bool kl_reward = cfg.kl_in == KLIn::Reward && cfg.gamma > 0;
    bool policy_pass = cfg.num_iterations > 1 || kl_reward || kl_to_go;
    std::vector<std::vector<torch::Tensor>> lps(I.refs.size()), hid(I.refs.size());
    std::vector<torch::Tensor> old_lp, penalty;  // per block: [n, C]
    for (int64_t from = 0; from < N; from += rows) {
      int64_t n = std::min(rows, N - from);
      auto ids = r.ids.narrow(0, from, n), mask = r.mask.narrow(0, from, n), cm = r.completion_mask.narrow(0, from, n);
      std::vector<torch::Tensor> ref_lp, ref_h;
      for (size_t k = 0; k < I.refs.size(); ++k) {
        auto h = I.refs[k].model->hidden_states(ids, mask);
        ref_lp.push_back(completion_logprobs(I.refs[k].model, h, ids, mask, P));
        if (full) ref_h.push_back(h.narrow(1, P - 1, C).clone());
        lps[k].push_back(ref_lp.back());
        if (full) hid[k].push_back(ref_h.back());
      }
      if (!policy_pass) continue;
      auto h = I.policy.model->hidden_states(ids, mask);
      auto block_ref_lp = torch::stack(ref_lp, 0);  // [K, n, C]
      if (kl_to_go) {
        std::vector<LogpChunk> rc;
        for (size_t k = 0; k < I.refs.size(); ++k) rc.push_back(vocab_logp_chunks(I.refs[k].model, ref_h[k]));
        torch::Tensor lp;
        int64_t chunk =
            std::max<int64_t>(1, (1 << 24) / ((int64_t)(I.refs.size() + 1) * n * I.policy.config.vocab_size));
        auto terms = policy_vocab_terms(I.policy.model, h.narrow(1, P - 1, C), rc, ids.narrow(1, P, C),
                                        mask.narrow(1, P, C).to(torch::kBool), cfg.weights, cfg.weights, chunk, &lp);
        old_lp.push_back(lp.clone());
        penalty.push_back(token_penalty(KLPenalty::RklFull, lp, block_ref_lp, cm, cfg.weights, &terms).per_token);
      } else {
        old_lp.push_back(completion_logprobs(I.policy.model, h, ids, mask, P).clone());
        if (kl_reward)
          penalty.push_back(
              token_penalty(cfg.penalty, old_lp.back(), block_ref_lp, cm, cfg.weights, nullptr).per_token);
      }
    }
    std::vector<torch::Tensor> all_refs;
    for (size_t k = 0; k < I.refs.size(); ++k) {
      all_refs.push_back(torch::cat(lps[k], 0));
      if (full) r.ref_hidden.push_back(torch::cat(hid[k], 0));
    }
    r.ref_lp = torch::stack(all_refs, 0);  // [K, N, C]
    if (!old_lp.empty()) r.old_lp = torch::cat(old_lp, 0);
    // Exact RKL: the penalty's score-function part (the KL still to come as a negative reward: its sequence total
    // has the same expectation); the KL in the reward: the whole penalty, as a reward.
    if (!penalty.empty()) rw = rw - cfg.gamma * torch::cat(penalty, 0).to(torch::kFloat64).sum(1);
  }
  r.rewards = rw;
  r.advantages = group_advantages(rw, G, cfg.scale_rewards, cfg.baseline);
  // Exact FKL: the samples' coefficients, on the policy-gradient term's scale.
  std::vector<double> weights;
  std::vector<int64_t> lengths;
  for (auto& s : ref_samples) {
    weights.push_back(s.weight);
    lengths.push_back((int64_t)s.completion.size());
  }
  auto coef = fkl_sample_coefficients(weights, lengths, cfg.loss_type, cfg.max_completion_length,
                                      (double)r.row_total / (double)std::max<int64_t>(1, r.tokens_all_ranks));
  for (size_t m = 0; m < ref_samples.size(); ++m) ref_samples[m].coef = coef[m];
  r.ref_samples = std::move(ref_samples);
  return r;
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

void GrpoTrainer::finish(int64_t step, double seconds, Metrics& m) {
  m["time/update"] = seconds;
}

std::pair<Metrics, std::string> GrpoTrainer::evaluate(int64_t step) {
  auto& I = *impl_;
  Gsm8kEvalConfig ec;
  ec.max_new_tokens = I.cfg.max_completion_length;
  ec.max_prompt_length = I.cfg.max_prompt_length;
  ec.eos_ids = I.eos_ids;
  // Data parallel: rank r evaluates test rows r, r + W, ...; the per-prompt means are recombined weighted by each
  // rank's count (a sampled evaluation's rows draw from other random streams than in one process: the same
  // distribution, other draws).
  int64_t W = I.comm->world_size(), R = I.comm->rank();
  std::vector<PromptRow> rows;
  for (size_t i = (size_t)R; i < I.test.size(); i += (size_t)W) rows.push_back(I.test[i]);
  bool gsm8k = are_gsm8k_rows(I.test) && I.tok;
  nlohmann::json e = nlohmann::json::object();
  if (!rows.empty() && gsm8k) {
    // GSM8K keeps its own evaluation: accuracy (numeric match) and the format rate.
    std::vector<MathProblem> problems;
    for (auto& row : rows) problems.push_back(gsm8k_problem(row));
    e = evaluate_gsm8k(I.policy.model, *I.tok, *I.chat, problems, ec);
  } else if (!rows.empty()) {
    std::vector<TaskPrompt> prompts;
    for (auto& row : rows) prompts.push_back(I.make_prompt(row));
    e = evaluate_task(I.policy.model, I.tok.get(), prompts, *I.rewards, ec);
  }
  Metrics weighted{{"n", (double)rows.size()}};
  for (auto& [k, v] : e.items())
    if (v.is_number()) weighted[k] = k == "tokens_per_second" ? v.get<double>() : v.get<double>() * (double)rows.size();
  auto all = I.comm->reduce(weighted, /*sum=*/true);
  Metrics em;
  for (auto& [k, v] : all) {
    if (k == "n") continue;
    bool count = k == "num_questions" || k == "num_prompts", rate = k == "tokens_per_second";
    em["eval/" + k] = count ? all["n"] : rate ? v : v / std::max(1.0, all["n"]);
  }
  std::string line = "eval at step " + std::to_string(step) + ": ";
  if (gsm8k)
    return {em, line + "accuracy " + format_metric(em["eval/accuracy"]) + ", format rate " +
                    format_metric(em["eval/format_rate"])};
  return {em, line + "reward " + format_metric(em["eval/reward"])};
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
  s.comm = impl_->comm.get();
  s.console_keys = {"loss", "reward", "kl", "completion_length", "tokens_per_second"};
  return s;
}

void run_grpo(GrpoConfig cfg, const nlohmann::json& run_config) {
  if (cfg.print_memory_plan) {
    MemoryPlanInput in;
    in.policy = load_model_config(resolve_model_dir(cfg.policy));
    for (auto& id : cfg.ref_ids) in.references.push_back(load_model_config(resolve_model_dir(id)));
    in.weight_bytes = resolve_dtype(cfg.dtype, resolve_device(cfg.device)) == torch::kFloat32 ? 4 : 2;
    std::cout << memory_plan_table(in);
    return;
  }
  GrpoTrainer t(std::move(cfg));
  run_training_loop(t.policy(), t, t.loop_settings(run_config));
}

}  // namespace multiref
