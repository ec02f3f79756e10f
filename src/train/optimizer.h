// AdamW with decoupled weight decay, gradient clipping and the learning-rate schedules of HF Trainer
// (linear / cosine / constant, with linear warmup). Its state round-trips through safetensors, so a resumed run
// continues bit for bit. Shared by both trainers.
#pragma once
#include <torch/torch.h>

#include <string>
#include <utility>
#include <vector>

namespace multiref {

class Comm;

enum class LrSchedule { Linear, Cosine, Constant, ConstantWithWarmup };
std::vector<std::pair<std::string, LrSchedule>> lr_schedule_choices();

struct AdamWConfig {
  double lr = 1e-6, beta1 = 0.9, beta2 = 0.999, eps = 1e-8, weight_decay = 0.0;
};

// HF get_scheduler semantics: the multiplier of the base lr at optimizer step `step` (0-based) of `total`.
double lr_multiplier(LrSchedule s, int64_t step, int64_t total, int64_t warmup_steps);

class AdamW {
 public:
  // `params`: named parameters (HF keys); only those with requires_grad are updated. Moments are kept in fp32
  // whatever the parameter dtype, and bf16 parameters are updated through an fp32 master copy.
  // `zero1_over` (null or one rank: unsharded): ZeRO stage 1 over its ranks — each parameter gets one owning rank
  // (whole tensors, balanced by size); a rank keeps the moments and the fp32 master copy of its own parameters
  // only, updates them (from the gradients, already averaged over the ranks) and sends the new values to the
  // others: the same arithmetic as without sharding, with the state divided by the world size.
  AdamW(std::vector<std::pair<std::string, torch::Tensor>> params, AdamWConfig cfg, Comm* zero1_over = nullptr);

  // Clips the global L2 norm of the gradients to max_norm (<= 0: no clipping); returns the norm before clipping.
  double clip_grad_norm(double max_norm);
  // One update at learning rate `lr`; zero_grad() afterwards is the caller's choice.
  void step(double lr);
  void zero_grad();
  int64_t steps() const { return step_; }

  bool sharded() const { return comm_ != nullptr; }
  // Optimizer state bytes this rank holds (moments and master copies).
  int64_t state_bytes() const;

  // exp_avg / exp_avg_sq / master copies as named tensors, plus the step count. The file is the same whatever the
  // sharding and world size, so any run resumes from it. Sharded: every rank calls gather_for_save() (a collective
  // that assembles the state on rank 0), then rank 0 calls save().
  void gather_for_save();
  void save(const std::string& path) const;
  // Every rank loads what it keeps (all of it, or its own parameters' share).
  void load(const std::string& path);

 private:
  struct Slot {
    std::string name;
    torch::Tensor param, master, m, v;  // master: fp32 copy when the parameter is not fp32; all undefined where
                                        // another rank owns the parameter (sharded)
    int owner = 0;
  };
  bool mine(const Slot& s) const;
  std::vector<Slot> slots_;
  AdamWConfig cfg_;
  int64_t step_ = 0;
  Comm* comm_ = nullptr;
  // Sharded: the whole state, on rank 0, between gather_for_save() and save().
  mutable std::vector<std::pair<std::string, torch::Tensor>> gathered_;
};

}  // namespace multiref
