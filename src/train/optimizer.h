// AdamW with decoupled weight decay, gradient clipping and the learning-rate schedules of HF Trainer
// (linear / cosine / constant, with linear warmup). Its state round-trips through safetensors, so a resumed run
// continues bit for bit. Shared by both trainers.
#pragma once
#include <torch/torch.h>

#include <string>
#include <utility>
#include <vector>

namespace multiref {

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
  AdamW(std::vector<std::pair<std::string, torch::Tensor>> params, AdamWConfig cfg);

  // Clips the global L2 norm of the gradients to max_norm (<= 0: no clipping); returns the norm before clipping.
  double clip_grad_norm(double max_norm);
  // One update at learning rate `lr`; zero_grad() afterwards is the caller's choice.
  void step(double lr);
  void zero_grad();
  int64_t steps() const { return step_; }

  // exp_avg / exp_avg_sq / master copies as named tensors, plus the step count.
  void save(const std::string& path) const;
  void load(const std::string& path);

 private:
  struct Slot {
    std::string name;
    torch::Tensor param, master, m, v;  // master: fp32 copy when the parameter is not fp32
  };
  std::vector<Slot> slots_;
  AdamWConfig cfg_;
  int64_t step_ = 0;
};

}  // namespace multiref
