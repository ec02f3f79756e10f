#include "train/step_stats.h"

#include "util/common.h"

namespace multiref {

void StepStats::add(const std::string& name, const torch::Tensor& value, double num, double den) {
  if (!value.defined()) return;
  if (host_.count(name)) fail("StepStats: '", name, "' is added both as a tensor and as a host value");
  auto v = value.detach().to(torch::kFloat64);
  auto& acc = device_[name];
  // Starting from 0 (not from the first value) keeps the arithmetic of `double acc = 0; acc += v * num / den`.
  if (!acc.defined()) acc = torch::zeros({}, v.options());
  acc = acc + v * num / den;
}

void StepStats::add(const std::string& name, double value, double num, double den) {
  if (device_.count(name)) fail("StepStats: '", name, "' is added both as a tensor and as a host value");
  host_[name] += value * num / den;
}

std::map<std::string, double> StepStats::read() const {
  std::map<std::string, double> out = host_;
  if (device_.empty()) return out;
  std::vector<torch::Tensor> values;
  auto device = device_.begin()->second.device();
  for (auto& [name, t] : device_) values.push_back(t.to(device));
  auto host = torch::stack(values).to(torch::kCPU).contiguous();  // the one copy
  const double* p = host.data_ptr<double>();
  size_t i = 0;
  for (auto& [name, t] : device_) out[name] = p[i++];
  return out;
}

}  // namespace multiref
