// util/runtime: the allocator the executables run on, and the process-wide --bf16_matmul flag.
#include <sys/resource.h>
#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <iterator>

#include "test_util.h"
#include "util/dtype_flag.h"
#include "util/flags.h"
#include "util/runtime.h"

using namespace multiref;
using multiref::testing::expect_error;

namespace {

long minor_faults() {
  rusage u{};
  getrusage(RUSAGE_SELF, &u);
  return u.ru_minflt;
}

// Page faults taken by allocating and writing a 256 MiB tensor (65,536 pages of 4 KiB).
long faults_of_one_fill() {
  long before = minor_faults();
  auto t = torch::empty({64 << 20}, torch::kFloat32);
  t.fill_(1.0f);
  long n = minor_faults() - before;
  EXPECT_EQ(t[12345].item<float>(), 1.0f);
  return n;
}

}  // namespace

#ifdef MULTIREF_JEMALLOC
// The build links jemalloc into every executable (CMake MULTIREF_JEMALLOC) with freed memory kept for reuse: a
// second tensor of the same size reuses the first one's pages instead of faulting them in again, as glibc's mmap'd
// blocks do every time.
TEST(Allocator, JemallocReusesFreedPagesWithoutFaults) {
  EXPECT_NE(allocator_name().find("jemalloc"), std::string::npos) << allocator_name();
  EXPECT_NE(allocator_name().find("kept for reuse"), std::string::npos) << allocator_name();
  faults_of_one_fill();  // first touch: faults are expected here
  long again = faults_of_one_fill();
  EXPECT_LT(again, 1000) << "a freed 256 MiB block came back as fresh pages (" << again << " faults)";
}

// jemalloc asks for transparent huge pages (thp:always, util/malloc_conf.cpp): a large tensor is backed by 2 MiB
// pages wherever the kernel allows THP (always or madvise), which /proc/self/smaps_rollup counts as AnonHugePages.
TEST(Allocator, LargeTensorsLiveOnHugePages) {
  std::ifstream mode("/sys/kernel/mm/transparent_hugepage/enabled");
  std::string modes((std::istreambuf_iterator<char>(mode)), std::istreambuf_iterator<char>());
  EXPECT_NE(allocator_name().find("huge pages always"), std::string::npos) << allocator_name();
  if (modes.find("[never]") != std::string::npos || modes.empty())
    GTEST_SKIP() << "the kernel has transparent huge pages off: " << modes;
  auto t = torch::empty({128 << 20}, torch::kFloat32);  // 512 MiB
  t.fill_(1.0f);
  // AnonHugePages of the mapping that holds the tensor (fresh or reused memory alike).
  auto at = (uintptr_t)t.data_ptr();
  std::ifstream f("/proc/self/smaps");
  std::string line;
  bool inside = false;
  long huge_kib = -1;
  while (std::getline(f, line)) {
    unsigned long lo = 0, hi = 0;
    if (std::sscanf(line.c_str(), "%lx-%lx ", &lo, &hi) == 2 && line.find('-') < line.find(' ')) {
      inside = at >= lo && at < hi;
    } else if (inside && line.rfind("AnonHugePages:", 0) == 0) {
      huge_kib = std::stol(line.substr(14));
      break;
    }
  }
  // Not necessarily all of it (a fragmented machine may serve some 4 KiB pages), but most.
  EXPECT_GT(huge_kib, 256 * 1024) << "a 512 MiB tensor's mapping has " << huge_kib
                                  << " KiB on huge pages (kernel: " << modes << ")";
  EXPECT_EQ(t[7].item<float>(), 1.0f);
}

// Resident memory of this process, from /proc/self/statm.
int64_t resident_bytes() {
  std::ifstream f("/proc/self/statm");
  int64_t size = 0, rss = 0;
  f >> size >> rss;
  return rss * (int64_t)sysconf(_SC_PAGESIZE);
}

// Freed memory stays resident for reuse until release_free_memory() hands it back (util/runtime.h).
TEST(Allocator, ReleaseFreeMemoryHandsFreedPagesBack) {
  {
    auto t = torch::empty({64 << 20}, torch::kFloat32);  // 256 MiB
    t.fill_(1.0f);
    EXPECT_EQ(t[99].item<float>(), 1.0f);
  }
  int64_t before = resident_bytes();
  int64_t released = release_free_memory();
  int64_t after = resident_bytes();
  EXPECT_GT(released, 200 << 20) << "jemalloc reports " << released << " bytes released";
  EXPECT_GT(before - after, 200 << 20) << "RSS " << before << " -> " << after;
  // Memory handed back comes back on demand.
  auto u = torch::ones({64 << 20}, torch::kFloat32);
  EXPECT_EQ(u.sum().item<double>(), (double)(64 << 20));
}
#else
TEST(Allocator, GlibcWithoutJemalloc) {
  EXPECT_EQ(allocator_name(), "glibc malloc");
}
#endif

TEST(Bf16MatmulFlag, EveryDtypeFlagTableTakesIt) {
  auto saved = bf16_matmul_flag();
  for (auto [arg, want] : {std::pair{"upcast", Bf16MatmulChoice::Upcast}, std::pair{"native", Bf16MatmulChoice::Native},
                           std::pair{"auto", Bf16MatmulChoice::Auto}}) {
    DTypeChoice dtype = DTypeChoice::Auto;
    FlagTable t("prog", "test");
    register_dtype_flags(t, &dtype, nullptr);
    t.parse(std::vector<std::string>{std::string("--bf16_matmul=") + arg});
    EXPECT_EQ(bf16_matmul_flag(), want) << arg;
    EXPECT_NE(t.help().find("--bf16_matmul"), std::string::npos);
  }
  DTypeChoice dtype = DTypeChoice::Auto;
  FlagTable t("prog", "test");
  register_dtype_flags(t, &dtype, nullptr);
  expect_error(
      [&] {
        t.parse(std::vector<std::string>{"--bf16_matmul", "fast"});
      },
      {"bf16_matmul", "fast", "native", "upcast"});
  bf16_matmul_flag() = saved;
}
