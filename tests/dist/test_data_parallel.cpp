// Data parallel on c10d Gloo, end to end with 2 processes on this machine (issue 19): `multiref launch` itself, and
// dpo_training on 2 ranks x per-device batch B giving the weights of 1 rank x 2B, resuming on another world size, and
// a rank that dies taking the others down with an error instead of a hang.
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>

#include "dist/comm.h"
#include "io/safetensors.h"
#include "rl/dpo_world.h"
#include "rl/ids_world.h"
#include "test_util.h"
#include "train/train_checkpoint.h"

using namespace multiref;
using namespace multiref::testing;

namespace {

// A TCP port nobody listens on now (the kernel's pick), for one run's rendezvous.
int free_port() {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  a.sin_port = 0;
  bind(fd, (sockaddr*)&a, sizeof a);
  socklen_t n = sizeof a;
  getsockname(fd, (sockaddr*)&a, &n);
  int port = ntohs(a.sin_port);
  close(fd);
  return port;
}

std::string launch(int nproc, const std::string& command) {
  return mr("launch --nproc_per_node " + std::to_string(nproc) + " --master_port " + std::to_string(free_port()) +
            " --grace_seconds 5 -- " + command);
}

double max_abs_diff(const std::string& a, const std::string& b) {
  auto ta = load_checkpoint_tensors(a), tb = load_checkpoint_tensors(b);
  EXPECT_EQ(ta.size(), tb.size());
  double m = 0;
  for (auto& [k, t] : ta) {
    EXPECT_TRUE(tb.count(k)) << k;
    if (tb.count(k)) m = std::max(m, (t.to(torch::kFloat64) - tb.at(k).to(torch::kFloat64)).abs().max().item<double>());
  }
  return m;
}

}  // namespace

// torchrun's N ranks per node take a GPU each (LOCAL_RANK), sharing round robin when there are fewer GPUs; a CPU run,
// or one rank, keeps the device it asked for.
TEST(DeviceForRank, OneGpuPerLocalRankRoundRobin) {
  DistEnv env;
  env.world_size = 8;
  env.local_world_size = 4;
  torch::Device cuda(torch::kCUDA, 0);
  for (int local = 0; local < 4; ++local) {
    env.local_rank = local;
    env.rank = 4 + local;  // the second node: the local rank decides, not the global one
    EXPECT_EQ(device_for_rank(cuda, env, 4), torch::Device(torch::kCUDA, (c10::DeviceIndex)local));
    EXPECT_EQ(device_for_rank(cuda, env, 2), torch::Device(torch::kCUDA, (c10::DeviceIndex)(local % 2)));
    EXPECT_EQ(device_for_rank(cuda, env, 1), cuda);
    EXPECT_EQ(device_for_rank(torch::kCPU, env, 4), torch::Device(torch::kCPU));
  }
  EXPECT_EQ(device_for_rank(cuda, DistEnv{}, 4), cuda) << "one process: the device asked for";
  EXPECT_EQ(comm_backend_for(torch::kCPU), "gloo") << "this build has Gloo (libgloo-dev)";
}

TEST(Launch, SetsTheRankVariablesPrefixesLinesAndStopsAllWhenOneFails) {
  auto r = run_command(launch(2, "sh -c 'echo vars $RANK $WORLD_SIZE $LOCAL_RANK $LOCAL_WORLD_SIZE $MASTER_ADDR'"));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("[rank 0] vars 0 2 0 2 127.0.0.1"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("[rank 1] vars 1 2 1 2 127.0.0.1"), std::string::npos) << r.output;
  // Rank 1 fails at once; rank 0 would sleep for a minute: the launcher stops it and returns rank 1's status.
  auto t0 = std::chrono::steady_clock::now();
  r = run_command(launch(2, "sh -c 'if [ $RANK = 1 ]; then echo bad input >&2; exit 3; fi; sleep 60'"));
  double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  EXPECT_EQ(r.exit_code, 3) << r.output;
  EXPECT_LT(secs, 30) << r.output;
  EXPECT_NE(r.output.find("[rank 1] bad input"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("rank 1 exited with status 3"), std::string::npos) << r.output;
  // Flags: no command, a bad count.
  r = run_command(mr("launch --nproc_per_node 2"));
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.output.find("put it after --"), std::string::npos) << r.output;
  r = run_command(mr("launch --nproc_per_node 0 -- true"));
  EXPECT_NE(r.output.find("--nproc_per_node must be >= 1"), std::string::npos) << r.output;
}

