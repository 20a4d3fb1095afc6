//go:build kernelsim

// The kernelsim harness: runs fmgpu's CUDA kernels, compiled for the host
// by sim_kernels.cc, with CUDA's execution model (sim_shim.h describes it).
// Each CUDA thread is a fiber on its own stack; __syncthreads and warp
// operations park the fiber and the per-block scheduler below releases a
// barrier once every thread it waits for has arrived. Misuse a GPU leaves
// undefined is a launch error (synccheck): a barrier reached by only part
// of the block or at different call sites, a warp operation whose mask
// names lanes that returned, do not exist, or meet at another operation,
// a deadlock. Launches are checked against the limits of the GPUs the
// fatbin targets, with each kernel's registers and static shared memory
// from ptxas-report.txt. Device and shared memory, and the checks of every
// access, are sim_memory.cc's.

#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include <condition_variable>
#include <map>
#include <thread>

#include "sim_api.h"
#include "sim_internal.h"

#if defined(FMGPU_SIM_ASAN)
#include <sanitizer/asan_interface.h>
#include <sanitizer/common_interface_defs.h>
#endif

__thread sim_dim3 threadIdx;
__thread sim_dim3 blockIdx;
__thread sim_dim3 blockDim;
__thread sim_dim3 gridDim;

// The kernel tables of sim_kernels*.cc, one per translation unit.
extern const SimKernel sim_kernels_conv[], sim_kernels_dense[], sim_kernels_products[], sim_kernels_misc[];
extern const int sim_kernels_conv_len, sim_kernels_dense_len, sim_kernels_products_len, sim_kernels_misc_len;

