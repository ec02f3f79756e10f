#include "rl/dpo_trainer.h"

#include <algorithm>
#include <cmath>
#include <iostream>
#include <random>

#include "data/epoch_sampler.h"
#include "data/gsm8k.h"
#include "data/preference_data.h"
#include "dist/comm.h"
#include "eval/eval_rm.h"
#include "io/hf_model.h"
#include "io/hub.h"
#include "io/safetensors.h"
#include "model/reward_model.h"
#include "rl/pair_logps.h"
#include "rl/ref_logps_cache.h"
#include "tokenizer/tokenizer.h"
#include "train/loop.h"
#include "train/memory_plan.h"
#include "train/step_stats.h"
#include "train/trainer_flags.h"
#include "train/training_log.h"
#include "util/common.h"

namespace multiref {

namespace {

// The tokenizer files that decide token ids and chat rendering: two models with equal fingerprints tokenize
// every pair identically, so a reference may reuse the policy's tokens (and token-level mixtures are defined).
uint64_t tokenizer_fingerprint(const std::string& dir, const std::string& chat_template_flag) {
  uint64_t h = fnv1a(chat_template_flag.data(), chat_template_flag.size());
  for (const char* f : {"tokenizer.json", "vocab.json", "merges.txt", "tokenizer.model", "tokenizer_config.json",
                        "chat_template.jinja"}) {
    auto p = join_path(dir, f);
    std::string s = file_exists(p) ? read_file(p) : std::string("-");
    h = fnv1a(f, std::strlen(f), h);
    h = fnv1a(s.data(), s.size(), h);
  }
  return h;
}

// One model's view of the data: its tokenizer, chat format and the pairs in its tokens.
struct Tokenized {
  std::string tok_dir;
  uint64_t fingerprint = 0;
  std::vector<PairTokens> train, eval;
  int64_t truncated = 0;
};

struct Trainer : TrainerTask {
  DpoConfig cfg;
  nlohmann::json run_config;
  torch::Device device = torch::kCPU;
  torch::ScalarType dtype = torch::kFloat32;
  LoadedModel policy;
  std::vector<LoadedModel> refs;  // loaded only without precomputation
  PreferenceData train_data, eval_data;
  Tokenized pol;
  std::vector<PairLogps> ref_train_lp, ref_eval_lp;  // per reference (or one row: the token mixture)
  int64_t ref_rows = 0;
  int64_t total_steps = 0;
  int64_t pairs_per_step = 0;
  std::unique_ptr<EpochSampler> sampler;
  std::string data_dir;
  int64_t step_tokens = 0;     // the current step's tokens (of all ranks, once finish() has summed them)
  std::unique_ptr<Comm> comm;  // data parallel: this rank's share of every step's pairs (one rank: all of them)

  TruncationSettings truncation() const {
    return {cfg.max_length, cfg.max_prompt_length, cfg.truncation_mode == TruncationMode::KeepEnd};
  }

  Tokenized tokenize_for(const std::string& model_dir) {
    Tokenized t;
    t.tok_dir = resolve_tokenizer_dir(model_dir);
    t.fingerprint = tokenizer_fingerprint(t.tok_dir, cfg.chat_template);
    if (!pol.tok_dir.empty() && t.fingerprint == pol.fingerprint) {
      t.train = pol.train;
      t.eval = pol.eval;
      t.truncated = pol.truncated;
      return t;
    }
    auto tok = Tokenizer::load(t.tok_dir);
    auto chat = resolve_chat_format(tok->chat_template, tok->bos_token, cfg.chat_template, t.tok_dir);
    for (auto* d : {&train_data, &eval_data}) {
      auto& out = d == &train_data ? t.train : t.eval;
      for (auto& ex : d->rows) {
        out.push_back(tokenize_pair(*tok, chat, ex, truncation()));
        t.truncated += out.back().truncated;
      }
    }
    return t;
  }

