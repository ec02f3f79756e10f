// The collectives a data-parallel run needs, on torch's own c10d: a TCPStore for the rendezvous (rank 0 serves it
// at MASTER_ADDR:MASTER_PORT), ProcessGroupGloo on CPU and ProcessGroupNCCL where the run is on CUDA and LibTorch
// has it (CUDA LibTorch 2.x; USE_C10D_NCCL). One Comm per process; with one rank every operation is a no-op, so
// trainers call them unconditionally.
//
// Gradients are reduced in fp32 buckets (Gloo cannot reduce bf16, and fp32 sums of bf16 gradients are what
// TRL/accelerate's mixed precision does too). With NCCL the buffers live on the rank's GPU (no host round trip). Every
// operation waits at most --dist_timeout: a rank that died (OOM, kill -9) makes the others fail with an Error naming
// the operation instead of hanging.
#pragma once
#include <torch/torch.h>

#include <chrono>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "dist/dist_env.h"

namespace multiref {

// The device a rank runs on: `resolved` (from --device), where a CUDA device becomes cuda:(LOCAL_RANK mod the
// visible GPUs), so torchrun's N ranks per node take one GPU each (more ranks than GPUs share them round robin).
torch::Device device_for_rank(const torch::Device& resolved, const DistEnv& env, int cuda_devices);
// The same with this machine's GPU count; also makes that GPU the current one (NCCL's communicators use it).
torch::Device device_for_rank(const torch::Device& resolved, const DistEnv& env);

// Which c10d backend a multi-process run on `device` uses in this build: "nccl" (CUDA, built with NCCL), "gloo",
// or "" when the build has neither.
std::string comm_backend_for(const torch::Device& device);

class Comm {
 public:
  // One rank: no process group. Several: connects to the others (every rank must call this, rank 0 first or not).
  // `device` is the rank's (device_for_rank): NCCL where it is a CUDA device and the build has NCCL, else Gloo.
  Comm(const DistEnv& env, std::chrono::seconds timeout, const torch::Device& device = torch::kCPU);
  ~Comm();
  Comm(const Comm&) = delete;
  Comm& operator=(const Comm&) = delete;

  int rank() const { return env_.rank; }
  int world_size() const { return env_.world_size; }
  bool active() const { return env_.active(); }
  bool main() const { return env_.main(); }
  const DistEnv& env() const { return env_; }
  const char* backend() const;  // "gloo" | "nccl" | "none" (one rank)

  // Every rank's gradients of `params` replaced by their mean over the ranks, in fp32 buckets of at most
  // `bucket_elems` elements (ranks must pass the same parameters in the same order). Parameters without a
  // gradient count as zeros.
  void mean_gradients(const std::vector<torch::Tensor>& params, int64_t bucket_elems = 1 << 24);
  // Sums of `values` over the ranks (fp64: metrics, counts).
  std::vector<double> sum(const std::vector<double>& values);
  // Every rank's string, rank by rank (small payloads such as a step's metrics).
  std::vector<std::string> gather_strings(const std::string& s);
  // Named values (a step's metrics) combined over the ranks, key by key over the ranks that have the key: their mean,
  // or with `sum` their sum. Every rank gets the same result. Non-finite values stay non-finite.
  std::map<std::string, double> reduce(const std::map<std::string, double>& values, bool sum = false);
  // Every rank's `values` (the same length on every rank), rank by rank.
  std::vector<std::vector<double>> gather(const std::vector<double>& values);
  // `tensors` of rank `root` copied into every rank's (same shapes and dtypes everywhere).
  void broadcast(const std::vector<torch::Tensor>& tensors, int root = 0);
  // The fp32 sum over the ranks of the flat `t` (in place).
  void sum_inplace(torch::Tensor& t);
  void barrier();

 private:
  void announce() const;  // rank 0 prints the world and the backend once connected
  struct Group;           // the store and the process group (c10d's headers stay out of everything that includes this)
  DistEnv env_;
  std::chrono::seconds timeout_;
  torch::Device device_ = torch::kCPU;  // where collective buffers live: the rank's GPU under NCCL, else the CPU
  std::unique_ptr<Group> pg_;           // null with one rank
};

}  // namespace multiref
