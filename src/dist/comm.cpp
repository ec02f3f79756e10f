#include "dist/comm.h"

// c10d's Gloo headers need gloo's own (Debian: libgloo-dev), and declare it only where the LibTorch build has it
// (USE_C10D_GLOO, from the torch target's compile definitions). NCCL likewise (USE_C10D_NCCL: CUDA LibTorch 2.x).
// A build with neither still runs single-process.
#if defined(USE_C10D_GLOO) && __has_include(<gloo/config.h>) && \
    __has_include(<torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>)
#define MULTIREF_HAVE_GLOO 1
#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>
#else
#define MULTIREF_HAVE_GLOO 0
#endif
#if defined(USE_C10D_NCCL) && __has_include(<torch/csrc/distributed/c10d/ProcessGroupNCCL.hpp>)
#define MULTIREF_HAVE_NCCL 1
#include <c10/cuda/CUDAFunctions.h>

#include <torch/csrc/distributed/c10d/ProcessGroupNCCL.hpp>
#else
#define MULTIREF_HAVE_NCCL 0
#endif
#if MULTIREF_HAVE_GLOO || MULTIREF_HAVE_NCCL
#include <torch/csrc/distributed/c10d/TCPStore.hpp>
#endif

#include <cmath>
#include <cstdlib>
#include <iostream>
#include <limits>
#include <nlohmann/json.hpp>

#include "util/common.h"

namespace multiref {

torch::Device device_for_rank(const torch::Device& resolved, const DistEnv& env, int cuda_devices) {
  if (!resolved.is_cuda() || !env.active() || cuda_devices < 1) return resolved;
  return torch::Device(torch::kCUDA, (c10::DeviceIndex)(env.local_rank % cuda_devices));
}

torch::Device device_for_rank(const torch::Device& resolved, const DistEnv& env) {
  auto d = device_for_rank(resolved, env, resolved.is_cuda() ? (int)torch::cuda::device_count() : 0);
#if MULTIREF_HAVE_NCCL
  if (d.is_cuda()) c10::cuda::set_device(d.index());  // NCCL's communicators and stray allocations follow it
#endif
  return d;
}

std::string comm_backend_for(const torch::Device& device) {
  if (MULTIREF_HAVE_NCCL && device.is_cuda()) return "nccl";
  return MULTIREF_HAVE_GLOO ? "gloo" : "";
}

#if MULTIREF_HAVE_GLOO || MULTIREF_HAVE_NCCL
struct Comm::Group {
  c10::intrusive_ptr<c10d::Store> store;
#if MULTIREF_HAVE_GLOO
  c10::intrusive_ptr<c10d::ProcessGroupGloo> gloo;
#endif
#if MULTIREF_HAVE_NCCL
  c10::intrusive_ptr<c10d::ProcessGroupNCCL> nccl;
#endif
  std::chrono::milliseconds timeout;
  std::string who;  // "rank r of n"

