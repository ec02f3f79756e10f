#include "train/optimizer.h"

#include <cmath>

#include "io/safetensors.h"
#include "util/common.h"

namespace multiref {

std::vector<std::pair<std::string, LrSchedule>> lr_schedule_choices() {
  return {{"linear", LrSchedule::Linear},
          {"cosine", LrSchedule::Cosine},
          {"constant", LrSchedule::Constant},
          {"constant_with_warmup", LrSchedule::ConstantWithWarmup}};
}

double lr_multiplier(LrSchedule s, int64_t step, int64_t total, int64_t warmup) {
  if (s == LrSchedule::Constant) return 1.0;
  if (step < warmup) return (double)step / (double)std::max<int64_t>(1, warmup);
  if (s == LrSchedule::ConstantWithWarmup) return 1.0;
  double progress = (double)(step - warmup) / (double)std::max<int64_t>(1, total - warmup);
  if (s == LrSchedule::Linear) return std::max(0.0, 1.0 - progress);
  return std::max(0.0, 0.5 * (1.0 + std::cos(M_PI * progress)));  // cosine, half a period
}

AdamW::AdamW(std::vector<std::pair<std::string, torch::Tensor>> params, AdamWConfig cfg) : cfg_(cfg) {
  torch::NoGradGuard ng;
  for (auto& [name, p] : params) {
    if (!p.requires_grad()) continue;
    Slot s;
    s.name = name;
    s.param = p;
    if (p.scalar_type() != torch::kFloat32) s.master = p.detach().to(torch::kFloat32).clone();
    s.m = torch::zeros(p.sizes(), p.options().dtype(torch::kFloat32));
    s.v = torch::zeros(p.sizes(), p.options().dtype(torch::kFloat32));
    slots_.push_back(std::move(s));
  }
}

double AdamW::clip_grad_norm(double max_norm) {
  torch::NoGradGuard ng;
  double sq = 0;
  for (auto& s : slots_) {
    const auto& g = s.param.grad();
    if (!g.defined()) continue;
    // Each tensor's norm accumulates in fp32 (fp64 for fp64 grads) without a widened copy of the gradient (a
    // float64 copy plus its square were 8 GB of fresh memory per step for a 0.5B model); the sum over tensors in
    // double.
    auto acc = g.scalar_type() == torch::kFloat64 ? torch::kFloat64 : torch::kFloat32;
    double n = at::linalg_vector_norm(g, 2, c10::nullopt, false, acc).item<double>();
    sq += n * n;
  }
  double norm = std::sqrt(sq);
  if (max_norm > 0 && norm > max_norm) {
    double scale = max_norm / (norm + 1e-6);  // torch.nn.utils.clip_grad_norm_'s coefficient
    for (auto& s : slots_)
      if (s.param.grad().defined()) s.param.grad().mul_(scale);
  }
  return norm;
}

void AdamW::step(double lr) {
  torch::NoGradGuard ng;
  ++step_;
  double bc1 = 1 - std::pow(cfg_.beta1, (double)step_), bc2 = 1 - std::pow(cfg_.beta2, (double)step_);
  for (auto& s : slots_) {
    if (!s.param.grad().defined()) continue;
    auto g = s.param.grad().to(torch::kFloat32);
    auto& w = s.master.defined() ? s.master : s.param;
    s.m.mul_(cfg_.beta1).add_(g, 1 - cfg_.beta1);
    s.v.mul_(cfg_.beta2).addcmul_(g, g, 1 - cfg_.beta2);
    if (cfg_.weight_decay != 0) w.mul_(1 - lr * cfg_.weight_decay);  // decoupled decay (torch.optim.AdamW)
    auto denom = (s.v / bc2).sqrt_().add_(cfg_.eps);
    w.addcdiv_(s.m, denom, -lr / bc1);
    if (s.master.defined()) s.param.copy_(s.master);
  }
}

void AdamW::zero_grad() {
  for (auto& s : slots_)
    if (s.param.grad().defined()) s.param.mutable_grad() = torch::Tensor();
}

void AdamW::save(const std::string& path) const {
  std::vector<std::pair<std::string, torch::Tensor>> t;
  for (auto& s : slots_) {
    t.emplace_back(s.name + ".exp_avg", s.m);
    t.emplace_back(s.name + ".exp_avg_sq", s.v);
    if (s.master.defined()) t.emplace_back(s.name + ".master", s.master);
  }
  save_safetensors(path, t, {{"step", std::to_string(step_)}});
}

void AdamW::load(const std::string& path) {
  auto f = SafetensorsFile::open(path);
  torch::NoGradGuard ng;
  for (auto& s : slots_) {
    for (auto [suffix, dst] : {std::pair<const char*, torch::Tensor*>{".exp_avg", &s.m}, {".exp_avg_sq", &s.v}}) {
      auto* e = f->find(s.name + suffix);
      if (!e) fail(path, ": optimizer state lacks '", s.name, suffix, "' (was it saved for another model?)");
      dst->copy_(f->tensor(s.name + suffix));
    }
    if (s.master.defined()) {
      if (!f->find(s.name + ".master")) fail(path, ": optimizer state lacks the fp32 master copy of '", s.name, "'");
      s.master.copy_(f->tensor(s.name + ".master"));
    }
  }
  const auto& meta = f->metadata();
  if (!meta.contains("step")) fail(path, ": optimizer state has no step count");
  step_ = std::stoll(meta["step"].get<std::string>());
}

}  // namespace multiref