// The global batch keeps its meaning (per device x accumulation x world size pairs): 2 ranks x 2 pairs give the
// weights of 1 rank x 4 after 3 steps, with the reference pass split over the ranks; rank 0 alone writes; and a
// 2-rank run's checkpoint resumed by 1 rank continues the same trajectory.
TEST(DataParallel, DpoTwoRanksMatchOneRankWithTwiceTheBatch) {
  DpoWorld w;
  std::string common = " --ref_a " + w.ra + " --ref_b " + w.rb +
                       " --gamma 0.5 --gradient_accumulation_steps 2 --learning_rate 1e-4 --max_steps 3";
  std::string one = w.tmp / "one", two = w.tmp / "two", resumed = w.tmp / "resumed";
  auto r = w.dpo(one, common + " --per_device_train_batch_size 4");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  // Its own reference cache: the split reference pass runs instead of reading the first run's.
  r = run_command(launch(2, w.dpo_command(two, common + " --per_device_train_batch_size 2 --save_steps 2 --cache_dir " +
                                                   (w.tmp / "cache2"))));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("[rank 1]"), std::string::npos) << r.output;
  // Adam's first steps move every weight by about the learning rate whatever the gradient's size, so the runs
  // moved far from the start (ref_a) while agreeing to fp32 summation noise.
  EXPECT_GT(max_abs_diff(one, w.ra), 2e-4);
  EXPECT_LT(max_abs_diff(one, two), 1e-5);
  auto m1 = read_json_lines(one + "/metrics.jsonl"), m2 = read_json_lines(two + "/metrics.jsonl");
  ASSERT_EQ(m1.size(), 3u);
  ASSERT_EQ(m2.size(), 3u);  // rank 0 alone logs
  for (size_t i = 0; i < 3; ++i) {
    EXPECT_NEAR(m1[i]["loss"].get<double>(), m2[i]["loss"].get<double>(), 1e-5) << "step " << i + 1;
    EXPECT_NEAR(m1[i]["grad_norm"].get<double>(), m2[i]["grad_norm"].get<double>(), 1e-4) << "step " << i + 1;
  }
  // Resume the 2-rank run's checkpoint-2 with one rank of twice the batch: the third step is the same step.
  r = run_command("cp -r " + two + " " + resumed + " && rm -f " + resumed + "/model.safetensors");
  ASSERT_EQ(r.exit_code, 0);
  r = w.dpo(resumed, common + " --per_device_train_batch_size 4 --resume_from_checkpoint " + resumed + "/checkpoint-2");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_LT(max_abs_diff(one, resumed), 1e-5);
}