  // Reference log-probs of all pairs, before training: one reference at a time (loaded, scored, freed), or all
  // together for the token-level mixture. Cached on disk.
  void precompute_references() {
    RefLogpsCache cache(cfg.cache_dir.empty() ? default_cache_dir() : cfg.cache_dir);
    const auto& R = cfg.references;
    std::string dt = dtype == torch::kBFloat16 ? "bf16" : "fp32";
    auto run = [&](const std::vector<std::string>& ids, const Tokenized& t, const std::string& form,
                   PairLogps* train_out, PairLogps* eval_out,
                   const std::function<torch::Tensor(std::vector<Transformer>&, const PairBatch&)>& f) {
      uint64_t key = fnv1a(form.data(), form.size());
      key = fnv1a(dt.data(), dt.size(), key);
      std::vector<std::string> dirs;
      for (auto& id : ids) {
        dirs.push_back(resolve_model_dir(id));
        uint64_t m = model_fingerprint(dirs.back());
        key = fnv1a(&m, sizeof m, key);
      }
      std::vector<Transformer> models;
      for (auto [set, out] : {std::pair{&t.train, train_out}, std::pair{&t.eval, eval_out}}) {
        if (set->empty()) continue;
        uint64_t k = pairs_fingerprint(*set);
        k = fnv1a(&key, sizeof key, k);
        std::string label = "reference pass (" + form + ", " + std::to_string(set->size()) + " pairs)";
        auto hit = cache.load(k, set->size());
        // Every rank must take the same branch (the scoring below is split over the ranks): the cache counts only
        // where every rank finds it (several machines may not share the cache directory).
        if (comm->sum({hit ? 1.0 : 0.0})[0] == comm->world_size()) {
          std::cerr << label << ": cached in " << cache.path(k) << "\n";
          *out = *hit;
          continue;
        }
        if (models.empty())
          for (auto& id : ids) {
            auto lm = load_model(id, dtype, device);
            lm.model->eval();
            models.push_back(lm.model);
          }
        torch::NoGradGuard no_grad;
        // Data parallel: rank r scores the r-th contiguous share of the pairs; the shares are then exchanged.
        int64_t n = (int64_t)set->size(), W = comm->world_size(), share = (n + W - 1) / W;
        int64_t lo = std::min(n, comm->rank() * share), hi = std::min(n, lo + share);
        std::vector<PairTokens> mine(set->begin() + lo, set->begin() + hi);
        PairLogps part = score_pairs(mine, std::max(1, cfg.per_device_train_batch_size), device, label,
                                     [&](const PairBatch& b) { return f(models, b); });
        part.chosen.resize((size_t)share);
        part.rejected.resize((size_t)share);
        out->chosen.clear();
        out->rejected.clear();
        auto chosen = comm->gather(part.chosen), rejected = comm->gather(part.rejected);
        for (int64_t r = 0; r < W; ++r) {
          int64_t m = std::max<int64_t>(0, std::min(n, (r + 1) * share) - r * share);
          out->chosen.insert(out->chosen.end(), chosen[r].begin(), chosen[r].begin() + m);
          out->rejected.insert(out->rejected.end(), rejected[r].begin(), rejected[r].begin() + m);
        }
        std::string desc = form + " " + dt + " of";
        for (auto& d : dirs) desc += " " + d;
        for (auto& fl : (set == &t.train ? train_data : eval_data).files) desc += " on " + fl;
        if (comm->main()) cache.store(k, *out, desc);
      }
    };
    ref_rows = cfg.kl_estimator == DpoEstimator::Exact ? (int64_t)R.ids.size() : 1;
    ref_train_lp.resize((size_t)ref_rows);
    ref_eval_lp.resize((size_t)ref_rows);
    if (cfg.kl_estimator == DpoEstimator::Exact) {
      for (size_t k = 0; k < R.ids.size(); ++k) {
        auto dir = resolve_model_dir(R.ids[k]);
        Tokenized t = tokenize_for(dir);
        if (t.fingerprint != pol.fingerprint)
          std::cerr << "dpo: " << R.names[k]
                    << " has its own tokenizer or chat template: its sequence log-probs are of "
                    << "the same texts in its own tokens"
                    << (t.truncated ? " (truncated pairs are cut at its own token "
                                      "boundaries)"
                                    : "")
                    << "\n";
        run({R.ids[k]}, t, "sequence " + R.names[k], &ref_train_lp[k], &ref_eval_lp[k],
            [](std::vector<Transformer>& m, const PairBatch& b) { return pair_sequence_logps(m[0], b); });
      }
    } else {
      bool geo = cfg.kl_type == KLType::Rkl;
      std::string form = std::string(geo ? "token-geometric" : "token-arithmetic") + " mixture, weights";
      for (double w : R.weights) form += " " + std::to_string(w);
      auto w = R.weights;
      run(R.ids, pol, form, &ref_train_lp[0], &ref_eval_lp[0],
          [w, geo](std::vector<Transformer>& m, const PairBatch& b) { return pair_token_mixture_logps(m, w, geo, b); });
    }
  }

