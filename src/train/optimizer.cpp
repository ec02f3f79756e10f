#include "train/optimizer.h"

#include <algorithm>
#include <cmath>
#include <map>

#include "dist/comm.h"
#include "io/safetensors.h"
#include "kernels/cpu_adamw.h"
#include "model/flat_parameters.h"
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

AdamW::AdamW(std::vector<std::pair<std::string, torch::Tensor>> params, AdamWConfig cfg, Comm* zero1_over)
    : cfg_(cfg), comm_(zero1_over && zero1_over->active() ? zero1_over : nullptr) {
  torch::NoGradGuard ng;
  for (auto& [name, p] : params) {
    if (!p.requires_grad()) continue;
    Slot s;
    s.name = name;
    s.param = p;
    slots_.push_back(std::move(s));
  }
  if (comm_) {
    // Largest tensors first, each to the rank holding the fewest elements so far: the same plan on every rank.
    std::vector<size_t> order(slots_.size());
    for (size_t i = 0; i < order.size(); ++i) order[i] = i;
    std::stable_sort(order.begin(), order.end(),
                     [&](size_t a, size_t b) { return slots_[a].param.numel() > slots_[b].param.numel(); });
    std::vector<int64_t> held((size_t)comm_->world_size(), 0);
    for (size_t i : order) {
      int r = (int)(std::min_element(held.begin(), held.end()) - held.begin());
      slots_[i].owner = r;
      held[(size_t)r] += slots_[i].param.numel();
    }
  }
  // The state of this rank's parameters, each kind in one allocation (model/flat_parameters.h), per device.
  std::map<std::pair<int, int>, std::vector<Slot*>> by_device;
  for (auto& s : slots_)
    if (mine(s)) by_device[{(int)s.param.device().type(), (int)s.param.device().index()}].push_back(&s);
  for (auto& [dev, slots] : by_device) {
    auto opts = slots[0]->param.options().dtype(torch::kFloat32).requires_grad(false);
    std::vector<std::vector<int64_t>> shapes, low;  // all; those that need an fp32 master copy
    for (auto* s : slots) {
      shapes.push_back(s->param.sizes().vec());
      if (s->param.scalar_type() != torch::kFloat32) low.push_back(s->param.sizes().vec());
    }
    auto m = flat_tensors(shapes, opts, /*zero=*/true), v = flat_tensors(shapes, opts, /*zero=*/true);
    auto master = flat_tensors(low, opts, /*zero=*/false);
    size_t j = 0;
    for (size_t i = 0; i < slots.size(); ++i) {
      auto* s = slots[i];
      s->m = m[i];
      s->v = v[i];
      if (s->param.scalar_type() != torch::kFloat32) s->master = master[j++].copy_(s->param.detach());
    }
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

bool AdamW::mine(const Slot& s) const {
  return !comm_ || s.owner == comm_->rank();
}

int64_t AdamW::state_bytes() const {
  int64_t b = 0;
  for (auto& s : slots_)
    for (auto* t : {&s.master, &s.m, &s.v})
      if (t->defined()) b += t->numel() * (int64_t)t->element_size();
  return b;
}

void AdamW::step(double lr) {
  torch::NoGradGuard ng;
  ++step_;
  double bc1 = 1 - std::pow(cfg_.beta1, (double)step_), bc2 = 1 - std::pow(cfg_.beta2, (double)step_);
  AdamWUpdate u{lr, cfg_.beta1, cfg_.beta2, cfg_.eps, cfg_.weight_decay, bc1, bc2};
  for (auto& s : slots_) {
    const auto& g = s.param.grad();
    if (!g.defined() || !mine(s)) continue;
    // One pass over memory on CPU (kernels/cpu_adamw.h); the tensor-op oracle elsewhere.
    if (fused_adamw_applies(s.param, g, s.master, s.m, s.v))
      fused_adamw_step(s.param, g, s.master, s.m, s.v, u);
    else
      reference_adamw_step(s.param, g, s.master, s.m, s.v, u);
  }
  if (!comm_) return;
  // Sharded: each owner sends its parameters' new fp32 values (the master copy where there is one) in one flat
  // buffer; the others round them to the parameter dtype exactly as the owner did.
  for (int r = 0; r < comm_->world_size(); ++r) {
    int64_t n = 0;
    for (auto& s : slots_)
      if (s.owner == r) n += s.param.numel();
    if (n == 0) continue;
    auto flat = torch::empty({n}, torch::kFloat32);
    int64_t at = 0;
    if (r == comm_->rank())
      for (auto& s : slots_) {
        if (s.owner != r) continue;
        flat.narrow(0, at, s.param.numel()).copy_((s.master.defined() ? s.master : s.param).reshape({-1}));
        at += s.param.numel();
      }
    comm_->broadcast({flat}, r);
    at = 0;
    for (auto& s : slots_) {
      if (s.owner != r) continue;
      if (r != comm_->rank()) s.param.copy_(flat.narrow(0, at, s.param.numel()).view(s.param.sizes()));
      at += s.param.numel();
    }
  }
}

void AdamW::gather_for_save() {
  gathered_.clear();
  if (!comm_) return;
  torch::NoGradGuard ng;
  // Tensor by tensor from its owner (a broadcast: Gloo's simplest collective); rank 0 keeps them.
  for (auto& s : slots_) {
    bool has_master = s.param.scalar_type() != torch::kFloat32;
    std::vector<std::pair<std::string, torch::Tensor*>> parts = {{".exp_avg", &s.m}, {".exp_avg_sq", &s.v}};
    if (has_master) parts.push_back({".master", &s.master});
    for (auto& [suffix, t] : parts) {
      auto buf = mine(s) ? *t : torch::empty(s.param.sizes(), torch::kFloat32);
      comm_->broadcast({buf}, s.owner);
      if (comm_->main()) gathered_.emplace_back(s.name + suffix, buf);
    }
  }
}

void AdamW::zero_grad() {
  for (auto& s : slots_)
    if (s.param.grad().defined()) s.param.mutable_grad() = torch::Tensor();
}

void AdamW::save(const std::string& path) const {
  if (comm_) {
    if (gathered_.empty()) fail("AdamW::save: sharded state not gathered (gather_for_save on every rank first)");
    save_safetensors(path, gathered_, {{"step", std::to_string(step_)}});
    gathered_.clear();  // rank 0 held every rank's state only for this write
    return;
  }
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
    if (!mine(s)) continue;  // sharded: another rank loads it
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
