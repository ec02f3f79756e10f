#include "dist/dist_env.h"

#include <cstdlib>

#include "util/common.h"
#include "util/flags.h"

namespace multiref {

namespace {

// The variable as an integer in [lo, hi], or `fallback` when unset.
int env_int(const char* name, int fallback, int lo, int hi) {
  const char* v = std::getenv(name);
  if (!v || !*v) return fallback;
  int64_t x = 0;
  try {
    x = parse_int(v, name);
  } catch (const Error&) {
    fail("environment variable ", name, "='", v, "' is not an integer (torchrun and `multiref launch` set it)");
  }
  if (x < lo || x > hi) fail("environment variable ", name, "=", x, " is outside [", lo, ", ", hi, "]");
  return (int)x;
}

}  // namespace

DistEnv DistEnv::from_env() {
  DistEnv e;
  e.world_size = env_int("WORLD_SIZE", 1, 1, 1 << 20);
  e.rank = env_int("RANK", 0, 0, e.world_size - 1);
  e.local_world_size = env_int("LOCAL_WORLD_SIZE", e.world_size, 1, e.world_size);
  e.local_rank = env_int("LOCAL_RANK", e.rank % e.local_world_size, 0, e.local_world_size - 1);
  if (const char* a = std::getenv("MASTER_ADDR"); a && *a) e.master_addr = a;
  e.master_port = env_int("MASTER_PORT", 29500, 1, 65535);
  if (e.world_size > 1 && !std::getenv("RANK"))
    fail("WORLD_SIZE=", e.world_size,
         " but RANK is not set: start the ranks with torchrun or `multiref launch`, "
         "which set both");
  return e;
}

}  // namespace multiref
