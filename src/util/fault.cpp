#include "util/fault.h"

#include <csignal>
#include <cstdlib>
#include <cstring>
#include <string>

namespace multiref {

void fault_point(const char* site) {
  // Parsed once: the site and the call number that dies. A malformed value never kills.
  // "site:n", or "site:n:r" to kill only the process whose RANK is r (one rank of a multi-process run).
  static const auto plan = []() -> std::pair<std::string, long> {
    const char* v = std::getenv("MULTIREF_FAULT_KILL");
    if (!v) return {"", 0};
    std::string spec = v;
    size_t c1 = spec.find(':');
    if (c1 == std::string::npos) return {"", 0};
    size_t c2 = spec.find(':', c1 + 1);
    if (c2 != std::string::npos) {
      const char* rank = std::getenv("RANK");
      if (spec.substr(c2 + 1) != (rank ? rank : "0")) return {"", 0};
    }
    return {spec.substr(0, c1), std::strtol(spec.substr(c1 + 1, c2 - c1 - 1).c_str(), nullptr, 10)};
  }();
  static long calls = 0;
  if (plan.second <= 0 || plan.first != site) return;
  if (++calls == plan.second) std::raise(SIGKILL);
}

}  // namespace multiref