namespace sim {

// The kernels of every table, in one array: a kernel's index in it is its
// slot in the per-kernel state below. Built on first use (a function-local
// static), after the tables' own initialization.
static const std::vector<SimKernel>& kernel_table() {
    static const std::vector<SimKernel> table = [] {
        std::vector<SimKernel> t;
        const std::pair<const SimKernel*, int> parts[] = {
            {sim_kernels_conv, sim_kernels_conv_len},
            {sim_kernels_dense, sim_kernels_dense_len},
            {sim_kernels_products, sim_kernels_products_len},
            {sim_kernels_misc, sim_kernels_misc_len},
        };
        for (const auto& p : parts) t.insert(t.end(), p.first, p.first + p.second);
        return t;
    }();
    return table;
}
static inline const SimKernel* sim_kernel_table() { return kernel_table().data(); }
static inline int sim_kernel_table_len() { return (int)kernel_table().size(); }

// ---- fiber contexts -------------------------------------------------------

#if defined(__x86_64__)
// A context is the saved stack pointer; the switch pushes the callee-saved
// registers, MXCSR and the x87 control word (System V ABI), swaps stacks
// and pops the other side's.
extern "C" void fmgpu_sim_ctx_switch(void** save, void* to);
extern "C" void fmgpu_sim_ctx_entry(void);
__asm__(
    ".text\n"
    ".globl fmgpu_sim_ctx_switch\n"
    ".type fmgpu_sim_ctx_switch,@function\n"
    "fmgpu_sim_ctx_switch:\n"
    "  pushq %rbp\n"
    "  pushq %rbx\n"
    "  pushq %r12\n"
    "  pushq %r13\n"
    "  pushq %r14\n"
    "  pushq %r15\n"
    "  subq $8, %rsp\n"
    "  stmxcsr (%rsp)\n"
    "  fnstcw 4(%rsp)\n"
    "  movq %rsp, (%rdi)\n"
    "  movq %rsi, %rsp\n"
    "  ldmxcsr (%rsp)\n"
    "  fldcw 4(%rsp)\n"
    "  addq $8, %rsp\n"
    "  popq %r15\n"
    "  popq %r14\n"
    "  popq %r13\n"
    "  popq %r12\n"
    "  popq %rbx\n"
    "  popq %rbp\n"
    "  ret\n"
    ".size fmgpu_sim_ctx_switch,.-fmgpu_sim_ctx_switch\n"
    ".globl fmgpu_sim_ctx_entry\n"
    ".type fmgpu_sim_ctx_entry,@function\n"
    "fmgpu_sim_ctx_entry:\n"
    "  movq %r12, %rdi\n"
    "  callq *%r13\n"
    "  ud2\n"
    ".size fmgpu_sim_ctx_entry,.-fmgpu_sim_ctx_entry\n");

SIM_HOOK static void ctx_init(Ctx* c, char* stack, size_t size, void (*fn)(void*), void* arg) {
    uintptr_t top = ((uintptr_t)(stack + size)) & ~(uintptr_t)15;
    uint64_t* sp = (uint64_t*)(top - 64);
    sp[0] = 0x1F80ull | (0x037Full << 32);  // default MXCSR, x87 control word
    sp[1] = 0;                              // r15
    sp[2] = 0;                              // r14
    sp[3] = (uint64_t)(uintptr_t)fn;        // r13: entry function
    sp[4] = (uint64_t)(uintptr_t)arg;       // r12: its argument
    sp[5] = 0;                              // rbx
    sp[6] = 0;                              // rbp
    sp[7] = (uint64_t)(uintptr_t)&fmgpu_sim_ctx_entry;
    c->sp = sp;
}

SIM_HOOK static inline void ctx_switch(Ctx* from, Ctx* to) { fmgpu_sim_ctx_switch(&from->sp, to->sp); }
#else
// Portable fallback: ucontext (slower: a signal-mask system call a switch).
static void (*g_entry_fn)(void*);
static void ucontext_entry(unsigned hi, unsigned lo) {
    void* arg = (void*)(((uintptr_t)hi << 32) | (uintptr_t)lo);
    g_entry_fn(arg);
    abort();
}

static void ctx_init(Ctx* c, char* stack, size_t size, void (*fn)(void*), void* arg) {
    getcontext(&c->uc);
    c->uc.uc_stack.ss_sp = stack;
    c->uc.uc_stack.ss_size = size;
    c->uc.uc_link = nullptr;
    g_entry_fn = fn;
    uintptr_t a = (uintptr_t)arg;
    makecontext(&c->uc, (void (*)())ucontext_entry, 2, (unsigned)(a >> 32), (unsigned)a);
}

static inline void ctx_switch(Ctx* from, Ctx* to) { swapcontext(&from->uc, &to->uc); }
#endif

// ---- configuration --------------------------------------------------------

static std::atomic<int> g_threads{0};
static std::atomic<int> g_order{2};
static std::atomic<uint64_t> g_seed{0x5eed};
std::atomic<int> g_checks{kCheckRace | kCheckInit};
static std::atomic<uint64_t> g_launch_seq{0};

// Sampling of the access checks (sim_set_sampling): launches of one
// configuration (kernel, grid, block, dynamic shared memory) beyond the
// first are checked one in g_check_every; every launch by default.
static int g_check_first = 0, g_check_every = 1;
static std::map<std::string, uint64_t> g_config_launches;  // under g_launch_mu
static std::vector<uint64_t> g_checked_launches;           // by kernel; under g_launch_mu

#if defined(FMGPU_SIM_ASAN)
static const size_t kStackSize = 512 << 10;  // AddressSanitizer's frames are larger
#else
static const size_t kStackSize = 128 << 10;
#endif

std::string fmt(const char* f, ...) {
    char buf[1024];
    va_list ap;
    va_start(ap, f);
    vsnprintf(buf, sizeof buf, f, ap);
    va_end(ap);
    return buf;
}

std::string thread_name(const Job* job, unsigned i) {
    const sim_dim3 b = job->block;
    return fmt("thread (%u,%u,%u)", i % b.x, (i / b.x) % b.y, i / (b.x * b.y));
}

std::string block_name(const Job* job, long i) {
    const sim_dim3 g = job->grid;
    return fmt("block (%ld,%ld,%ld)", i % g.x, (i / g.x) % g.y, i / ((long)g.x * g.y));
}

static const char* base_name(const char* path) {
    const char* s = strrchr(path, '/');
    return s ? s + 1 : path;
}

__thread Worker* tls_worker = nullptr;

// A worker lives as long as its thread. Threads do exit: the fake libcuda's
// stream threads, and Go threads locked to a goroutine that returns; the key's
// destructor frees their worker (LeakSanitizer found ~1 MB per exited
// thread), and glibc keeps __thread storage valid while key destructors run.
static pthread_key_t worker_key;
static pthread_once_t worker_key_once = PTHREAD_ONCE_INIT;

static void free_worker(void* p) {
    delete static_cast<Worker*>(p);
    tls_worker = nullptr;
}

Worker* this_worker() {
    if (!tls_worker) {
        pthread_once(&worker_key_once, [] {
            if (pthread_key_create(&worker_key, free_worker) != 0) {
                fprintf(stderr, "kernelsim: pthread_key_create failed\n");
                abort();
            }
        });
        tls_worker = new Worker();
        pthread_setspecific(worker_key, tls_worker);
    }
    return tls_worker;
}

Worker::Worker() { smem_init(this); }

Worker::~Worker() {
    for (auto& f : fibers) {
        if (!f.stack) continue;
#if defined(FMGPU_SIM_ASAN)
        ASAN_UNPOISON_MEMORY_REGION(f.stack + getpagesize(), kStackSize);  // as smem_release
#endif
        munmap(f.stack, kStackSize + (size_t)getpagesize());
    }
    smem_release(this);
}

void Worker::ensure_fibers(unsigned n) {
    size_t page = (size_t)getpagesize();
    while (fibers.size() < n) {
        Fiber f;
        void* m = mmap(nullptr, kStackSize + page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (m == MAP_FAILED) {
            fprintf(stderr, "kernelsim: cannot map a fiber stack: %s\n", strerror(errno));
            abort();
        }
        mprotect(m, page, PROT_NONE);  // stack overflow faults instead of corrupting
        f.stack = (char*)m;
        fibers.push_back(f);
    }
}

// The scheduler is not instrumented (SIM_HOOK; no library templates in its
// loops): it runs for every thread at every barrier.

// resume runs fiber f until it parks, returns or faults.
SIM_HOOK static void resume(Worker* w, Fiber* f) {
#if defined(FMGPU_SIM_ASAN)
    __sanitizer_start_switch_fiber(&w->sched_fake_stack, f->stack + getpagesize(), kStackSize);
#endif
    w->in_kernel = w->job->hooked;
    ctx_switch(&w->sched, &f->ctx);
    w->in_kernel = false;
#if defined(FMGPU_SIM_ASAN)
    __sanitizer_finish_switch_fiber(w->sched_fake_stack, nullptr, nullptr);
#endif
}

// park returns from the running fiber to the scheduler; it returns when the
// scheduler resumes the fiber (never, once it is done or faulted).
SIM_HOOK static void park(Worker* w, Fiber* f) {
#if defined(FMGPU_SIM_ASAN)
    bool ends = f->state == kDone || f->state == kFaulted;
    __sanitizer_start_switch_fiber(ends ? nullptr : &f->fake_stack, w->sched_stack_bottom, w->sched_stack_size);
#endif
    ctx_switch(&f->ctx, &w->sched);
#if defined(FMGPU_SIM_ASAN)
    __sanitizer_finish_switch_fiber(f->fake_stack, &w->sched_stack_bottom, &w->sched_stack_size);
#endif
}

SIM_HOOK static void fiber_main(void* arg) {
    Worker* w = (Worker*)arg;
#if defined(FMGPU_SIM_ASAN)
    __sanitizer_finish_switch_fiber(nullptr, &w->sched_stack_bottom, &w->sched_stack_size);
#endif
    Fiber* f = w->cur;
    w->job->kernel->invoke(w->job->args);
    f->state = kDone;
    park(w, f);
    abort();  // a finished fiber is never resumed
}

void fiber_fault(Worker* w, std::string&& msg) {
    Fiber* f = w->cur;
    if (w->err.empty()) w->err.assign(msg);
    std::string().swap(msg);  // its heap memory, if any, is freed: the frame never unwinds
    f->state = kFaulted;
    park(w, f);
    abort();  // a faulted fiber is never resumed
}

SIM_HOOK static uint64_t mix64(uint64_t x) {
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdull;
    x ^= x >> 33;
    x *= 0xc4ceb9fe1a85ec53ull;
    x ^= x >> 33;
    return x;
}

// make_order lists the runnable fibers in the order they run in this
// phase (forward, reverse, or shuffled from phase_seed) and returns how
// many there are; after a warp operation only its lanes are runnable.
SIM_HOOK static unsigned make_order(Worker* w, int mode, uint64_t phase_seed) {
    unsigned n = w->nthreads, *ord = w->ord, r = 0;
    const Fiber* fib = w->fib;
    for (unsigned i = 0; i < n; i++) {
        unsigned k = mode == 1 ? n - 1 - i : i;
        if (fib[k].state == kRunnable) ord[r++] = k;
    }
    if (mode == 2) {
        uint64_t s = mix64(phase_seed);
        for (unsigned i = r; i > 1; i--) {
            s = mix64(s + 0x9E3779B97F4A7C15ull);
            unsigned j = (unsigned)(s % i), t = ord[i - 1];
            ord[i - 1] = ord[j];
            ord[j] = t;
        }
    }
    return r;
}

// ---- warp operations ------------------------------------------------------

static const char* warp_op_name(const Fiber& f) {
    switch (f.wop) {
        case kWarpSync:
            return "__syncwarp";
        case kWarpBallot:
            return "__ballot_sync";
        case kWarpAny:
            return "__any_sync";
        case kWarpAll:
            return "__all_sync";
        case kWarpMma:
            return "mma.sync";
        case kWarpLdmatrix:
            return "ldmatrix";
        default:
            switch (f.wmode) {
                case SIM_SHFL_XOR:
                    return "__shfl_xor_sync";
                case SIM_SHFL_DOWN:
                    return "__shfl_down_sync";
                case SIM_SHFL_UP:
                    return "__shfl_up_sync";
                default:
                    return "__shfl_sync";
            }
    }
}

// lanes_of: the lanes of warp wi in a block of n threads.
SIM_HOOK static unsigned lanes_of(unsigned n, unsigned wi) {
    unsigned lo = wi * 32;
    return n - lo < 32 ? n - lo : 32;
}

// shfl_source: the lane whose value lane l reads (PTX shfl.sync with the
// c operand CUDA's __shfl_*_sync pass for width; an out-of-segment source
// is the lane itself).
SIM_HOOK static unsigned shfl_source(unsigned l, int mode, int arg, int width) {
    unsigned segmask = (unsigned)(32 - width) & 31, b = (unsigned)arg & 31;
    unsigned seg = l & segmask;
    int j;
    bool ok;
    switch (mode) {
        case SIM_SHFL_UP:
            j = (int)l - (int)b;
            ok = j >= (int)seg;
            break;
        case SIM_SHFL_DOWN:
            j = (int)(l + b);
            ok = j <= (int)(seg | (31 & ~segmask));
            break;
        case SIM_SHFL_XOR:
            j = (int)(l ^ b);
            ok = j <= (int)(seg | (31 & ~segmask));
            break;
        default:
            j = (int)(seg | (b & ~segmask));
            ok = true;
    }
    return ok ? (unsigned)j : l;
}

// release_group completes the warp operation of the lanes of mask m of warp
// wi, all of which have arrived at it: their results, then runnable.
SIM_HOOK static bool release_group(Worker* w, unsigned wi, unsigned m) {
    Fiber* lanes = w->fib + wi * 32;
    if (lanes[__builtin_ctz(m)].wop == kWarpMma || lanes[__builtin_ctz(m)].wop == kWarpLdmatrix) {
        // A tensor-core instruction: the whole warp (sim_warp_op checked
        // the mask), one call computing every lane's result.
        SimWarpCollective* rec[32];
        for (unsigned l = 0; l < 32; l++) rec[l] = (SimWarpCollective*)(uintptr_t)lanes[l].wval;
        for (unsigned l = 1; l < 32; l++)
            if (rec[l]->fn != rec[0]->fn) {
                if (w->err.empty())
                    w->err = fmt("synccheck: lanes 0 and %u of warp %u meet at different %s instructions", l, wi,
                                 warp_op_name(lanes[0]));
                return false;
            }
        char err[512];
        err[0] = 0;
        if (rec[0]->fn(rec, err, sizeof err) != 0) {
            if (w->err.empty())
                w->err = fmt("%s in warp %u (%s..): %s", warp_op_name(lanes[0]), wi,
                             thread_name(w->job, lanes[0].linear).c_str(), err);
            return false;
        }
        for (unsigned l = 0; l < 32; l++) lanes[l].state = kRunnable;
        return true;
    }
    uint64_t ballot = 0;
    for (unsigned l = 0; l < 32; l++)
        if (m >> l & 1 && lanes[l].wval != 0) ballot |= 1ull << l;
    for (unsigned l = 0; l < 32; l++) {
        if (!(m >> l & 1)) continue;
        Fiber& f = lanes[l];
        switch (f.wop) {
            case kWarpShfl: {
                unsigned j = shfl_source(l, f.wmode, f.warg, f.wwidth);
                if (!(m >> j & 1)) {
                    if (w->err.empty())
                        w->err = fmt("synccheck: %s: %s (lane %u of warp %u) reads lane %u, which is not in the mask "
                                     "0x%08x",
                                     warp_op_name(f), thread_name(w->job, f.linear).c_str(), l, wi, j, m);
                    return false;
                }
                f.wresult = lanes[j].wval;
                break;
            }
            case kWarpBallot:
                f.wresult = ballot;
                break;
            case kWarpAny:
                f.wresult = ballot != 0;
                break;
            case kWarpAll:
                f.wresult = ballot == m;
                break;
            default:
                f.wresult = 0;
        }
    }
    for (unsigned l = 0; l < 32; l++)
        if (m >> l & 1) lanes[l].state = kRunnable;
    if (lanes[__builtin_ctz(m)].wop == kWarpSync) w->wep[wi]++;  // orders the lanes' memory accesses
    return true;
}

// release_warps completes every warp operation whose mask's lanes have all
// arrived at it (with the same mask); a mask that names a lane that has
// returned is an error at once.
SIM_HOOK static bool release_warps(Worker* w) {
    bool released = false;
    unsigned n = w->nthreads;
    for (unsigned wi = 0; wi * 32 < n; wi++) {
        Fiber* lanes = w->fib + wi * 32;
        unsigned nl = lanes_of(n, wi);
        uint32_t at = 0, gone = 0;
        for (unsigned l = 0; l < nl; l++) {
            FiberState st = lanes[l].state;
            if (st == kAtWarpOp) at |= 1u << l;
            if (st == kDone || st == kFaulted) gone |= 1u << l;
        }
        for (uint32_t todo = at; todo != 0;) {
            unsigned a = (unsigned)__builtin_ctz(todo);
            const Fiber& fa = lanes[a];
            uint32_t m = fa.wmask;
            todo &= ~(1u << a);
            if (m & gone) {
                if (w->err.empty())
                    w->err = fmt("synccheck: %s with mask 0x%08x in %s (lane %u of warp %u): lane %u of the mask "
                                 "has returned",
                                 warp_op_name(fa), m, thread_name(w->job, fa.linear).c_str(), a, wi,
                                 (unsigned)__builtin_ctz(m & gone));
                return false;
            }
            if (m & ~at) continue;  // lanes of the mask not there yet
            bool same = true;
            for (uint32_t b = m; b != 0 && same; b &= b - 1) {
                const Fiber& fl = lanes[__builtin_ctz(b)];
                same = fl.wmask == m && fl.wop == fa.wop;
            }
            if (!same) continue;
            if (!release_group(w, wi, m)) return false;
            at &= ~m;
            todo &= ~m;
            released = true;
        }
    }
    return released;
}

// stuck_reason explains why no thread of the block can go on.
static std::string stuck_reason(Worker* w, unsigned done) {
    unsigned n = w->nthreads;
    for (unsigned i = 0; i < n; i++) {
        const Fiber& f = w->fibers[i];
        if (f.state != kAtWarpOp) continue;
        unsigned wi = i / 32, a = i % 32;
        const Fiber* lanes = &w->fibers[wi * 32];
        for (unsigned l = 0; l < lanes_of(n, wi); l++) {
            if (!(f.wmask >> l & 1)) continue;
            const Fiber& fl = lanes[l];
            if (fl.state == kAtBlockBarrier)
                return fmt("synccheck: %s with mask 0x%08x in %s (lane %u of warp %u) waits for lane %u, which waits at "
                           "__syncthreads (%s:%d): divergent barrier",
                           warp_op_name(f), f.wmask, thread_name(w->job, i).c_str(), a, wi, l,
                           base_name(fl.bar_file), fl.bar_line);
            if (fl.state == kAtWarpOp && (fl.wmask != f.wmask || fl.wop != f.wop))
                return fmt("synccheck: lanes %u and %u of warp %u wait at different warp operations: %s with mask "
                           "0x%08x and %s with mask 0x%08x",
                           a, l, wi, warp_op_name(f), f.wmask, warp_op_name(fl), fl.wmask);
        }
    }
    unsigned at_bar = 0, at_warp = 0;
    for (unsigned i = 0; i < n; i++) {
        at_bar += w->fibers[i].state == kAtBlockBarrier;
        at_warp += w->fibers[i].state == kAtWarpOp;
    }
    return fmt("synccheck: deadlock: %u threads at __syncthreads, %u at warp operations, %u returned (divergent "
               "barrier?)",
               at_bar, at_warp, done);
}

// release_block releases the block barrier once every thread waits at it:
// all at the same __syncthreads, none returned.
SIM_HOOK static bool release_block(Worker* w, unsigned done) {
    unsigned n = w->nthreads;
    if (w->at_block == 0 || (unsigned)w->at_block + done != n) return false;
    if (done > 0) {
        w->err = fmt("synccheck: __syncthreads reached by %d threads after %u threads of the block returned",
                     w->at_block, done);
        return false;
    }
    const Fiber* fib = w->fib;
    const Fiber& f0 = fib[0];
    for (unsigned i = 1; i < n; i++) {
        const Fiber& f = fib[i];
        if (f.bar_line != f0.bar_line || (f.bar_file != f0.bar_file && strcmp(f.bar_file, f0.bar_file) != 0)) {
            w->err = fmt("synccheck: divergent __syncthreads: %s waits at %s:%d, %s at %s:%d",
                         thread_name(w->job, 0).c_str(), base_name(f0.bar_file), f0.bar_line,
                         thread_name(w->job, i).c_str(), base_name(f.bar_file), f.bar_line);
            return false;
        }
    }
    for (unsigned i = 0; i < n; i++) w->fib[i].state = kRunnable;
    w->at_block = 0;
    // A new barrier interval: accesses before and after it are ordered.
    w->stamp++;
    w->epoch++;
    if (w->epoch >= (1u << 20)) w->global_race = false;  // past the shadow's epoch field
    for (auto& c : w->wep) c = 0;
    return true;
}

SIM_HOOK static void run_block(Worker* w, Job* job, long b) {
    const sim_dim3 g = job->grid, bd = job->block;
    blockIdx = sim_dim3{(unsigned)(b % g.x), (unsigned)((b / g.x) % g.y), (unsigned)(b / ((long)g.x * g.y))};
    gridDim = g;
    blockDim = bd;
    unsigned n = bd.x * bd.y * bd.z;
    w->job = job;
    w->nthreads = n;
    w->block_linear = b;
    w->at_block = 0;
    w->err.clear();
    for (auto& c : w->wep) c = 0;
    w->epoch = 0;
    w->seen = w->acquired = 0;
    w->global_race = (job->checks & kCheckRace) != 0;
    smem_block_start(w, job);
    w->ensure_fibers(n);
    w->order.resize(n);
    w->fib = w->fibers.data();
    w->ord = w->order.data();
    Fiber* fib = w->fib;
    size_t page = (size_t)getpagesize();
    for (unsigned i = 0; i < n; i++) {
        Fiber& f = fib[i];
        f.nacopies = f.nagroups = 0;
        f.linear = i;
        f.tid = sim_dim3{i % bd.x, (i / bd.x) % bd.y, i / (bd.x * bd.y)};
#if defined(FMGPU_SIM_ASAN)
        // A fiber the previous block left faulted or parked never unwound:
        // its frames' redzones stay poisoned in the shadow, and the next
        // kernel's prologues (which poison redzones but do not clear the
        // rest) would find them over their own variables.
        if (f.state != kDone) ASAN_UNPOISON_MEMORY_REGION(f.stack + page, kStackSize);
#endif
        f.state = kRunnable;
        ctx_init(&f.ctx, f.stack + page, kStackSize, fiber_main, w);
    }
    int mode = g_order.load();
    uint64_t seed = g_seed.load();
    unsigned done = 0;
    uint64_t phase = 0;
    for (;;) {
        unsigned nr = make_order(w, mode, seed ^ (job->seq << 20) ^ ((uint64_t)b << 40) ^ phase++);
        const unsigned* ord = w->ord;
        for (unsigned k = 0; k < nr; k++) {
            Fiber& f = fib[ord[k]];
            threadIdx = f.tid;
            w->cur = &f;
            resume(w, &f);
            if (f.state == kDone) done++;
            if (f.state == kFaulted) break;
        }
        bool released = w->err.empty() && release_warps(w);
        if (w->err.empty() && !released) released = release_block(w, done);
        if (!w->err.empty()) {
            job->fail(fmt("%s: %s: %s", job->kernel->name, block_name(job, b).c_str(), w->err.c_str()));
            return;
        }
        if (done == n) return;
        if (!released) {
            job->fail(fmt("%s: %s: %s", job->kernel->name, block_name(job, b).c_str(), stuck_reason(w, done).c_str()));
            return;
        }
    }
}

static void run_blocks(Job* job) {
    Worker* w = this_worker();
    for (;;) {
        if (job->failed) return;
        long b = job->next.fetch_add(1);
        if (b >= job->nblocks) return;
        run_block(w, job, b);
    }
}

// Pool: OS threads that join the calling thread in running a launch's
// blocks. The pool keeps the most threads any launch asked for; a launch
// with fewer lets only that many - 1 helpers take part.
struct Pool {
    std::mutex mu;
    std::condition_variable cv, done_cv;
    Job* job = nullptr;
    uint64_t gen = 0;
    int active = 0, tickets = 0;
    std::vector<std::thread> threads;

    void loop(uint64_t seen) {
        std::unique_lock<std::mutex> lk(mu);
        for (;;) {
            cv.wait(lk, [&] { return gen != seen; });
            seen = gen;
            Job* j = job;
            bool take = tickets > 0;
            if (take) tickets--;
            lk.unlock();
            if (take) run_blocks(j);
            lk.lock();
            if (--active == 0) done_cv.notify_all();
        }
    }

    void run(Job* j, int nthreads) {
        std::unique_lock<std::mutex> lk(mu);
        while ((int)threads.size() < nthreads - 1) {
            uint64_t g = gen;
            threads.emplace_back([this, g] { loop(g); });
            threads.back().detach();
        }
        bool helpers = j->nblocks > 1 && nthreads > 1;  // one block: run it here
        if (helpers) {
            job = j;
            active = (int)threads.size();
            tickets = nthreads - 1;
            gen++;
            cv.notify_all();
        }
        lk.unlock();
        run_blocks(j);
        if (helpers) {
            lk.lock();
            done_cv.wait(lk, [&] { return active == 0; });
        }
    }
};

static Pool g_pool;
static std::mutex g_launch_mu;

static const SimKernel* find_kernel(const char* name) {
    for (const SimKernel& k : kernel_table())
        if (strcmp(k.name, name) == 0) return &k;
    return nullptr;
}

// ---- resources: ptxas-report.txt --------------------------------------------

// The GPUs the fatbin has SASS for, with their limits per block.
struct Arch {
    int sm;
    size_t smem_static;  // static shared memory
    size_t smem_default; // static + dynamic without the opt-in attribute
    size_t smem_optin;   // static + dynamic with it (cudaFuncAttributeMaxDynamicSharedMemorySize)
};
static const Arch kArchs[] = {
    {80, 48 << 10, 48 << 10, 163 << 10},
    {90, 48 << 10, 48 << 10, 227 << 10},
};
static const int kNArchs = sizeof(kArchs) / sizeof(kArchs[0]);
static const int kRegsPerBlock = 65536;

struct KernelRes {
    bool have[kNArchs] = {};
    int regs[kNArchs] = {}, smem[kNArchs] = {}, stack[kNArchs] = {};
};

static std::mutex g_res_mu;
static bool g_res_loaded = false;
static std::vector<KernelRes> g_res;      // by kernel table index
static std::vector<size_t> g_max_dynamic;  // the function attribute (0: not set), by table index
static int g_arch = 0;                     // 0: check every arch of kArchs

static int arch_index(int sm) {
    for (int a = 0; a < kNArchs; a++)
        if (kArchs[a].sm == sm) return a;
    return -1;
}

static int kernel_index(const char* name) {
    const SimKernel* k = find_kernel(name);
    return k ? (int)(k - sim_kernel_table()) : -1;
}

static bool is_selftest(const char* name) { return strncmp(name, "simtest_", 8) == 0; }

// regs_per_block: what a block of threads allocates, registers being
// given to warps in units of 256.
static long regs_per_block(int regs, unsigned threads) {
    long warps = (threads + 31) / 32;
    long per_warp = ((long)regs * 32 + 255) / 256 * 256;
    return warps * per_warp;
}

// check_resources: the launch against every targeted GPU's limits (the
// kernels without a report entry are the harness's self-tests).
static std::string check_resources(int ki, const char* name, unsigned threads, size_t shared) {
    std::lock_guard<std::mutex> g(g_res_mu);
    if (!g_res_loaded) return "";
    const KernelRes& r = g_res[ki];
    bool any = false;
    for (int a = 0; a < kNArchs; a++) any |= r.have[a];
    if (!any) {
        if (is_selftest(name)) return "";
        return fmt("resources: %s is not in ptxas-report.txt (stale: run make kernels)", name);
    }
    // An architecture the report lacks is not checked (the kernels' tests
    // require both).
    size_t attr = g_max_dynamic.empty() ? 0 : g_max_dynamic[ki];
    for (int a = 0; a < kNArchs; a++) {
        const Arch& ar = kArchs[a];
        if ((g_arch != 0 && ar.sm != g_arch) || !r.have[a]) continue;
        long regs = regs_per_block(r.regs[a], threads);
        if (regs > kRegsPerBlock)
            return fmt("resources: %s: %d registers x %u threads need %ld registers per block (warps allocate in "
                       "units of 256), above sm_%d's %d (ptxas-report.txt)",
                       name, r.regs[a], threads, regs, ar.sm, kRegsPerBlock);
        size_t st = (size_t)r.smem[a];
        if (st > ar.smem_static)
            return fmt("resources: %s: %zu bytes of static shared memory, above sm_%d's %zu", name, st, ar.sm,
                       ar.smem_static);
        // Without the attribute, static and dynamic share 48 KiB; with it,
        // the GPU's opt-in maximum (sim_set_max_dynamic_shared checked it).
        size_t limit = attr == 0 ? ar.smem_default : ar.smem_optin;
        if (st + shared > limit)
            return fmt("resources: %s: %zu bytes of static and %zu of dynamic shared memory, above sm_%d's %zu per "
                       "block%s",
                       name, st, shared, ar.sm, limit, attr == 0 ? " without the opt-in attribute" : "");
    }
    return "";
}

static bool parse_report(const char* text, size_t len, std::vector<KernelRes>* out, std::string* err) {
    out->assign(sim_kernel_table_len(), KernelRes{});
    std::string s(text, len);
    size_t pos = 0;
    int cur = -1, arch = -1, nentries = 0;
    std::string cur_name;
    while (pos < s.size()) {
        size_t eol = s.find('\n', pos);
        if (eol == std::string::npos) eol = s.size();
        std::string line = s.substr(pos, eol - pos);
        pos = eol + 1;
        char name[256];
        int sm, a, b;
        const char* p;
        if ((p = strstr(line.c_str(), "Compiling entry function '")) != nullptr) {
            if (sscanf(p, "Compiling entry function '%255[^']' for 'sm_%d'", name, &sm) != 2) {
                *err = "cannot read: " + line;
                return false;
            }
            cur_name = name;
            cur = kernel_index(name);
            arch = arch_index(sm);
            nentries++;
            if (cur >= 0 && arch >= 0) (*out)[cur].have[arch] = true;
            continue;
        }
        if (cur < 0 || arch < 0) continue;
        if ((p = strstr(line.c_str(), "Function properties for ")) != nullptr) {
            // The stack frame line that follows belongs to this function,
            // which may be a callee (no entry of its own).
            if (strcmp(p + strlen("Function properties for "), cur_name.c_str()) != 0) arch = -1 - arch;
            continue;
        }
        if ((p = strstr(line.c_str(), "bytes stack frame")) != nullptr && sscanf(line.c_str(), " %d bytes stack", &a) == 1) {
            (*out)[cur].stack[arch] = a;
            continue;
        }
        if ((p = strstr(line.c_str(), "Used ")) != nullptr && sscanf(p, "Used %d registers", &a) == 1) {
            (*out)[cur].regs[arch] = a;
            const char* q = strstr(p, "bytes smem");
            if (q) {
                // The number before "bytes smem".
                const char* c = q;
                while (c > p && c[-1] == ' ') c--;
                while (c > p && c[-1] >= '0' && c[-1] <= '9') c--;
                if (sscanf(c, "%d", &b) == 1) (*out)[cur].smem[arch] = b;
            }
        }
    }
    if (nentries == 0) {
        *err = "no 'Compiling entry function' lines";
        return false;
    }
    return true;
}

}  // namespace sim

using namespace sim;

extern "C" {

SIM_HOOK void sim_syncthreads_at(const char* file, int line) {
    Worker* w = tls_worker;
    Fiber* f = w->cur;
    f->state = kAtBlockBarrier;
    f->bar_file = file;
    f->bar_line = line;
    w->at_block++;
    park(w, f);
}

SIM_HOOK uint64_t sim_warp_op(int op, unsigned mask, uint64_t v, int mode, int arg, int width) {
    Worker* w = tls_worker;
    Fiber* f = w->cur;
    unsigned lane = f->linear & 31, wi = f->linear / 32, nl = lanes_of(w->nthreads, wi);
    f->wop = op;
    f->wmask = mask;
    f->wval = v;
    f->wmode = mode;
    f->warg = arg;
    f->wwidth = width;
    if (!(mask >> lane & 1))
        SIM_FAULT(w, fmt("synccheck: %s with mask 0x%08x in %s (lane %u of warp %u), which is not in the mask",
                           warp_op_name(*f), mask, thread_name(w->job, f->linear).c_str(), lane, wi));
    if (nl < 32 && mask >> nl != 0)
        SIM_FAULT(w, fmt("synccheck: %s with mask 0x%08x in %s: warp %u has %u lanes (the block has %u threads)",
                           warp_op_name(*f), mask, thread_name(w->job, f->linear).c_str(), wi, nl, w->nthreads));
    if ((op == kWarpMma || op == kWarpLdmatrix) && (mask != 0xffffffffu || nl != 32))
        SIM_FAULT(w, fmt("synccheck: %s in %s with mask 0x%08x in a warp of %u lanes: the instruction is "
                         ".sync.aligned (every lane of a full warp)",
                         warp_op_name(*f), thread_name(w->job, f->linear).c_str(), mask, nl));
    if (op == kWarpShfl && (width <= 0 || width > 32 || (width & (width - 1)) != 0))
        SIM_FAULT(w, fmt("synccheck: %s in %s: width %d is not a power of 2 in [1, 32]", warp_op_name(*f),
                           thread_name(w->job, f->linear).c_str(), width));
    f->state = kAtWarpOp;
    park(w, f);
    return f->wresult;
}

SIM_HOOK void sim_cp_async(void* dst, const void* src, unsigned bytes, unsigned src_bytes) {
    Worker* w = tls_worker;
    Fiber* f = w->cur;
    if (f->nacopies == SIM_MAX_ASYNC_COPIES)
        SIM_FAULT(w, fmt("%s: more than %d cp.async copies pending (a missing cp.async.wait_group?)",
                         thread_name(w->job, f->linear).c_str(), SIM_MAX_ASYNC_COPIES));
    f->acopies[f->nacopies++] = SimAsyncCopy{dst, src, bytes, src_bytes};
}

SIM_HOOK void sim_cp_async_commit(void) {
    Worker* w = tls_worker;
    Fiber* f = w->cur;
    if (f->nagroups == SIM_MAX_ASYNC_COPIES)
        SIM_FAULT(w, fmt("%s: more than %d cp.async groups pending (a missing cp.async.wait_group?)",
                         thread_name(w->job, f->linear).c_str(), SIM_MAX_ASYNC_COPIES));
    f->agroups[f->nagroups++] = f->nacopies;
}

SIM_HOOK int sim_cp_async_take(int keep, SimAsyncCopy* out) {
    Fiber* f = tls_worker->cur;
    if (keep < 0) keep = 0;
    if (f->nagroups <= keep) return 0;
    // The oldest nagroups - keep groups complete: their copies, in order.
    int done = f->nagroups - keep, n = f->agroups[done - 1];
    memcpy(out, f->acopies, (size_t)n * sizeof(SimAsyncCopy));
    memmove(f->acopies, f->acopies + n, (size_t)(f->nacopies - n) * sizeof(SimAsyncCopy));
    f->nacopies -= n;
    for (int g = done; g < f->nagroups; g++) f->agroups[g - done] = f->agroups[g] - n;
    f->nagroups = keep;
    return n;
}

void sim_fault(const char* msg) {
    Worker* w = tls_worker;
    SIM_FAULT(w, fmt("%s: %s", thread_name(w->job, w->cur->linear).c_str(), msg));
}

void* sim_dynamic_smem(void) { return dyn_smem(tls_worker); }

void sim_configure(int threads, int order, uint64_t seed, int checks) {
    g_threads = threads;
    g_order = order;
    g_seed = seed;
    g_checks = checks & (kCheckRace | kCheckInit);
}

int sim_checks_available(void) { return hooks_compiled() ? 1 : 0; }

void sim_set_sampling(int first, int every) {
    std::lock_guard<std::mutex> g(g_launch_mu);
    g_check_first = first < 0 ? 0 : first;
    g_check_every = every < 0 ? 0 : every;
    g_config_launches.clear();  // counts start again
}

int sim_load_ptxas_report(const char* text, size_t len, char* err, size_t errlen) {
    std::vector<KernelRes> res;
    std::string e;
    if (!parse_report(text, len, &res, &e)) {
        snprintf(err, errlen, "ptxas report: %s", e.c_str());
        return 1;
    }
    std::lock_guard<std::mutex> g(g_res_mu);
    g_res = std::move(res);
    g_res_loaded = true;
    return 0;
}

void sim_set_arch(int sm) {
    std::lock_guard<std::mutex> g(g_res_mu);
    g_arch = arch_index(sm) >= 0 ? sm : 0;
}

int sim_set_max_dynamic_shared(const char* name, size_t bytes, char* err, size_t errlen) {
    int ki = kernel_index(name);
    if (ki < 0) {
        snprintf(err, errlen, "no kernel named %s", name);
        return 1;
    }
    std::lock_guard<std::mutex> g(g_res_mu);
    for (int a = 0; a < kNArchs; a++) {
        if (g_arch != 0 && kArchs[a].sm != g_arch) continue;
        size_t st = g_res_loaded && g_res[ki].have[a] ? (size_t)g_res[ki].smem[a] : 0;
        if (st + bytes > kArchs[a].smem_optin) {
            snprintf(err, errlen, "%s: %zu bytes of dynamic shared memory with %zu static, above sm_%d's %zu", name,
                     bytes, st, kArchs[a].sm, kArchs[a].smem_optin);
            return 1;
        }
    }
    if (g_max_dynamic.empty()) g_max_dynamic.assign(sim_kernel_table_len(), 0);
    g_max_dynamic[ki] = bytes;
    return 0;
}

int sim_kernel_resources(const char* name, int sm, int* regs, int* smem, int* stack) {
    int ki = kernel_index(name), a = arch_index(sm);
    std::lock_guard<std::mutex> g(g_res_mu);
    if (ki < 0 || a < 0 || !g_res_loaded || !g_res[ki].have[a]) return 1;
    *regs = g_res[ki].regs[a];
    *smem = g_res[ki].smem[a];
    *stack = g_res[ki].stack[a];
    return 0;
}

// launch_check: CUDA's limits for compute capability 8.0 and 9.0, and the
// kernel's resources from the ptxas report.
static std::string launch_check(const SimKernel* k, const char* name, const unsigned grid[3], const unsigned block[3],
                                size_t shared) {
    if (grid[0] == 0 || grid[1] == 0 || grid[2] == 0 || grid[0] > 0x7fffffffu || grid[1] > 65535 || grid[2] > 65535)
        return fmt("%s: invalid grid (%u, %u, %u)", name, grid[0], grid[1], grid[2]);
    unsigned long nthr = (unsigned long)block[0] * block[1] * block[2];
    if (block[0] == 0 || block[1] == 0 || block[2] == 0 || block[0] > 1024 || block[1] > 1024 || block[2] > 64 ||
        nthr > 1024)
        return fmt("%s: invalid block (%u, %u, %u)", name, block[0], block[1], block[2]);
    if (shared > (227u << 10)) return fmt("%s: %zu bytes of dynamic shared memory, above every GPU's limit", name, shared);
    {
        std::lock_guard<std::mutex> g(g_res_mu);
        size_t attr = g_max_dynamic.empty() ? 0 : g_max_dynamic[k - sim_kernel_table()];
        size_t maxdyn = attr == 0 ? (48u << 10) : attr;
        if (shared > maxdyn)
            return fmt("resources: %s: %zu bytes of dynamic shared memory, above the kernel's maximum of %zu (48 KiB "
                       "without the opt-in attribute)",
                       name, shared, maxdyn);
    }
    return check_resources((int)(k - sim_kernel_table()), name, (unsigned)nthr, shared);
}

int sim_launch_check(const char* name, const unsigned grid[3], const unsigned block[3], size_t shared, char* err,
                     size_t errlen) {
    const SimKernel* k = find_kernel(name);
    std::string m = k ? launch_check(k, name, grid, block, shared) : fmt("no kernel named %s", name);
    if (m.empty()) return 0;
    snprintf(err, errlen, "%s", m.c_str());
    return 1;
}

int sim_launch(const char* name, const unsigned grid[3], const unsigned block[3], size_t shared,
               const uint64_t* args, int nargs, const char* sig, char* err, size_t errlen) {
    std::lock_guard<std::mutex> launch_lock(g_launch_mu);
    auto fail = [&](const std::string& m) {
        snprintf(err, errlen, "%s", m.c_str());
        return 1;
    };
    const SimKernel* k = find_kernel(name);
    if (!k) return fail(fmt("no kernel named %s", name));
    if ((int)strlen(k->sig) != nargs || strcmp(k->sig, sig) != 0)
        return fail(fmt("%s: launched with arguments (%s), the kernel takes (%s)", name, sig, k->sig));
    std::string r = launch_check(k, name, grid, block, shared);
    if (!r.empty()) return fail(r);
    Job job;
    job.kernel = k;
    job.args = args;
    job.sig = k->sig;
    job.nargs = nargs;
    job.grid = sim_dim3{grid[0], grid[1], grid[2]};
    job.block = sim_dim3{block[0], block[1], block[2]};
    job.shared = shared;
    job.nblocks = (long)grid[0] * grid[1] * grid[2];
    job.seq = g_launch_seq++;
    {
        std::string key = fmt("%s %u %u %u %u %u %u %zu", name, grid[0], grid[1], grid[2], block[0], block[1], block[2],
                              shared);
        uint64_t n = g_config_launches[key]++;
        job.hooked = hooks_compiled() &&
                     ((int64_t)n < g_check_first || (g_check_every > 0 && (n - g_check_first) % g_check_every == 0));
    }
    job.checks = job.hooked ? g_checks.load() : 0;
    if (job.hooked) {
        g_checked_launches.resize(sim_kernel_table_len());
        g_checked_launches[k - sim_kernel_table()]++;
    }
    global_launch_start(&job);
    int threads = g_threads.load();
    if (threads <= 0) threads = (int)std::thread::hardware_concurrency();
    if (threads < 1) threads = 1;
    g_pool.run(&job, threads);
    if (job.failed) return fail(job.err);
    return 0;
}

int sim_kernel_count(void) { return sim_kernel_table_len(); }
const char* sim_kernel_name(int i) { return sim_kernel_table()[i].name; }
const char* sim_kernel_sig(int i) { return sim_kernel_table()[i].sig; }
uint64_t sim_checked_launches(int i) {
    std::lock_guard<std::mutex> g(g_launch_mu);
    return i >= 0 && (size_t)i < g_checked_launches.size() ? g_checked_launches[i] : 0;
}

}  // extern "C"
