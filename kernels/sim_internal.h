// Internals of the kernelsim harness shared by its two halves:
// sim_runtime.cc (fibers, the block scheduler, barriers and warp
// operations, launches) and sim_memory.cc (device memory, shared memory,
// and the checks of every kernel access: memcheck, racecheck, initcheck).
// Not part of the C interface (sim_api.h).
#pragma once

#include <stdint.h>
#include <stdlib.h>

#include <atomic>
#include <mutex>
#include <string>
#include <vector>

#include "sim_registry.h"
#include "sim_shim.h"

// FMGPU_SIM_CHECKS is defined (by sim_checks.go's cgo flags, or by the
// fake libcuda's build) when sim_kernels.cc is compiled with GCC's
// ThreadSanitizer instrumentation (-fsanitize=thread): every load and store
// of the kernels then calls an __tsan_* entry point, which sim_memory.cc
// implements itself (no ThreadSanitizer runtime is linked) as the memory
// checks. Without it (the AddressSanitizer build, `go test -race`) only
// the guard pages, the explicit alignment checks and synccheck remain.
#if defined(__SANITIZE_ADDRESS__)
#define FMGPU_SIM_ASAN 1
#endif

// SIM_HOOK marks the harness's own code that must not be instrumented:
// the access hooks and everything they call.
#define SIM_HOOK __attribute__((no_sanitize_thread))

namespace sim {

// ---- fiber contexts ---------------------------------------------------------

#if defined(__x86_64__)
struct Ctx {
    void* sp = nullptr;
};
#else
}  // namespace sim
#include <ucontext.h>
namespace sim {
struct Ctx {
    ucontext_t uc;
};
#endif

// ---- checks -----------------------------------------------------------------

// Check bits of sim_configure (sim_api.h).
enum : int {
    kCheckRace = 1,  // racecheck: shared and global memory
    kCheckInit = 2,  // initcheck: shared memory read before written in the block
};

extern std::atomic<int> g_checks;

// ---- the scheduler's state --------------------------------------------------

enum FiberState { kRunnable, kAtBlockBarrier, kAtWarpOp, kDone, kFaulted };

// Warp operations (sim_warp_op): what the lanes of a mask meet at.
enum WarpOp : int {
    kWarpSync = 0,
    kWarpShfl = 1,
    kWarpBallot = 2,
    kWarpAny = 3,
    kWarpAll = 4,
    kWarpMma = 5,       // mma.sync: a SimWarpCollective (sim_shim.h)
    kWarpLdmatrix = 6,  // ldmatrix: a SimWarpCollective
};

struct Fiber {
    Ctx ctx;
    char* stack = nullptr;  // mapping: a guard page, then the stack
    FiberState state = kRunnable;
    sim_dim3 tid{0, 0, 0};
    unsigned linear = 0;
    // At a block barrier: where (the call site of __syncthreads).
    const char* bar_file = nullptr;
    int bar_line = 0;
    // At a warp operation: what, with which mask and operands; the
    // scheduler writes the result when the mask's lanes have all arrived.
    int wop = 0;
    unsigned wmask = 0;
    uint64_t wval = 0;
    int wmode = 0, warg = 0, wwidth = 32;
    uint64_t wresult = 0;
    // cp.async (sim_shim.h): the copies issued and not yet handed back,
    // oldest first; groups[i] is the number of copies up to the end of
    // committed group i (the oldest pending group first). Empty at every
    // block start.
    SimAsyncCopy acopies[SIM_MAX_ASYNC_COPIES];
    int nacopies = 0;
    int agroups[SIM_MAX_ASYNC_COPIES];
    int nagroups = 0;
#if defined(FMGPU_SIM_ASAN)
    void* fake_stack = nullptr;
#endif
};

struct Job {
    const SimKernel* kernel = nullptr;
    const uint64_t* args = nullptr;
    const char* sig = nullptr;
    int nargs = 0;
    sim_dim3 grid{1, 1, 1}, block{1, 1, 1};
    size_t shared = 0;
    long nblocks = 0;
    uint64_t seq = 0;
    uint64_t tag = 0;  // launch tag of the global racecheck shadow (1..kTagMax)
    bool hooked = false;  // the access hooks check this launch (sim_set_sampling)
    int checks = 0;       // the optional checks, when hooked
    std::atomic<long> next{0};
    std::atomic<bool> failed{false};
    std::mutex err_mu;
    std::string err;
    // __threadfence as the global racecheck sees it (sim_memory.cc,
    // fence_ordered): fence_clock counts the launch's fences; released[b]
    // is block b's latest fence, its number << 20 | its block's epoch then
    // (made at the first fence of the launch, kReleasedSlots at most).
    std::atomic<uint64_t> fence_clock{0};
    std::atomic<std::atomic<uint64_t>*> released{nullptr};
    std::mutex released_mu;

    ~Job() { delete[] released.load(); }