  // [K', B] reference log-probs of a batch: from the precomputed arrays, or by scoring now.
  std::pair<torch::Tensor, torch::Tensor> reference_logps(const std::vector<size_t>& idx, bool eval,
                                                          const PairBatch& b) {
    int64_t B = (int64_t)idx.size();
    if (cfg.precompute_ref_log_probs) {
      auto c = torch::empty({ref_rows, B}, torch::kFloat64), r = torch::empty({ref_rows, B}, torch::kFloat64);
      for (int64_t k = 0; k < ref_rows; ++k)
        for (int64_t j = 0; j < B; ++j) {
          const auto& src = eval ? ref_eval_lp[k] : ref_train_lp[k];
          c[k][j] = src.chosen[idx[(size_t)j]];
          r[k][j] = src.rejected[idx[(size_t)j]];
        }
      return {c, r};
    }
    torch::NoGradGuard no_grad;
    std::vector<torch::Tensor> rows;
    if (cfg.kl_estimator == DpoEstimator::Exact) {
      for (auto& m : refs) rows.push_back(pair_sequence_logps(m.model, b).cpu());
    } else {
      std::vector<Transformer> ms;
      for (auto& m : refs) ms.push_back(m.model);
      rows.push_back(pair_token_mixture_logps(ms, cfg.references.weights, cfg.kl_type == KLType::Rkl, b).cpu());
    }
    auto all = torch::stack(rows);  // [K', 2B]
    return {all.narrow(1, 0, B), all.narrow(1, B, B)};
  }

  // The pairs of optimizer step `s` (0-based): positions s * pairs_per_step... of the epoch sampler, consumed in
  // order across epoch boundaries, so a resumed run sees exactly the pairs the uninterrupted one would.
  std::vector<size_t> step_pairs(int64_t s) { return sampler->take(s * pairs_per_step, pairs_per_step); }

  DpoLossConfig loss_config() const {
    DpoLossConfig lc;
    lc.gamma = cfg.gamma;
    lc.type = cfg.loss_type;
    lc.label_smoothing = cfg.label_smoothing;
    return lc;
  }

