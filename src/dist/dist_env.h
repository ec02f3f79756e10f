// Which process of a multi-process run this is, read from the variables torchrun sets (RANK, WORLD_SIZE,
// LOCAL_RANK, LOCAL_WORLD_SIZE, MASTER_ADDR, MASTER_PORT) — also what SLURM wrappers, Kubernetes PyTorchJob and
// `multiref launch` set. Without them (or with WORLD_SIZE=1) a run is one process and nothing changes.
#pragma once
#include <string>

namespace multiref {

struct DistEnv {
  int rank = 0;
  int world_size = 1;
  int local_rank = 0;
  int local_world_size = 1;
  std::string master_addr = "127.0.0.1";
  int master_port = 29500;

  bool active() const { return world_size > 1; }
  bool main() const { return rank == 0; }
  // All ranks on this machine (a single-node run: Gloo can talk over the loopback interface).
  bool single_node() const { return local_world_size == world_size; }

  // Reads the environment; a malformed or inconsistent variable is an Error naming it and the fix.
  static DistEnv from_env();
};

}  // namespace multiref
