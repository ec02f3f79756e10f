#include "grpo_trainer.h"

#include <filesystem>
#include <iostream>
#include <random>

#include "chat_template.h"
#include "checkpoint.h"
#include "checkpointing.h"
#include "common.h"
#include "eval_gsm8k.h"
#include "generation.h"
#include "gsm8k.h"
#include "hub.h"
#include "logprobs.h"
#include "objectives.h"
#include "rewards.h"
#include "tokenizer.h"
#include "training_log.h"

namespace multiref {

namespace {

// One generation round: G completions of P prompts as padded tensors, and everything computed before the
// update (rewards, advantages, reference terms). N = P * G rows; C = longest completion.
struct Rollout {
  torch::Tensor ids, mask;        // [N, Pmax + C] prompt left-padded, completion right-padded
  torch::Tensor completion_mask;  // [N, C]
  int64_t prompt_len = 0;         // Pmax
  torch::Tensor rewards, advantages;  // [N]
  torch::Tensor ref_lp;               // [K, N, C] log pi_i of the sampled tokens
  std::vector<torch::Tensor> ref_hidden;  // K x [N, C, H] (full-vocabulary penalties only)
  torch::Tensor old_lp;               // [N, C] (num_iterations > 1)
  std::map<std::string, double> metrics;
  int64_t tokens = 0;
};

// Log-probs of the completion tokens only [N, C] (= columns P-1.. of token_logprobs): prompt positions never go
// through the vocabulary projection, which is most of a scoring pass's time at Qwen's vocabulary.
torch::Tensor completion_logprobs(Transformer& model, const torch::Tensor& hidden, const torch::Tensor& ids,
                                  const torch::Tensor& mask, int64_t prompt_len) {
  int64_t C1 = ids.size(1) - prompt_len + 1;
  return token_logprobs_from_hidden(model, hidden.narrow(1, prompt_len - 1, C1), ids.narrow(1, prompt_len - 1, C1),
                                    mask.narrow(1, prompt_len - 1, C1));
}

struct Trainer {
  GrpoConfig cfg;
  nlohmann::json run_config;
  torch::Device device = torch::kCPU;
  torch::ScalarType dtype = torch::kFloat32;
  LoadedModel policy;
  std::vector<LoadedModel> refs;
  std::shared_ptr<const Tokenizer> tok;
  std::string tok_dir;
  ChatFormat chat;
  std::vector<MathProblem> train, test;
  RewardKind reward_kind = RewardKind::Gsm8kXml;
  std::vector<int64_t> eos_ids;
  std::unique_ptr<AdamW> opt;
  int64_t step = 0, data_pos = 0;
  // Exact FKL: completions sampled from the references (reference i with probability beta_i), drawn once.
  struct RefSample {
    std::vector<int64_t> prompt, completion;
    std::vector<float> lp;  // log pi_i(completion | prompt) from the sampler (untempered)
    int64_t ref = 0;
  };
  std::vector<RefSample> pool;

  std::vector<int64_t> prompt_ids(const MathProblem& p) {
    return gsm8k_prompt_ids(*tok, chat, p, cfg.max_prompt_length);
  }

  // Prompts of the next round, in a per-epoch permutation derived from (seed, epoch).
  std::vector<size_t> next_prompts(int64_t count) {
    std::vector<size_t> out;
    int64_t n = (int64_t)train.size();
    for (int64_t k = 0; k < count; ++k, ++data_pos) {
      int64_t epoch = data_pos / n;
      std::vector<size_t> perm((size_t)n);
      for (size_t i = 0; i < perm.size(); ++i) perm[i] = i;
      std::mt19937_64 rng(stream_seed((uint64_t)cfg.seed, epoch, 0));
      std::shuffle(perm.begin(), perm.end(), rng);
      out.push_back(perm[(size_t)(data_pos % n)]);
    }
    return out;
  }