  // One micro-batch: its loss (backward scaled by `scale` when training) and its statistics into `stats`, each
  // added as value * num / den under `prefix`.
  void micro_step(const std::vector<size_t>& idx, bool eval, double scale, int64_t& tokens, StepStats& stats,
                  const std::string& prefix, double num, double den) {
    const auto& set = eval ? pol.eval : pol.train;
    std::vector<const PairTokens*> bp;
    for (auto i : idx) bp.push_back(&set[i]);
    auto b = make_pair_batch(bp, device);
    tokens += b.tokens;
    auto [rc, rr] = reference_logps(idx, eval, b);
    auto lp = pair_sequence_logps(policy.model, b);  // [2B]
    int64_t B = (int64_t)idx.size();
    bool exact = cfg.kl_estimator == DpoEstimator::Exact;
    const std::vector<double>& w = exact ? cfg.references.weights : std::vector<double>{1.0};
    auto res = dpo_loss(lp.narrow(0, 0, B), lp.narrow(0, B, B), rc, rr, w, cfg.reference_form, loss_config());
    if (!eval) (res.loss * scale).backward();
    auto add = [&](const std::string& name, const torch::Tensor& v) { stats.add(prefix + name, v, num, den); };
    auto add_rewards = [&](const DpoRewardStats& r, const std::string& suffix) {
      add("rewards/chosen" + suffix, r.chosen);
      add("rewards/rejected" + suffix, r.rejected);
      add("rewards/margins" + suffix, r.margin);
      add("rewards/accuracies" + suffix, r.accuracy);
    };
    add("loss", res.loss);
    add_rewards(res.stats.rewards, "");
    add("logps/chosen", res.stats.logp_chosen);
    add("logps/rejected", res.stats.logp_rejected);
    // Implicit rewards against each reference alone, named after the flags (ref_a, ref_b). The token mixture is one
    // row: the per-reference split does not exist there.
    if (exact)
      for (size_t k = 0; k < res.stats.per_ref.size(); ++k)
        add_rewards(res.stats.per_ref[k], "/" + cfg.references.names[k]);
  }

  // TrainerTask: the pairs of the step, in micro-batches.
  Metrics accumulate(int64_t step) override {
    auto idx = step_pairs(step);
    StepStats stats;
    step_tokens = 0;
    int64_t bs = cfg.per_device_train_batch_size;
    double gas = cfg.gradient_accumulation_steps;
    // This rank's share of the step's pairs: the r-th block of per_device_train_batch_size x accumulation pairs.
    size_t first = (size_t)(comm->rank() * bs * cfg.gradient_accumulation_steps);
    for (int g = 0; g < cfg.gradient_accumulation_steps; ++g) {
      std::vector<size_t> mb(idx.begin() + first + g * bs, idx.begin() + first + (g + 1) * bs);
      micro_step(mb, false, 1.0 / gas, step_tokens, stats, "", 1.0, gas);
    }
    return stats.read();
  }

  void finish(int64_t step, double seconds, Metrics& m) override {
    step_tokens = (int64_t)comm->sum({(double)step_tokens})[0];
    m["epoch"] = (double)(step * pairs_per_step) / (double)pol.train.size();
    m["time/step"] = seconds;
    m["tokens_per_second"] = (double)step_tokens / std::max(1e-9, seconds);
  }

  // Held-out pairs: the same statistics, weighted by micro-batch size.
  std::pair<Metrics, std::string> evaluate(int64_t step) override {
    torch::NoGradGuard no_grad;
    policy.model->eval();
    StepStats stats;
    int64_t n = std::min<int64_t>((int64_t)pol.eval.size(), cfg.eval_samples), tokens = 0;
    int64_t bs = cfg.per_device_train_batch_size;
    // Micro-batch j goes to rank j mod world size; the weighted statistics then add up over the ranks.
    for (int64_t s = comm->rank() * bs; s < n; s += bs * comm->world_size()) {
      std::vector<size_t> idx;
      for (int64_t i = s; i < std::min(n, s + bs); ++i) idx.push_back((size_t)i);
      micro_step(idx, true, 0, tokens, stats, "eval/", (double)idx.size(), (double)n);
    }
    policy.model->train();
    auto e = comm->reduce(stats.read(), /*sum=*/true);
    return {e, "eval at step " + std::to_string(step) + ": loss " + format_metric(e["eval/loss"]) + ", accuracy " +
                   format_metric(e["eval/rewards/accuracies"])};
  }

  nlohmann::json state() const override { return {{"seed", cfg.seed}}; }

  void end(TrainingLog& log) override;

