#include "rl/references.h"

#include "objectives/objectives.h"
#include "util/common.h"

namespace multiref {

ReferenceSet resolve_references(const ReferenceFlags& f, bool rkl) {
  if (!f.refs.empty() && (!f.ref_a.empty() || !f.ref_b.empty()))
    fail("give either --refs or --ref_a/--ref_b, not both");
  ReferenceSet s;
  if (!f.refs.empty()) {
    s.ids = f.refs;
    for (size_t i = 0; i < f.refs.size(); ++i) s.names.push_back("ref_" + std::to_string(i));
    s.weights = f.ref_weights.empty() ? std::vector<double>(f.refs.size(), 1.0 / (double)f.refs.size()) : f.ref_weights;
    validate_weights(s.weights, f.refs.size(), "--ref_weights");
    return s;
  }
  if (f.ref_a.empty()) fail("--ref_a is required (or --refs M1,M2,...)");
  if (!f.ref_weights.empty()) fail("--ref_weights goes with --refs; with --ref_a/--ref_b use --alpha / --beta");
  double w = rkl ? f.alpha : f.beta;
  const char* flag = rkl ? "--alpha" : "--beta";
  if (!(w >= 0 && w <= 1)) fail(flag, " must lie in [0, 1], got ", w);
  s.ids = {f.ref_a};
  s.names = {"ref_a"};
  s.weights = {1.0};  // a single reference carries all the weight; --alpha/--beta only split it with ref_b
  if (!f.ref_b.empty()) {
    s.ids.push_back(f.ref_b);
    s.names.push_back("ref_b");
    s.weights = {w, 1 - w};
  }
  return s;
}

}  // namespace multiref
