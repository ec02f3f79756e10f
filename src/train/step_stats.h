// A training step's statistics, accumulated where they are computed and read from the device once per step.
// Losses return their statistics as detached 0-dim tensors (objectives/losses.h); a trainer adds each micro-batch's
// share here (acc += value * num / den, in float64, in the order added) and reads the whole step with one copy to
// the host: on a GPU, one synchronization per step instead of one per statistic and micro-batch.
#pragma once
#include <torch/torch.h>

#include <map>
#include <string>
#include <vector>

namespace multiref {

class StepStats {
 public:
  // acc[name] += value * num / den. `value`: a 0-dim tensor of any floating dtype on any device (undefined: ignored).
  void add(const std::string& name, const torch::Tensor& value, double num = 1.0, double den = 1.0);
  // The same for a value already on the host.
  void add(const std::string& name, double value, double num = 1.0, double den = 1.0);
  bool empty() const { return device_.empty() && host_.empty(); }
  // Every statistic, by name (one device-to-host copy for all device ones).
  std::map<std::string, double> read() const;

 private:
  std::map<std::string, torch::Tensor> device_;  // 0-dim float64
  std::map<std::string, double> host_;
};

}  // namespace multiref
