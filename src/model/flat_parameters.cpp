#include "model/flat_parameters.h"

#include <map>
#include <set>
#include <tuple>

namespace multiref {

std::vector<torch::Tensor> flat_tensors(const std::vector<std::vector<int64_t>>& shapes,
                                        const torch::TensorOptions& opts, bool zero) {
  const int64_t align = std::max<int64_t>(1, 64 / (int64_t)c10::elementSize(c10::typeMetaToScalarType(opts.dtype())));
  std::vector<int64_t> at(shapes.size());
  int64_t total = 0;
  for (size_t i = 0; i < shapes.size(); ++i) {
    at[i] = total;
    int64_t n = 1;
    for (auto d : shapes[i]) n *= d;
    total += (n + align - 1) / align * align;
  }
  auto flat = zero ? torch::zeros({total}, opts) : torch::empty({total}, opts);
  std::vector<torch::Tensor> out;
  for (size_t i = 0; i < shapes.size(); ++i) {
    int64_t n = 1;
    for (auto d : shapes[i]) n *= d;
    out.push_back(flat.narrow(0, at[i], n).view(shapes[i]));
  }
  return out;
}

int64_t pack_parameters(torch::nn::Module& module) {
  torch::NoGradGuard ng;
  // Grouped by dtype and device, in the module's own order (neighbours in memory are neighbours in the model).
  std::map<std::tuple<int, int, int>, std::vector<torch::Tensor>> groups;
  std::vector<std::tuple<int, int, int>> order;
  std::set<const void*> seen;  // a parameter registered twice moves once
  for (auto& p : module.parameters(/*recurse=*/true)) {
    if (!seen.insert(p.unsafeGetTensorImpl()).second) continue;
    auto key = std::make_tuple((int)p.scalar_type(), (int)p.device().type(), (int)p.device().index());
    if (!groups.count(key)) order.push_back(key);
    groups[key].push_back(p);
  }
  for (auto& key : order) {
    auto& ps = groups[key];
    std::vector<std::vector<int64_t>> shapes;
    for (auto& p : ps) shapes.push_back(p.sizes().vec());
    auto views = flat_tensors(shapes, ps[0].options().requires_grad(false), /*zero=*/false);
    for (size_t i = 0; i < ps.size(); ++i) {
      views[i].copy_(ps[i]);
      ps[i].set_data(views[i]);
    }
  }
  return (int64_t)order.size();
}

}  // namespace multiref
