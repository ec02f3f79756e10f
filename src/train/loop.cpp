#include "train/loop.h"

#include <cmath>
#include <iostream>

#include "dist/comm.h"
#include "io/hf_model.h"
#include "train/train_checkpoint.h"
#include "train/training_log.h"
#include "util/common.h"
#include "util/fault.h"

namespace multiref {

namespace {

bool every(int64_t step, int64_t n) {
  return n > 0 && step % n == 0;
}

}  // namespace

LoopResult run_training_loop(Transformer& policy, TrainerTask& task, const LoopSettings& s) {
  LoopResult res;
  int64_t& step = res.step;
  for (auto ref : s.references) {
    ref->eval();
    for (auto& p : ref->parameters()) p.set_requires_grad(false);
  }
  const bool dist = s.comm && s.comm->active();
  const bool writes = !s.output_dir.empty() && (!s.comm || s.comm->main());  // rank 0 alone writes
  auto opt_owner = std::make_unique<AdamW>(state_dict(policy), s.adamw, s.zero_stage == 1 ? s.comm : nullptr);
  AdamW& opt = *opt_owner;
  auto trainer_state = [&] {
    nlohmann::json st = task.state();
    st["global_step"] = step;
    st["max_steps"] = s.total_steps;
    return st;
  };
  // A save that fails (a full disk, a quota) stops the run with what is still good: the staged checkpoint is
  // discarded whole and nothing older was touched.
  auto last_good = [&] {
    auto all = list_checkpoints(s.output_dir);
    return all.empty() ? std::string("there is no earlier checkpoint")
                       : "the last good checkpoint is " + all.back().second +
                             " (resume from it with --resume_from_checkpoint latest once there is room)";
  };
  auto save = [&] {
    try {
      save_checkpoint(s.output_dir, step, policy, s.tokenizer_src, opt, trainer_state(), s.run_config,
                      s.save_total_limit);
    } catch (const std::exception& e) {
      fail(s.program, ": saving checkpoint-", step, " failed, so the run stopped: ", e.what(),
           ". Nothing of checkpoint-", step, " was kept; ", last_good(), ".");
    }
  };
  if (writes) {
    int swept = sweep_unfinished_saves(s.output_dir);
    if (swept)
      std::cerr << s.program << ": removed " << swept << " unfinished save(s) an interrupted run left in "
                << s.output_dir << "\n";
  }
  if (!s.output_dir.empty() && !s.resume_from_checkpoint.empty()) {  // every rank reads the checkpoint
    auto dir = resolve_checkpoint(s.resume_from_checkpoint, s.output_dir);
    auto st = load_checkpoint(dir, policy, opt);
    step = st.at("global_step").get<int64_t>();
    task.restore(st);
    if (writes) std::cerr << s.program << ": resumed from " << dir << " at step " << step << "\n";
  }
  if (writes) {
    make_dirs(s.output_dir);
    write_file_atomic(join_path(s.output_dir, "run_config.json"), s.run_config.dump(2) + "\n");
  }
  task.start(step);
  if (s.stop_on_signal) install_stop_handlers();
  // Ranks stop together: a signal reaches them at different moments, so each step's metrics exchange carries the
  // flag and all stop after the step where any rank saw it (one stopping alone would hang the others).
  bool agreed_stop = false;
  auto stopped = [&] { return dist ? agreed_stop : s.stop_on_signal && stop_requested(); };
  std::vector<torch::Tensor> params = policy->parameters();
  std::unique_ptr<TrainingLog> log;
  if (writes) {
    TrainingLogSettings ls;
    ls.start_step = step;
    ls.console_keys = s.console_keys;
    log = std::make_unique<TrainingLog>(s.output_dir, s.total_steps, ls);
  }
  int64_t warmup = (int64_t)std::ceil(s.warmup_ratio * (double)s.total_steps);
  int64_t skipped = 0, skipped_in_a_row = 0;
  while (step < s.total_steps && !stopped()) {
    fault_point("train_step");
    Metrics prepared = task.prepare(step);
    if (dist) prepared = s.comm->reduce(prepared);  // e.g. GRPO's rollout: each rank's means of its equal share
    double t0 = now_seconds();
    opt.zero_grad();
    Metrics m = task.accumulate(step);
    if (dist) {
      s.comm->mean_gradients(params);
      m["stop_requested"] = s.stop_on_signal && stop_requested();
      m = s.comm->reduce(m);  // the mean over the ranks: each rank's values are of an equal share of the batch
      agreed_stop = m["stop_requested"] > 0;
      m.erase("stop_requested");
    }
    double lr = s.adamw.lr * lr_multiplier(s.schedule, step, s.total_steps, warmup);
    double norm = opt.clip_grad_norm(s.max_grad_norm);  // identical on every rank once gradients are averaged
    m["grad_norm"] = norm;
    bool finite = std::isfinite(norm) && (!m.count("loss") || std::isfinite(m["loss"]));
    if (finite) {
      opt.step(lr);
      skipped_in_a_row = 0;
    } else {
      opt.zero_grad();  // a NaN or inf never reaches the weights or AdamW's moments
      ++skipped;
      ++skipped_in_a_row;
    }
    if (skipped) m["skipped_steps"] = (double)skipped;
    ++step;
    m["learning_rate"] = lr;
    task.finish(step, now_seconds() - t0, m);
    for (auto& [k, v] : prepared) m[k] = v;
    if (log && (every(step, s.logging_steps) || step == s.total_steps)) log->log(step, m);
    if (s.on_step) s.on_step(step, m);
    if (!finite) {
      std::string what = cat("step ", step, ": the ", std::isfinite(norm) ? "loss" : "gradient norm",
                             " is not finite; the step was skipped (weights unchanged)");
      if (log) log->message(what);
      if (s.max_skipped_steps > 0 && skipped_in_a_row >= s.max_skipped_steps)
        fail(s.program, ": ", skipped_in_a_row, " steps in a row up to step ", step,
             " had a non-finite loss or gradient norm, so the run stopped (the weights never took them; the last "
             "checkpoint stands). Likely causes: a learning rate too high for these weights, float16 overflow "
             "(use --dtype bfloat16 or float32), rewards of extreme size (--scale_rewards), or a policy that "
             "disagrees with a reference so much that log-ratios overflow. --max_skipped_steps changes the limit.");
    }
    if (every(step, s.eval_steps) || (s.eval_steps > 0 && s.eval_at_end && step == s.total_steps)) {
      auto [em, line] = task.evaluate(step);
      if (log) {
        log->log(step, em);
        log->message(line);
      }
    }
    if (!s.output_dir.empty() && every(step, s.save_steps) && step < s.total_steps) {
      opt.gather_for_save();  // every rank (ZeRO-1: the state comes together on rank 0)
      if (writes) {
        save();
        log->message("saved " + join_path(s.output_dir, "checkpoint-" + std::to_string(step)));
      }
    }
    res.rows.push_back(std::move(m));
  }
  res.interrupted = stopped();
  for (auto ref : s.references)
    for (auto& p : ref->parameters())
      if (p.requires_grad() || p.grad().defined())
        fail(s.program, ": a reference model was not frozen (it has a gradient); the references must never train");
  if (!s.output_dir.empty()) opt.gather_for_save();
  if (!writes) return res;
  save();
  if (res.interrupted) {
    log->message("interrupted: saved checkpoint-" + std::to_string(step) +
                 "; resume with --resume_from_checkpoint latest");
    return res;
  }
  try {
    write_final_model(policy, s.output_dir, s.tokenizer_src);
  } catch (const std::exception& e) {
    fail(s.program, ": training finished and checkpoint-", step, " is saved, but writing the final model to ",
         s.output_dir, " failed: ", e.what(),
         ". The checkpoint is a complete model directory; rerun with "
         "--resume_from_checkpoint latest once there is room to write the final model.");
  }
  log->message("final model written to " + s.output_dir);
  opt_owner.reset();  // the optimizer state is done with: free it before the task's own final work
  task.end(*log);
  return res;
}

}  // namespace multiref