  GenerationConfig gen_config(uint64_t seed, int64_t G) {
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

  // Pads prompts (left) and completions (right) into one batch.
  static void pack(const std::vector<std::vector<int64_t>>& prompts, const std::vector<std::vector<int64_t>>& comps,
                   torch::Tensor& ids, torch::Tensor& mask, torch::Tensor& cmask, int64_t& P) {
    int64_t N = (int64_t)comps.size(), C = 1;
    P = 1;
    for (auto& p : prompts) P = std::max<int64_t>(P, (int64_t)p.size());
    for (auto& c : comps) C = std::max<int64_t>(C, (int64_t)c.size());
    ids = torch::zeros({N, P + C}, torch::kLong);
    mask = torch::zeros({N, P + C}, torch::kLong);
    cmask = torch::zeros({N, C}, torch::kFloat32);
    for (int64_t n = 0; n < N; ++n) {
      const auto& p = prompts[(size_t)n];
      const auto& c = comps[(size_t)n];
      int64_t pl = (int64_t)p.size(), cl = (int64_t)c.size();
      ids[n].narrow(0, P - pl, pl).copy_(torch::tensor(p, torch::kLong));
      mask[n].narrow(0, P - pl, pl).fill_(1);
      if (cl > 0) {
        ids[n].narrow(0, P, cl).copy_(torch::tensor(c, torch::kLong));
        mask[n].narrow(0, P, cl).fill_(1);
        cmask[n].narrow(0, 0, cl).fill_(1);
      }
    }
  }

  void build_pool() {
    if (cfg.penalty != KLPenalty::FklRefSamples || !pool.empty()) return;
    double t0 = now_seconds();
    std::mt19937_64 rng(stream_seed((uint64_t)cfg.seed, -1, 7));
    std::discrete_distribution<int64_t> pick(cfg.weights.begin(), cfg.weights.end());
    std::vector<std::vector<std::vector<int64_t>>> per_ref(refs.size());
    for (int i = 0; i < cfg.fkl_pool_size; ++i) {
      const auto& prob = train[(size_t)(rng() % train.size())];
      per_ref[(size_t)pick(rng)].push_back(prompt_ids(prob));
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

  Rollout rollout() {
    Rollout r;
    int64_t G = cfg.num_generations, N = (int64_t)cfg.per_device_train_batch_size * cfg.gradient_accumulation_steps;
    auto idx = next_prompts(N / G);
    std::vector<std::vector<int64_t>> prompts;
    for (size_t i : idx) prompts.push_back(prompt_ids(train[i]));
    double t0 = now_seconds();
    auto res = generate(policy.model, prompts, gen_config(stream_seed((uint64_t)cfg.seed, step, 1), G));
    double t_gen = now_seconds() - t0;
    std::vector<std::vector<int64_t>> row_prompts, comps;
    std::vector<double> rewards;
    std::map<std::string, double> parts;
    double lengths = 0;
    for (int64_t n = 0; n < N; ++n) {
      row_prompts.push_back(prompts[(size_t)(n / G)]);
      comps.push_back(res.sequences[(size_t)n].ids);
      lengths += (double)comps.back().size();
      auto text = tok->decode(comps.back(), /*skip_special_tokens=*/true, std::nullopt, /*unknown_ids_are_errors=*/false);
      const auto& prob = train[idx[(size_t)(n / G)]];
      auto rb = score_completion(reward_kind, text, reward_kind == RewardKind::Gsm8kXml ? prob.gold_raw : prob.gold);
      rewards.push_back(rb.total);
      for (auto& [k, v] : rb.parts) parts[k] += v / (double)N;
    }
    pack(row_prompts, comps, r.ids, r.mask, r.completion_mask, r.prompt_len);
    r.ids = r.ids.to(device);
    r.mask = r.mask.to(device);
    r.completion_mask = r.completion_mask.to(device);
    r.tokens = res.stats.generated_tokens;
    // References (and the policy's old log-probs): no-grad passes over prompt + completion.
    double t1 = now_seconds();
    {
      torch::InferenceMode im;
      std::vector<torch::Tensor> lps;
      bool full = kl_penalty_needs_vocab(cfg.penalty);
      for (auto& ref : refs) {
        auto h = ref.model->hidden_states(r.ids, r.mask);
        lps.push_back(completion_logprobs(ref.model, h, r.ids, r.mask, r.prompt_len));
        if (full) r.ref_hidden.push_back(h.narrow(1, r.prompt_len - 1, h.size(1) - r.prompt_len).clone());
      }
      r.ref_lp = torch::stack(lps, 0);
      if (cfg.num_iterations > 1 || cfg.kl_in == KLIn::Reward)
        r.old_lp = completion_logprobs(policy.model, policy.model->hidden_states(r.ids, r.mask), r.ids, r.mask, r.prompt_len).clone();
    }
    auto rw = torch::tensor(rewards, torch::kFloat32).to(device);
    r.metrics["reward"] = rw.mean().item<double>();
    r.metrics["reward_std"] = rw.view({-1, G}).std(1).mean().item<double>();
    if (cfg.kl_in == KLIn::Reward && cfg.gamma > 0) {
      // KL in the reward: r - gamma * sum_t kl_t (sampled estimator at the generation-time policy).
      torch::NoGradGuard ng;
      auto pen = token_penalty(cfg.penalty == KLPenalty::RklFull ? KLPenalty::RklK3 : cfg.penalty, r.old_lp, r.ref_lp,
                               r.completion_mask, cfg.weights, nullptr);
      rw = rw - cfg.gamma * pen.per_token.sum(1);
    }
    r.rewards = rw;
    r.advantages = group_advantages(rw, G, cfg.scale_rewards);
    for (auto& [k, v] : parts) r.metrics[k] = v;
    r.metrics["completion_length"] = lengths / (double)N;
    r.metrics["time/generate"] = t_gen;
    r.metrics["time/score"] = now_seconds() - t1;
    r.metrics["tokens_per_second"] = (double)r.tokens / std::max(t_gen, 1e-9);
    return r;
  }

  // One micro-batch: loss / accumulation, backward; returns its stats.
  std::map<std::string, double> micro_step(Rollout& r, int64_t from, int64_t n) {
    auto ids = r.ids.narrow(0, from, n), mask = r.mask.narrow(0, from, n), cm = r.completion_mask.narrow(0, from, n);
    auto h = policy.model->hidden_states(ids, mask);
    // Only completion positions go through the head: hidden P-1+t predicts completion token t.
    int64_t P = r.prompt_len, C = ids.size(1) - P;
    auto hc = h.narrow(1, P - 1, C);                                   // [n, C, H]
    auto targets = ids.narrow(1, P, C), valid = mask.narrow(1, P, C).to(torch::kBool);
    auto ref_lp = r.ref_lp.narrow(1, from, n);
    torch::Tensor lp;  // [n, C]
    VocabTerms terms;
    const VocabTerms* vt = nullptr;
    if (kl_penalty_needs_vocab(cfg.penalty)) {
      std::vector<LogpChunk> rc;
      for (size_t k = 0; k < refs.size(); ++k) rc.push_back(vocab_logp_chunks(refs[k].model, r.ref_hidden[k].narrow(0, from, n)));
      int64_t chunk = std::max<int64_t>(1, (1 << 24) / ((int64_t)(refs.size() + 1) * n * policy.config.vocab_size));
      terms = policy_vocab_terms(policy.model, hc, rc, targets, valid, cfg.weights, cfg.weights, chunk, &lp);
      vt = &terms;
    } else {
      lp = completion_logprobs(policy.model, h, ids, mask, P);
    }
    std::map<std::string, double> stats;
    torch::Tensor kl;
    if (cfg.penalty != KLPenalty::FklRefSamples) {
      auto pen = token_penalty(cfg.penalty, lp, ref_lp, cm, cfg.weights, vt);
      kl = pen.per_token;
      for (size_t k = 0; k < refs.size(); ++k) stats["kl/" + cfg.ref_names[k]] = pen.per_ref_kl[k];
    }
    GrpoLossConfig lc;
    lc.epsilon_low = cfg.epsilon;
    lc.epsilon_high = cfg.epsilon_high;
    lc.gamma = cfg.kl_in == KLIn::Loss ? cfg.gamma : 0.0;
    lc.aggregation = cfg.loss_type;
    lc.max_completion_length = cfg.max_completion_length;
    auto old = r.old_lp.defined() ? r.old_lp.narrow(0, from, n) : lp.detach();
    auto out = grpo_loss(lp, old, r.advantages.narrow(0, from, n), cm, kl, lc);
    auto loss = out.loss;
    torch::Tensor fkl_term;  // exact FKL: averaged over micro-batches like any per-sample mean
    for (auto& [k, v] : out.stats) stats[k] = v;
    if (cfg.penalty == KLPenalty::FklRefSamples) {
      // Exact FKL: the policy's NLL on a slice of the reference samples, weighted by gamma.
      std::vector<std::vector<int64_t>> pp, cc;
      std::vector<int64_t> which;
      std::vector<std::vector<float>> rl;
      int64_t m = std::max<int64_t>(1, (int64_t)pool.size() / cfg.gradient_accumulation_steps);
      for (int64_t j = 0; j < m; ++j) {
        int64_t micro = step * cfg.gradient_accumulation_steps + from / std::max<int64_t>(1, n);
        const auto& s = pool[(size_t)((micro * m + j) % (int64_t)pool.size())];
        pp.push_back(s.prompt);
        cc.push_back(s.completion);
        which.push_back(s.ref);
        rl.push_back(s.lp);
      }
      torch::Tensor fids, fmask, fcm;
      int64_t P;
      pack(pp, cc, fids, fmask, fcm, P);
      fids = fids.to(device);
      fmask = fmask.to(device);
      fcm = fcm.to(device);
      auto flp = completion_logprobs(policy.model, policy.model->hidden_states(fids, fmask), fids, fmask, P);
      auto frl = torch::zeros_like(flp);
      for (size_t j = 0; j < rl.size(); ++j)
        if (!rl[j].empty()) frl[(int64_t)j].narrow(0, 0, (int64_t)rl[j].size()).copy_(torch::tensor(rl[j]));
      auto f = fkl_ref_sample_loss(flp, frl, fcm, which, (int64_t)refs.size(), cfg.gamma);
      fkl_term = f.loss;
      for (size_t k = 0; k < refs.size(); ++k) {
        auto it = f.stats.find("kl/ref_" + std::to_string(k));
        if (it != f.stats.end()) stats["kl/" + cfg.ref_names[k]] = it->second;
      }
    }
    // Token-mean is over the whole generation batch, not per micro-batch: weight each micro-batch by its share
    // of the tokens, so that 2 x 2 accumulation equals one batch of 4 (other aggregations average equal parts).
    double scale = 1.0 / (double)cfg.gradient_accumulation_steps;
    if (cfg.loss_type == LossAggregation::TokenMean)
      scale = cm.sum().item<double>() / std::max(1.0, r.completion_mask.sum().item<double>());
    auto total_loss = loss * scale;
    if (fkl_term.defined()) total_loss = total_loss + fkl_term / (double)cfg.gradient_accumulation_steps;
    total_loss.backward();
    stats["loss"] = loss.item<double>() + (fkl_term.defined() ? fkl_term.item<double>() : 0.0);
    double total = 0;
    for (size_t k = 0; k < refs.size(); ++k) {
      auto it = stats.find("kl/" + cfg.ref_names[k]);
      if (it != stats.end()) total += cfg.weights[k] * it->second;
    }
    stats["kl"] = total;
    return stats;
  }

  nlohmann::json trainer_state() const {
    return {{"global_step", step}, {"data_position", data_pos}, {"seed", cfg.seed}, {"max_steps", cfg.max_steps}};
  }

  void save(int64_t at) {
    save_checkpoint(cfg.model_out, at, policy.model, tok_dir, *opt, trainer_state(), run_config, cfg.save_total_limit);
  }

  void run() {
    set_threads(cfg.threads);
    device = resolve_device(cfg.device);
    dtype = cfg.bf16 ? torch::kBFloat16 : torch::kFloat32;
    torch::manual_seed((uint64_t)cfg.seed);
    policy = load_model(cfg.policy, dtype, device);
    policy.model->train();
    policy.model->model->gradient_checkpointing = cfg.gradient_checkpointing;
    for (auto& id : cfg.ref_ids) {
      refs.push_back(load_model(id, dtype, device));
      for (auto& p : refs.back().model->parameters()) p.set_requires_grad(false);
    }
    bool shared_vocab = true;
    for (auto& r : refs) shared_vocab = shared_vocab && r.config.vocab_size == policy.config.vocab_size;
    if (!shared_vocab)
      fail("the references' vocabularies differ from the policy's: GRPO scores the policy's tokens under every "
           "reference, so all models must share one tokenizer");
    tok_dir = resolve_tokenizer_dir(policy.dir);
    tok = Tokenizer::load(tok_dir);
    chat = resolve_chat_format(tok->chat_template, tok->bos_token, cfg.chat_template, tok_dir);
    eos_ids = load_eos_ids(policy.dir, policy.config);
    if (tok->eos_id && std::find(eos_ids.begin(), eos_ids.end(), *tok->eos_id) == eos_ids.end()) eos_ids.push_back(*tok->eos_id);
    reward_kind = parse_reward_kind(cfg.reward);
    std::string data_dir = cfg.data_dir.empty() ? default_data_dir() : cfg.data_dir;
    train = load_gsm8k(cfg.dataset, data_dir, "train");
    if (cfg.eval_steps > 0) {
      test = load_gsm8k(cfg.dataset == "gsm8k" ? "gsm8k" : cfg.dataset, data_dir, "test");
      if ((int64_t)test.size() > cfg.eval_samples) test.resize((size_t)cfg.eval_samples);
    }
    opt = std::make_unique<AdamW>(state_dict(policy.model),
                                  AdamWConfig{cfg.learning_rate, cfg.adam_beta1, cfg.adam_beta2, 1e-8, cfg.weight_decay});
    if (!cfg.resume_from_checkpoint.empty()) {
      auto dir = resolve_checkpoint(cfg.resume_from_checkpoint, cfg.model_out);
      auto st = load_checkpoint(dir, policy.model, *opt);
      step = st.at("global_step").get<int64_t>();
      data_pos = st.at("data_position").get<int64_t>();
      std::cerr << "gsm8k_grpo: resumed from " << dir << " at step " << step << "\n";
    }
    make_dirs(cfg.model_out);
    write_file_atomic(join_path(cfg.model_out, "run_config.json"), run_config.dump(2) + "\n");
    build_pool();
    install_stop_handlers();
    TrainingLogSettings ls;
    ls.start_step = step;
    ls.console_keys = {"loss", "reward", "kl", "completion_length", "tokens_per_second"};
    TrainingLog log(cfg.model_out, cfg.max_steps, ls);
    int64_t warmup = (int64_t)std::ceil(cfg.warmup_ratio * (double)cfg.max_steps);
    while (step < cfg.max_steps && !stop_requested()) {
      Rollout r = rollout();
      for (int it = 0; it < cfg.num_iterations && step < cfg.max_steps; ++it) {
        double t0 = now_seconds();
        opt->zero_grad();
        std::map<std::string, double> acc;
        int64_t bs = cfg.per_device_train_batch_size;
        for (int g = 0; g < cfg.gradient_accumulation_steps; ++g)
          for (auto& [k, v] : micro_step(r, g * bs, bs)) acc[k] += v / cfg.gradient_accumulation_steps;
        double lr = cfg.learning_rate * lr_multiplier(cfg.lr_scheduler_type, step, cfg.max_steps, warmup);
        acc["grad_norm"] = opt->clip_grad_norm(cfg.max_grad_norm);
        opt->step(lr);
        ++step;
        acc["learning_rate"] = lr;
        acc["time/update"] = now_seconds() - t0;
        for (auto& [k, v] : r.metrics) acc[k] = v;
        if (step % cfg.logging_steps == 0 || step == cfg.max_steps) log.log(step, acc);
        if (cfg.eval_steps > 0 && step % cfg.eval_steps == 0) {
          Gsm8kEvalConfig ec;
          ec.max_new_tokens = cfg.max_completion_length;
          ec.max_prompt_length = cfg.max_prompt_length;
          ec.eos_ids = eos_ids;
          auto e = evaluate_gsm8k(policy.model, *tok, chat, test, ec);
          std::map<std::string, double> em;
          for (auto& [k, v] : e.items())
            if (v.is_number()) em["eval/" + k] = v.get<double>();
          log.log(step, em);
          log.message("eval at step " + std::to_string(step) + ": accuracy " + e["accuracy"].dump() + ", format rate " +
                      e["format_rate"].dump());
        }
        if (cfg.save_steps > 0 && step % cfg.save_steps == 0 && step < cfg.max_steps) {
          save(step);
          log.message("saved " + join_path(cfg.model_out, "checkpoint-" + std::to_string(step)));
        }
        if (stop_requested()) break;
      }
    }
    save(step);
    if (stop_requested()) {
      log.message("interrupted: saved checkpoint-" + std::to_string(step) + "; resume with --resume_from_checkpoint latest");
      return;
    }
    write_final_model(policy.model, cfg.model_out, tok_dir);
    log.message("final model written to " + cfg.model_out);
  }
};

}  // namespace

void run_grpo(GrpoConfig cfg, const nlohmann::json& run_config) {
  Trainer t;
  t.cfg = std::move(cfg);
  t.run_config = run_config;
  t.run();
}

int grpo_main(int argc, char** argv, int first, const char* program) {
  GrpoConfig cfg;
  FlagTable flags(program,
                  "Online multi-reference GRPO on GSM8K (arXiv:2502.01203). Batches count completions as in TRL: "
                  "each step generates per_device_train_batch_size x gradient_accumulation_steps completions, "
                  "num_generations per prompt.");
  if (!parse_config(flags, cfg, argc, argv, first)) return 0;
  run_grpo(cfg, flags.to_json());
  return 0;
}

}  // namespace multiref
