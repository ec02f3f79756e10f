#include "train/memory_plan.h"

#include <iomanip>
#include <sstream>

namespace multiref {

std::vector<MemoryPlanRow> memory_plan(const MemoryPlanInput& in, const std::vector<int>& worlds) {
  double P = (double)in.policy.num_parameters(), b = (double)in.weight_bytes;
  double refs = 0;
  for (auto& r : in.references) refs += (double)r.num_parameters() * b;
  // AdamW (train/optimizer.h): two fp32 moments, plus an fp32 master copy when the weights are not fp32.
  double state = P * (8.0 + (in.weight_bytes == 4 ? 0.0 : 4.0));
  std::vector<MemoryPlanRow> out;
  for (int w : worlds)
    for (bool z : {false, true}) {
      if (z && w == 1) continue;
      MemoryPlanRow r;
      r.world = w;
      r.zero1 = z;
      r.weights = P * b;
      r.gradients = P * b;
      r.optimizer = z ? state / w : state;
      r.references = refs;
      out.push_back(r);
    }
  return out;
}

std::string memory_plan_table(const MemoryPlanInput& in) {
  auto gb = [](double bytes) {
    std::ostringstream s;
    s << std::fixed << std::setprecision(1) << bytes / 1e9;
    return s.str();
  };
  std::ostringstream os;
  os << "memory per rank, GB (1 GB = 1e9 bytes): policy " << gb((double)in.policy.num_parameters()) << "B parameters";
  for (auto& r : in.references) os << ", reference " << gb((double)r.num_parameters()) << "B";
  os << ", weights " << (in.weight_bytes == 2 ? "bfloat16" : "float32") << "; activations not included\n";
  os << "ranks  zero  weights  gradients  optimizer  references  total\n";
  for (auto& r : memory_plan(in, {1, 2, 4, 8}))
    os << std::setw(5) << r.world << "  " << std::setw(4) << (r.zero1 ? "1" : "0") << "  " << std::setw(7)
       << gb(r.weights) << "  " << std::setw(9) << gb(r.gradients) << "  " << std::setw(9) << gb(r.optimizer) << "  "
       << std::setw(10) << gb(r.references) << "  " << std::setw(5) << gb(r.total()) << "\n";
  return os.str();
}

}  // namespace multiref