  void wait(const std::string& what, const c10::intrusive_ptr<c10d::Work>& w) {
    try {
      w->wait(timeout);
    } catch (const std::exception& e) {
      std::string m = e.what();
      fail(who, ": ", what, " failed: ", m.substr(0, m.find('\n')),
           ". Another rank has probably died (out of memory, killed) or is stuck; its own output says why. "
           "(--dist_timeout bounds the wait)");
    }
  }
  // The process group's operations (one backend is set).
  c10::intrusive_ptr<c10d::Work> allreduce(std::vector<torch::Tensor>& v) {
#if MULTIREF_HAVE_NCCL
    if (nccl) return nccl->allreduce(v);
#endif
#if MULTIREF_HAVE_GLOO
    return gloo->allreduce(v);
#else
    fail(who, ": no process group");
#endif
  }
  c10::intrusive_ptr<c10d::Work> broadcast(std::vector<torch::Tensor>& v, const c10d::BroadcastOptions& o) {
#if MULTIREF_HAVE_NCCL
    if (nccl) return nccl->broadcast(v, o);
#endif
#if MULTIREF_HAVE_GLOO
    return gloo->broadcast(v, o);
#else
    fail(who, ": no process group");
#endif
  }
};

Comm::Comm(const DistEnv& env, std::chrono::seconds timeout, const torch::Device& device)
    : env_(env), timeout_(timeout) {
  if (!env_.active()) return;
  std::string backend = comm_backend_for(device);
  if (backend.empty())
    fail("WORLD_SIZE=", env_.world_size, " asks for a multi-process run on ", device.str(),
         ", but this build of multiref has no c10d backend for it (Gloo needs libgloo-dev at build time)");
  auto g = std::make_unique<Group>();
  g->timeout = std::chrono::duration_cast<std::chrono::milliseconds>(timeout_);
  g->who = cat("rank ", env_.rank, " of ", env_.world_size);
  c10d::TCPStoreOptions so;
  so.port = (uint16_t)env_.master_port;
  so.isServer = env_.main();
  so.numWorkers = (size_t)env_.world_size;
  so.waitWorkers = true;
  so.timeout = std::chrono::duration_cast<std::chrono::milliseconds>(timeout_);
  try {
    g->store = c10::make_intrusive<c10d::TCPStore>(env_.master_addr, so);
  } catch (const std::exception& e) {
    fail("rank ", env_.rank, " of ", env_.world_size, ": no rendezvous at MASTER_ADDR:MASTER_PORT = ", env_.master_addr,
         ":", env_.master_port, " within ", timeout_.count(), " s (", e.what(),
         "). Are all ranks started, is the port free and reachable? (--dist_timeout sets the wait)");
  }
#if MULTIREF_HAVE_NCCL
  if (backend == "nccl") {
    // NCCL's watchdog ends a rank whose collective waits past the timeout (a dead peer): --dist_timeout.
    auto opts = c10d::ProcessGroupNCCL::Options::create();
    opts->timeout = g->timeout;
    try {
      g->nccl = c10::make_intrusive<c10d::ProcessGroupNCCL>(g->store, env_.rank, env_.world_size, opts);
    } catch (const std::exception& e) {
      fail("rank ", env_.rank, ": creating the NCCL process group failed: ", e.what());
    }
    device_ = device;
    pg_ = std::move(g);
    announce();
    return;
  }
#endif
#if MULTIREF_HAVE_GLOO
  auto opts = c10d::ProcessGroupGloo::Options::create(g->timeout);
  // As torch.distributed does: GLOO_SOCKET_IFNAME names the interface; else one machine talks over the loopback
  // interface and several use the address this host's name resolves to.
  if (const char* ifname = std::getenv("GLOO_SOCKET_IFNAME"); ifname && *ifname)
    opts->devices.push_back(c10d::ProcessGroupGloo::createDeviceForInterface(ifname));
  else if (env_.single_node())
    opts->devices.push_back(c10d::ProcessGroupGloo::createDeviceForHostname("127.0.0.1"));
  else
    opts->devices.push_back(c10d::ProcessGroupGloo::createDefaultDevice());
  try {
    g->gloo = c10::make_intrusive<c10d::ProcessGroupGloo>(g->store, env_.rank, env_.world_size, opts);
  } catch (const std::exception& e) {
    fail("rank ", env_.rank, ": connecting the Gloo process group failed: ", e.what(),
         " (several machines: set GLOO_SOCKET_IFNAME to the interface they share)");
  }
  pg_ = std::move(g);
  announce();
#endif
}

void Comm::announce() const {
  if (env_.main())
    std::cout << "data parallel: " << env_.world_size << " ranks (" << env_.local_world_size << " on this node), c10d "
              << backend() << (device_.is_cuda() ? "" : ", gradients reduced in fp32 on the CPU") << "\n"
              << std::flush;
}

void Comm::sum_inplace(torch::Tensor& t) {
  if (!pg_) return;
  // The backend's device (NCCL: the rank's GPU; Gloo: the CPU), copied back where `t` lives elsewhere.
  auto buf = t.device() == device_ ? t : t.to(device_);
  std::vector<torch::Tensor> v{buf};
  pg_->wait("all-reduce", pg_->allreduce(v));
  if (!buf.is_same(t)) t.copy_(buf);
}

void Comm::broadcast(const std::vector<torch::Tensor>& tensors, int root) {
  if (!pg_) return;
  for (auto& t : tensors) {
    // Any dtype; a contiguous buffer on the backend's device, copied back where the tensor is a view or elsewhere.
    auto buf = t.detach().to(device_).contiguous();
    std::vector<torch::Tensor> v{buf};
    c10d::BroadcastOptions o;
    o.rootRank = root;
    pg_->wait("broadcast", pg_->broadcast(v, o));
    if (!buf.is_same(t)) {
      torch::NoGradGuard ng;
      t.detach().copy_(buf);
    }
  }
}

void Comm::barrier() {
  if (!pg_) return;
  // A one-element all-reduce: the same on every backend (NCCL's barrier guesses a device), and as strict.
  auto t = torch::zeros({1}, torch::TensorOptions().dtype(torch::kFloat32).device(device_));
  std::vector<torch::Tensor> v{t};
  pg_->wait("barrier", pg_->allreduce(v));
  (void)t.cpu();
}

const char* Comm::backend() const {
  if (!pg_) return "none";
  return device_.is_cuda() ? "nccl" : "gloo";
}

#else
struct Comm::Group {};

Comm::Comm(const DistEnv& env, std::chrono::seconds timeout, const torch::Device& device)
    : env_(env), timeout_(timeout) {
  if (env_.active())
    fail("WORLD_SIZE=", env_.world_size, " asks for a multi-process run on ", device.str(),
         ", but this build of multiref has no c10d backend (Gloo's headers were missing: on Debian apt install "
         "libgloo-dev, then rebuild)");
}
// One rank: nothing to exchange.
void Comm::sum_inplace(torch::Tensor&) {}
void Comm::broadcast(const std::vector<torch::Tensor>&, int) {}
void Comm::barrier() {}
const char* Comm::backend() const {
  return "none";
}
#endif

Comm::~Comm() = default;

void Comm::mean_gradients(const std::vector<torch::Tensor>& params, int64_t bucket_elems) {
  if (!pg_) return;
  // Buckets of consecutive parameters, each flattened into one fp32 buffer: one collective per bucket.
  size_t i = 0;
  while (i < params.size()) {
    size_t j = i;
    int64_t n = 0;
    while (j < params.size() && (j == i || n + params[j].numel() <= bucket_elems)) n += params[j++].numel();
    auto flat = torch::empty({n}, torch::TensorOptions().dtype(torch::kFloat32).device(device_));
    int64_t at = 0;
    for (size_t k = i; k < j; ++k) {
      auto g = params[k].grad();
      auto dst = flat.narrow(0, at, params[k].numel());
      if (g.defined())
        dst.copy_(g.reshape({-1}));
      else
        dst.zero_();
      at += params[k].numel();
    }
    sum_inplace(flat);
    flat.div_((double)env_.world_size);
    at = 0;
    for (size_t k = i; k < j; ++k) {
      auto p = params[k];
      auto src = flat.narrow(0, at, p.numel()).view(p.sizes());
      if (!p.grad().defined()) p.mutable_grad() = torch::zeros_like(p);
      p.mutable_grad().copy_(src);
      at += p.numel();
    }
    i = j;
  }
}

std::vector<double> Comm::sum(const std::vector<double>& values) {
  if (!pg_ || values.empty()) return values;
  auto t = torch::tensor(values, torch::kFloat64);
  sum_inplace(t);
  return std::vector<double>(t.data_ptr<double>(), t.data_ptr<double>() + t.numel());
}

std::vector<std::string> Comm::gather_strings(const std::string& s) {
  if (!active()) return {s};
  // Through Gloo collectives, not the store: a dead peer then fails the exchange at once instead of after the
  // store's timeout. The lengths first, then every rank's bytes in its own row of a [world, longest] sum.
  auto lengths = gather({(double)s.size()});
  int64_t longest = 0;
  for (auto& l : lengths) longest = std::max(longest, (int64_t)l[0]);
  auto t = torch::zeros({(int64_t)env_.world_size, std::max<int64_t>(1, longest)}, torch::kInt32);
  int32_t* mine = t.data_ptr<int32_t>() + env_.rank * t.size(1);
  for (size_t i = 0; i < s.size(); ++i) mine[i] = (int32_t)(unsigned char)s[i];
  sum_inplace(t);
  std::vector<std::string> out((size_t)env_.world_size);
  for (int r = 0; r < env_.world_size; ++r) {
    auto row = t[r].contiguous();
    const int32_t* p = row.data_ptr<int32_t>();
    for (int64_t i = 0; i < (int64_t)lengths[(size_t)r][0]; ++i) out[(size_t)r].push_back((char)p[i]);
  }
  return out;
}

std::map<std::string, double> Comm::reduce(const std::map<std::string, double>& values, bool sum) {
  if (!pg_) return values;
  nlohmann::json mine = nlohmann::json::object();
  for (auto& [k, v] : values) mine[k] = std::isfinite(v) ? nlohmann::json(v) : nlohmann::json(nullptr);
  std::map<std::string, std::pair<double, int>> acc;
  for (auto& text : gather_strings(mine.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace))) {
    auto theirs = nlohmann::json::parse(text);  // a named value: items() only refers to it
    for (auto& [k, v] : theirs.items()) {
      auto& a = acc[k];
      a.first += v.is_number() ? v.get<double>() : std::numeric_limits<double>::quiet_NaN();
      a.second += 1;
    }
  }
  std::map<std::string, double> out;
  for (auto& [k, a] : acc) out[k] = sum ? a.first : a.first / a.second;
  return out;
}

std::vector<std::vector<double>> Comm::gather(const std::vector<double>& values) {
  if (!pg_) return {values};
  // An all-reduce of a [world, n] buffer where each rank fills only its own row: Gloo's allgather, without its
  // list-of-outputs bookkeeping.
  auto t = torch::zeros({(int64_t)env_.world_size, (int64_t)values.size()}, torch::kFloat64);
  if (!values.empty()) t[env_.rank].copy_(torch::tensor(values, torch::kFloat64));
  sum_inplace(t);
  std::vector<std::vector<double>> out(env_.world_size);
  for (int r = 0; r < env_.world_size; ++r) {
    auto row = t[r].contiguous();
    out[r].assign(row.data_ptr<double>(), row.data_ptr<double>() + row.numel());
  }
  return out;
}

}  // namespace multiref