    void fail(const std::string& msg) {
        std::lock_guard<std::mutex> g(err_mu);
        if (err.empty()) err = msg;
        failed = true;
    }
};

// One shadow cell per 4-byte word of shared memory (static or dynamic):
// which bytes were written in the current block (initcheck) and the last
// write and the last two distinct reads (racecheck), each an access record
// of this worker (smem_acc in sim_memory.cc).
struct SmemCell {
    uint32_t init_stamp;
    uint32_t init_mask;
    uint64_t w, r, r2;
};

// A static __shared__ variable of the kernels (FM_SHARED: sim_shim.h), as
// its worker registered it when the thread first passed the declaration.
struct SharedVar {
    uintptr_t p;
    size_t size;
    std::string name;
};

// Worker is the per-OS-thread state: the fibers of the block it runs, and
// that block's shared memory and check state.
struct Worker {
    std::vector<Fiber> fibers;
    Ctx sched;
    Fiber* cur = nullptr;
    Job* job = nullptr;
    unsigned nthreads = 0;
    long block_linear = 0;
    int at_block = 0;
    std::vector<unsigned> order;
    Fiber* fib = nullptr;     // fibers.data() and order.data() of the block,
    unsigned* ord = nullptr;  // for the uninstrumented scheduler
    std::string err;  // first misuse seen inside the current block
#if defined(FMGPU_SIM_ASAN)
    const void* sched_stack_bottom = nullptr;
    size_t sched_stack_size = 0;
    void* sched_fake_stack = nullptr;
#endif

    // Check state of the running block. stamp names the current barrier
    // interval of this worker (it grows at every block start and every
    // __syncthreads: accesses with different stamps are ordered);
    // block_stamp is the stamp at the block's start; epoch counts the
    // block's barriers (for the global shadow); wep[w] counts warp w's
    // __syncwarp calls in the interval (they order the warp's accesses).
    bool in_kernel = false;  // a fiber of a hooked launch runs
    uint32_t stamp = 0, block_stamp = 0, epoch = 0;
    bool global_race = false;  // racecheck of global memory for this block
    // The global racecheck's fences (sim_memory.cc, fence_ordered): seen is
    // the launch's fence count after the block's latest global atomic,
    // acquired the value of seen at the block's latest __threadfence.
    uint64_t seen = 0, acquired = 0;
    uint32_t wep[32] = {};

    // Dynamic shared memory: a mapping with a guard page before and after
    // a window of kDynWindow bytes; the launch's bytes start at dyn.
    char* dyn_map = nullptr;
    char* dyn = nullptr;
    size_t dyn_size = 0;
    std::vector<SmemCell> dyn_cells;
    SmemCell* dyn_cell0 = nullptr;  // dyn_cells.data(), for the hooks

    // Static __shared__ variables: this thread's copies (thread_local), by
    // address, and the shadow cells of the span they cover (words between
    // them are out of bounds).
    std::vector<SharedVar> ssm_vars;
    static const int kSeen = 64;
    uintptr_t ssm_seen[kSeen] = {};  // addresses already registered (a cache)
    uintptr_t ssm_lo = 0;
    size_t ssm_size = 0;
    std::vector<SmemCell> ssm_cells;
    SmemCell* ssm_cell0 = nullptr;  // ssm_cells.data(), for the hooks

    Worker();
    ~Worker();
    void ensure_fibers(unsigned n);
};

// The current OS thread's worker (created on first use), or null.
Worker* this_worker();
extern __thread Worker* tls_worker;  // __thread: no C++ TLS wrapper call per access

// fiber_fault ends the current fiber with a launch error: the message is
// kept (the first of the block wins) and the fiber never runs again, as a
// GPU thread that faults. It does not return, so nothing on the fiber's
// stack is destroyed: msg is moved from (left without heap memory), and
// callers go through SIM_FAULT, whose temporaries are gone by then.
[[noreturn]] void fiber_fault(Worker* w, std::string&& msg);
#define SIM_FAULT(w, msg)                          \
    do {                                           \
        std::string sim_fault_msg_ = (msg);        \
        fiber_fault((w), std::move(sim_fault_msg_)); \
    } while (0)

std::string fmt(const char* f, ...) __attribute__((format(printf, 1, 2)));

// Thread and block names for messages: "thread (x,y,z)".
std::string thread_name(const Job* job, unsigned linear);
std::string block_name(const Job* job, long linear);

// ---- sim_memory.cc ----------------------------------------------------------

// Prepares the worker's shared memory for a block of job: poisons what the
// block can read (eagerly without the access hooks, through initcheck's
// stamps with them) and sizes the shadow cells.
void smem_block_start(Worker* w, const Job* job);
// A new worker's shared memory (dynamic window, static variables), and
// its release.
void smem_init(Worker* w);
void smem_release(Worker* w);
void* dyn_smem(Worker* w);
// Launch-wide preparation of the global shadow (its launch tag).
void global_launch_start(Job* job);
// The checks compiled in (the access hooks exist).
bool hooks_compiled();

}  // namespace sim
