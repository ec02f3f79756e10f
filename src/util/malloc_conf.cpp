// Linked into every executable (never into a library) when multiref is built with jemalloc (CMake option
// MULTIREF_JEMALLOC, on where Debian's libjemalloc-dev is installed); see allocator_name() in util/runtime.h.
//
// Why: glibc serves every block over 32 MiB with a fresh mmap and unmaps it on free, so each activation, logits
// chunk and gradient of a 0.5B model arrives as untouched pages and is paid for again in page faults, every layer
// and every step (19% of a float32 forward, most of the kernel time in backward, measured with perf on a 2-core
// EPYC VM where a fault is expensive). jemalloc keeps freed pages mapped and hands them out again. It returns them
// to the system only after a decay time; any finite decay still faults on this workload (default 10 s: 140 s of
// system time in a 48 s benchmark), so freed memory is kept for reuse. Peak RSS is unchanged — it is the peak of
// live memory either way — but the process does not shrink after its peak. MALLOC_CONF in the environment
// overrides this (e.g. MALLOC_CONF=dirty_decay_ms:10000,muzzy_decay_ms:10000 to give memory back).
//
// thp:always asks the kernel for transparent huge pages on jemalloc's memory (madvise MADV_HUGEPAGE; Debian's kernels
// default to THP on madvise): one fault per 2 MiB instead of per 4 KiB when fresh memory is first touched, and fewer
// TLB misses in the GEMMs over large weights and activations. Measured (2026-12-02, 2-core EPYC VM, GRPO step at the
// Python peer's shape, bench/side_by_side_grpo.sh): the first step's update 14.3-18.3 s -> 7.2-8.7 s, a later step's
// 8.9-9.5 -> 5.0-6.1 s; peak RSS +7% (partly used 2 MiB pages). A kernel with THP off ignores it;
// MALLOC_CONF=thp:never turns it off.
extern "C" {
extern const char* malloc_conf;
const char* malloc_conf = "dirty_decay_ms:-1,muzzy_decay_ms:-1,thp:always";
}