// ZeRO-1 (--zero_stage 1) shards AdamW's moments and bf16 master weights: the same weights and the same
// optimizer file as without it, and its checkpoint resumes on one rank.
TEST(DataParallel, Zero1GivesTheSameWeightsAndResumesOnOneRank) {
  DpoWorld w;
  std::string common = " --ref_a " + w.ra + " --ref_b " + w.rb +
                       " --gamma 0.5 --gradient_accumulation_steps 2 --learning_rate 1e-4 --max_steps 3 --bf16"
                       " --save_steps 2";
  std::string plain = w.tmp / "plain", zero = w.tmp / "zero", resumed = w.tmp / "resumed";
  auto r = run_command(launch(2, w.dpo_command(plain, common + " --per_device_train_batch_size 2")));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  r = run_command(launch(2, w.dpo_command(zero, common + " --per_device_train_batch_size 2 --zero_stage 1")));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_GT(max_abs_diff(plain, w.ra), 2e-4);
  EXPECT_EQ(max_abs_diff(plain, zero), 0.0);
  auto a = load_safetensors(plain + "/checkpoint-2/optimizer.safetensors"),
       b = load_safetensors(zero + "/checkpoint-2/optimizer.safetensors");
  ASSERT_EQ(a.size(), b.size());
  ASSERT_GT(a.size(), 0u);
  for (auto& [k, t] : a) {
    ASSERT_TRUE(b.count(k)) << k;
    EXPECT_TRUE(torch::equal(t, b.at(k))) << k;
  }
  r = run_command("cp -r " + zero + " " + resumed + " && rm -f " + resumed + "/model.safetensors");
  ASSERT_EQ(r.exit_code, 0);
  r = w.dpo(resumed, common + " --per_device_train_batch_size 4 --resume_from_checkpoint " + resumed + "/checkpoint-2");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  // bf16 weights agree to an ulp (2^-7 at 1.0, the norms' scale); the fp32 master weights carry the trajectory.
  EXPECT_LT(max_abs_diff(plain, resumed), 1e-2);
  auto pm = load_safetensors(plain + "/checkpoint-3/optimizer.safetensors"),
       rm = load_safetensors(resumed + "/checkpoint-3/optimizer.safetensors");
  int masters = 0;
  for (auto& [k, t] : pm) {
    if (k.size() < 7 || k.compare(k.size() - 7, 7, ".master") != 0) continue;
    ++masters;
    ASSERT_TRUE(rm.count(k)) << k;
    EXPECT_LT((t - rm.at(k)).abs().max().item<double>(), 1e-5) << k;
  }
  EXPECT_GT(masters, 0);
}

// SIGTERM to the launcher (what a scheduler sends before killing a job) reaches every rank; they stop after the
// same step, rank 0 saves a checkpoint, all exit 0, and the run resumes from it.
TEST(DataParallel, SigtermStopsEveryRankAtTheSameStepWithACheckpoint) {
  DpoWorld w;
  std::string out = w.tmp / "run", log = w.tmp / "log.txt";
  std::string cmd = launch(2, w.dpo_command(out, " --ref_a " + w.ra + " --ref_b " + w.rb +
                                                     " --per_device_train_batch_size 2 --max_steps 2000"));
  auto r = run_command("sh -c '" + cmd + " > " + log + " 2>&1 & pid=$!; sleep 12; kill -TERM $pid; wait $pid'");
  std::string text = read_file(log);
  EXPECT_EQ(r.exit_code, 0) << text;
  auto cps = list_checkpoints(out);
  ASSERT_EQ(cps.size(), 1u) << text;
  EXPECT_GT(cps[0].first, 0);
  EXPECT_LT(cps[0].first, 2000);
  EXPECT_NE(text.find("interrupted: saved checkpoint-" + std::to_string(cps[0].first)), std::string::npos) << text;
  EXPECT_EQ(text.find("error"), std::string::npos) << text;
  EXPECT_FALSE(load_checkpoint_tensors(cps[0].second).empty());
  r = w.dpo(out, " --ref_a " + w.ra + " --ref_b " + w.rb + " --per_device_train_batch_size 4 --max_steps " +
                     std::to_string(cps[0].first + 1) + " --resume_from_checkpoint latest");
  EXPECT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("resumed from"), std::string::npos) << r.output;
}