  void run();
};

void Trainer::run() {
  set_threads(cfg.threads);
  if (cfg.print_memory_plan) {
    MemoryPlanInput in;
    in.policy = load_model_config(resolve_model_dir(cfg.policy));
    if (!cfg.precompute_ref_log_probs)  // otherwise the references are scored once, before training, one at a time
      for (auto& id : cfg.references.ids) in.references.push_back(load_model_config(resolve_model_dir(id)));
    in.weight_bytes = resolve_dtype(cfg.dtype, resolve_device(cfg.device)) == torch::kFloat32 ? 4 : 2;
    std::cout << memory_plan_table(in);
    return;
  }
  // Before anything heavy: a rank that cannot reach the others fails in seconds, not after the reference pass.
  auto env = DistEnv::from_env();
  device = device_for_rank(resolve_device(cfg.device), env);
  comm = std::make_unique<Comm>(env, std::chrono::seconds(cfg.dist_timeout), device);
  dtype = resolve_dtype(cfg.dtype, device);
  torch::manual_seed((uint64_t)cfg.seed);
  // A missing or wrong reward model must fail now, not after hours of training.
  if (!cfg.rm_name.empty()) reward_model_config(cfg.rm_name);
  data_dir = cfg.data_dir.empty() ? default_data_dir() : cfg.data_dir;
  train_data = load_preferences(preference_files(cfg.dataset, data_dir, "train"));
  if (cfg.eval_steps > 0) {
    eval_data = load_preferences(preference_files(cfg.dataset, data_dir, "test"));
    if ((int64_t)eval_data.rows.size() > cfg.eval_samples) eval_data.rows.resize((size_t)cfg.eval_samples);
  }
  if (train_data.rows.empty()) fail(cfg.dataset, ": no usable preference pairs");
  if (train_data.skipped_empty + eval_data.skipped_empty > 0)
    std::cerr << "dpo: warning: skipped " << train_data.skipped_empty + eval_data.skipped_empty
              << " pairs with an empty prompt, chosen or rejected response\n";
  auto policy_dir = resolve_model_dir(cfg.policy);
  pol = tokenize_for(policy_dir);
  std::cerr << "dpo: " << pol.train.size() << " training pairs"
            << (pol.eval.empty() ? "" : ", " + std::to_string(pol.eval.size()) + " held out") << "; " << pol.truncated
            << " truncated to --max_length " << cfg.max_length << "\n";
  if (cfg.kl_estimator == DpoEstimator::TokenMixture)
    for (size_t k = 0; k < cfg.references.ids.size(); ++k)
      if (tokenizer_fingerprint(resolve_tokenizer_dir(resolve_model_dir(cfg.references.ids[k])), cfg.chat_template) !=
          pol.fingerprint)
        fail(
            "--kl_estimator token_mixture mixes the references' next-token distributions, so every reference must "
            "share the policy's tokenizer and chat template; ",
            cfg.references.names[k], " (", cfg.references.ids[k],
            ") does not. Use --kl_estimator exact (sequence level: each reference may have its own tokenizer)");
  // Every reference's files are checked before the first one is scored (which takes hours at scale): its
  // config.json, the headers of its weights and, when it is not the policy's, its tokenizer and chat template.
  for (auto& id : cfg.references.ids) {
    auto dir = resolve_model_dir(id);
    load_model_config(dir);
    load_checkpoint_tensors(dir);  // maps the files and validates their headers; reads no weights
    auto tok_dir = resolve_tokenizer_dir(dir);
    if (tokenizer_fingerprint(tok_dir, cfg.chat_template) != pol.fingerprint) {
      auto tok = Tokenizer::load(tok_dir);
      resolve_chat_format(tok->chat_template, tok->bos_token, cfg.chat_template, tok_dir);
    }
  }
  if (cfg.precompute_ref_log_probs) {
    double t0 = now_seconds();
    precompute_references();
    std::cerr << "dpo: reference log-probs ready in " << format_metric(now_seconds() - t0) << " s\n";
  } else {
    for (auto& id : cfg.references.ids) {
      auto dir = resolve_model_dir(id);
      if (tokenizer_fingerprint(resolve_tokenizer_dir(dir), cfg.chat_template) != pol.fingerprint)
        fail(id,
             " has its own tokenizer or chat template; scoring it batch by batch needs the policy's tokens: keep "
             "--precompute_ref_log_probs on (it scores each reference in its own tokens)");
      refs.push_back(load_model(id, dtype, device));  // frozen by the training loop (LoopSettings::references)
    }
  }
  policy = load_model(cfg.policy, dtype, device);
  policy.model->train();
  policy.model->model->gradient_checkpointing = cfg.gradient_checkpointing;
  // As TRL / accelerate: a step is per_device_train_batch_size x gradient_accumulation_steps x world size pairs.
  pairs_per_step = (int64_t)cfg.per_device_train_batch_size * cfg.gradient_accumulation_steps * comm->world_size();
  total_steps = cfg.max_steps > 0
                    ? cfg.max_steps
                    : (int64_t)std::ceil(cfg.num_train_epochs * (double)pol.train.size() / (double)pairs_per_step);
  sampler = std::make_unique<EpochSampler>((int64_t)pol.train.size(), (uint64_t)cfg.seed);
  auto s = loop_settings_from_flags(cfg, cfg.output_dir, total_steps);
  s.program = "dpo";
  s.eval_at_end = true;
  s.tokenizer_src = pol.tok_dir;
  for (auto& r : refs) s.references.push_back(r.model);
  s.run_config = run_config;
  s.comm = comm.get();
  s.console_keys = {"loss", "rewards/accuracies", "rewards/margins", "epoch"};
  run_training_loop(policy.model, *this, s);
}

// After a completed run: the reward-model evaluation of the final model (the policy and references are freed
// first: the evaluation loads its own models).
void Trainer::end(TrainingLog& log) {
  if (cfg.rm_name.empty()) return;
  refs.clear();
  policy = LoadedModel{};
  EvalRmConfig ec;
  ec.model = cfg.output_dir;
  ec.rm_name = cfg.rm_name;
  ec.dataset = cfg.dataset;
  ec.data_dir = data_dir;
  ec.num_prompts = cfg.rm_num_prompts;
  ec.max_new_tokens = cfg.rm_max_new_tokens;
  ec.max_prompt_length = cfg.max_prompt_length;  // held-out prompts are treated as training treated its prompts
  ec.dtype = cfg.dtype;
  ec.device = cfg.device;
  ec.chat_template = cfg.chat_template;
  ec.seed = cfg.seed;
  for (size_t k = 0; k < cfg.references.ids.size(); ++k)
    ec.compare.push_back(cfg.references.names[k] + "=" + cfg.references.ids[k]);
  ec.compare.push_back("chosen");
  nlohmann::json result;
  try {
    result = evaluate_rm(ec);
  } catch (const std::exception& e) {
    // The run itself succeeded: say so, and how to rerun the evaluation alone, before the non-zero exit.
    fail("training finished and the final model is saved in ", cfg.output_dir,
         "; the reward-model evaluation after it failed: ", e.what(), " (rerun it alone: multiref eval rm --model ",
         cfg.output_dir, " --rm_name ", cfg.rm_name, " --max_prompt_length ", cfg.max_prompt_length, ")");
  }
  write_file_atomic(join_path(cfg.output_dir, "eval_rm.json"), result.dump(2) + "\n");
  log.message("reward-model evaluation (" + cfg.rm_name + ", written to " + join_path(cfg.output_dir, "eval_rm.json") +
              "):\n" + rm_eval_table(result));
}

}  // namespace

void run_dpo(DpoConfig cfg, const nlohmann::json& run_config) {
  Trainer t;
  t.cfg = std::move(cfg);
  t.run_config = run_config;
  t.run();
}

}  // namespace multiref