// GRPO: 2 ranks x 4 completions per micro-batch give the weights of 1 rank x 8 after 3 steps — each rank generates
// its block of the step's prompts (whole groups) with the random streams one rank would use, and for exact FKL draws
// its share of the reference samples. The exact RKL (full-vocabulary terms, KL-to-go) and exact FKL estimators, with
// the token-mean loss (its denominator is all ranks' tokens).
TEST(DataParallel, GrpoTwoRanksMatchOneRankWithTwiceTheBatch) {
  IdsWorld w;
  for (std::string kl : {"--kl_type rkl --kl_estimator exact --loss_type token_mean",
                         "--kl_type fkl --kl_estimator exact --fkl_samples 6 --loss_type sequence_mean"}) {
    std::string common = " --reward length_penalty --max_steps 3 --learning_rate 1e-4 --gamma 0.1 " + kl;
    std::string one = w.tmp / "one", two = w.tmp / "two";
    run_command("rm -rf " + one + " " + two);
    auto r = w.grpo(one, common + " --per_device_train_batch_size 8");
    ASSERT_EQ(r.exit_code, 0) << kl << "\n" << r.output;
    r = run_command(launch(2, w.grpo_command(two, common)));
    ASSERT_EQ(r.exit_code, 0) << kl << "\n" << r.output;
    EXPECT_NE(r.output.find("data parallel: 2 ranks (2 on this node), c10d gloo"), std::string::npos) << r.output;
    EXPECT_GT(max_abs_diff(one, w.ra), 2e-4) << kl;
    EXPECT_LT(max_abs_diff(one, two), 1e-5) << kl;
    auto m1 = read_json_lines(one + "/metrics.jsonl"), m2 = read_json_lines(two + "/metrics.jsonl");
    ASSERT_EQ(m1.size(), 3u);
    ASSERT_EQ(m2.size(), 3u);
    for (size_t i = 0; i < 3; ++i)
      for (const char* k : {"loss", "reward", "kl", "completion_length"})
        EXPECT_NEAR(m1[i][k].get<double>(), m2[i][k].get<double>(), 1e-5) << kl << " step " << i + 1 << " " << k;
  }
}

// kill -9 of rank 1 at its second step: rank 0 fails with an error naming the cause well within --dist_timeout, the
// launcher exits non-zero, and checkpoint-1 stays whole.
TEST(DataParallel, ARankThatDiesEndsTheOthersWithAnError) {
  DpoWorld w;
  std::string out = w.tmp / "run";
  auto t0 = std::chrono::steady_clock::now();
  auto r = run_command("MULTIREF_FAULT_KILL=train_step:2:1 " +
                       launch(2, w.dpo_command(out, " --ref_a " + w.ra + " --ref_b " + w.rb +
                                                        " --per_device_train_batch_size 2 --max_steps 5 "
                                                        "--save_steps 1 --dist_timeout 60")));
  double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  EXPECT_NE(r.exit_code, 0) << r.output;
  EXPECT_LT(secs, 120) << r.output;
  EXPECT_NE(r.output.find("rank 1 was killed by signal"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("Another rank has probably died"), std::string::npos) << r.output;
  auto cps = list_checkpoints(out);
  ASSERT_FALSE(cps.empty()) << r.output;
  EXPECT_EQ(cps.front().first, 1);
  EXPECT_FALSE(load_checkpoint_tensors(cps.front().second).empty());
  EXPECT_FALSE(file_exists(out + "/model.safetensors"));
}

// --print_memory_plan prints the table and exits before loading weights, scoring or writing anything.
TEST(MemoryPlanFlag, PrintsTheTableAndTrainsNothing) {
  DpoWorld w;
  std::string out = w.tmp / "run";
  auto r = w.dpo(out, " --ref_a " + w.ra + " --ref_b " + w.rb + " --print_memory_plan");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("ranks  zero  weights  gradients  optimizer  references  total"), std::string::npos)
      << r.output;
  EXPECT_NE(r.output.find("    8     1"), std::string::npos) << r.output;
  EXPECT_FALSE(file_exists(out));
  EXPECT_EQ(r.output.find("reference pass"), std::string::npos) << r.output;
}
