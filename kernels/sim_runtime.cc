//go:build kernelsim

// The kernelsim harness: runs fmgpu's CUDA kernels, compiled for the host
// by sim_kernels.cc, with CUDA's execution model (sim_shim.h describes it).
// Each CUDA thread is a fiber on its own stack; __syncthreads and warp
// operations park the fiber and the per-block scheduler below releases a
// barrier once every thread it waits for has arrived, reporting misuse
// (a barrier after some threads returned, a deadlock) as a launch error.

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>

#include <atomic>
#include <condition_variable>
#include <map>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "sim_api.h"
#include "sim_registry.h"
#include "sim_shim.h"

thread_local sim_dim3 threadIdx;
thread_local sim_dim3 blockIdx;
thread_local sim_dim3 blockDim;
thread_local sim_dim3 gridDim;

extern const SimKernel sim_kernel_table[];
extern const int sim_kernel_table_len;

namespace {

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

struct Ctx {
    void* sp = nullptr;
};

void ctx_init(Ctx* c, char* stack, size_t size, void (*fn)(void*), void* arg) {
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

inline void ctx_switch(Ctx* from, Ctx* to) { fmgpu_sim_ctx_switch(&from->sp, to->sp); }
#else
#include <ucontext.h>
// Portable fallback: ucontext (slower: a signal-mask system call a switch).
struct Ctx {
    ucontext_t uc;
};

void (*g_entry_fn)(void*);
void ucontext_entry(unsigned hi, unsigned lo) {
    void* arg = (void*)(((uintptr_t)hi << 32) | (uintptr_t)lo);
    g_entry_fn(arg);
    abort();
}

void ctx_init(Ctx* c, char* stack, size_t size, void (*fn)(void*), void* arg) {
    getcontext(&c->uc);
    c->uc.uc_stack.ss_sp = stack;
    c->uc.uc_stack.ss_size = size;
    c->uc.uc_link = nullptr;
    g_entry_fn = fn;
    uintptr_t a = (uintptr_t)arg;
    makecontext(&c->uc, (void (*)())ucontext_entry, 2, (unsigned)(a >> 32), (unsigned)a);
}

inline void ctx_switch(Ctx* from, Ctx* to) { swapcontext(&from->uc, &to->uc); }
#endif

// ---- configuration --------------------------------------------------------

std::atomic<int> g_threads{0};
std::atomic<int> g_order{2};
std::atomic<uint64_t> g_seed{0x5eed};
std::atomic<int> g_guard{1};
std::atomic<uint64_t> g_launch_seq{0};

const size_t kStackSize = 128 << 10;
const size_t kMaxDynamicSmem = 48 << 10;

enum FiberState { kRunnable, kAtBlockBarrier, kAtWarpBarrier, kDone };

struct Fiber {
    Ctx ctx;
    char* stack = nullptr;  // mapping: a guard page, then kStackSize bytes
    FiberState state = kRunnable;
    sim_dim3 tid{0, 0, 0};
    unsigned linear = 0;
    unsigned shfl_gen = 0;
};

struct Job {
    const SimKernel* kernel = nullptr;
    const uint64_t* args = nullptr;
    sim_dim3 grid{1, 1, 1}, block{1, 1, 1};
    size_t shared = 0;
    long nblocks = 0;
    uint64_t seq = 0;
    std::atomic<long> next{0};
    std::atomic<bool> failed{false};
    std::mutex err_mu;
    std::string err;

    void fail(const std::string& msg) {
        std::lock_guard<std::mutex> g(err_mu);
        if (err.empty()) err = msg;
        failed = true;
    }
};

std::string fmt(const char* f, ...) {
    char buf[512];
    va_list ap;
    va_start(ap, f);
    vsnprintf(buf, sizeof buf, f, ap);
    va_end(ap);
    return buf;
}

// Worker is the per-OS-thread state: the fibers of the block it runs.
struct Worker {
    std::vector<Fiber> fibers;
    Ctx sched;
    Fiber* cur = nullptr;
    Job* job = nullptr;
    unsigned nthreads = 0;
    int at_block = 0;
    std::vector<int> warp_at;
    std::vector<uint64_t> xchg;  // two generations of nthreads slots
    std::vector<unsigned char> dyn;
    std::vector<unsigned> order;
    std::string err;  // first misuse seen inside the current block

    ~Worker() {
        for (auto& f : fibers)
            if (f.stack) munmap(f.stack, kStackSize + (size_t)getpagesize());
    }

    void ensure_fibers(unsigned n) {
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
};

thread_local Worker* tls_worker = nullptr;

Worker* this_worker() {
    if (!tls_worker) tls_worker = new Worker();  // lives as long as its thread
    return tls_worker;
}

void fiber_main(void* arg) {
    Worker* w = (Worker*)arg;
    Fiber* f = w->cur;
    w->job->kernel->invoke(w->job->args);
    f->state = kDone;
    ctx_switch(&f->ctx, &w->sched);
    abort();  // a finished fiber is never resumed
}

uint64_t mix64(uint64_t x) {
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdull;
    x ^= x >> 33;
    x *= 0xc4ceb9fe1a85ec53ull;
    x ^= x >> 33;
    return x;
}

void make_order(Worker* w, uint64_t phase_seed) {
    unsigned n = w->nthreads;
    w->order.resize(n);
    int mode = g_order.load();
    for (unsigned i = 0; i < n; i++) w->order[i] = mode == 1 ? n - 1 - i : i;
    if (mode == 2) {
        uint64_t s = mix64(phase_seed);
        for (unsigned i = n; i > 1; i--) {
            s = mix64(s + 0x9E3779B97F4A7C15ull);
            unsigned j = (unsigned)(s % i);
            std::swap(w->order[i - 1], w->order[j]);
        }
    }
}

void run_block(Worker* w, Job* job, long b) {
    const sim_dim3 g = job->grid, bd = job->block;
    blockIdx = sim_dim3{(unsigned)(b % g.x), (unsigned)((b / g.x) % g.y), (unsigned)(b / ((long)g.x * g.y))};
    gridDim = g;
    blockDim = bd;
    unsigned n = bd.x * bd.y * bd.z;
    w->job = job;
    w->nthreads = n;
    w->at_block = 0;
    w->warp_at.assign((n + 31) / 32, 0);
    w->xchg.assign(2 * (size_t)((n + 31) / 32) * 32, 0);
    w->err.clear();
    if (job->shared > 0) {
        w->dyn.resize(job->shared);
        memset(w->dyn.data(), 0xFF, job->shared);  // NaN: reading before writing shows
    }
    w->ensure_fibers(n);
    size_t page = (size_t)getpagesize();
    for (unsigned i = 0; i < n; i++) {
        Fiber& f = w->fibers[i];
        f.state = kRunnable;
        f.linear = i;
        f.shfl_gen = 0;
        f.tid = sim_dim3{i % bd.x, (i / bd.x) % bd.y, i / (bd.x * bd.y)};
        ctx_init(&f.ctx, f.stack + page, kStackSize, fiber_main, w);
    }
    unsigned done = 0;
    uint64_t phase = 0;
    for (;;) {
        make_order(w, g_seed.load() ^ (job->seq << 20) ^ ((uint64_t)b << 40) ^ phase++);
        for (unsigned k = 0; k < n; k++) {
            Fiber& f = w->fibers[w->order[k]];
            if (f.state != kRunnable) continue;
            threadIdx = f.tid;
            w->cur = &f;
            ctx_switch(&w->sched, &f.ctx);
            if (f.state == kDone) done++;
        }
        if (!w->err.empty()) {
            job->fail(fmt("%s: block (%u,%u,%u): %s", job->kernel->name, blockIdx.x, blockIdx.y, blockIdx.z,
                          w->err.c_str()));
            return;
        }
        if (done == n) return;
        bool released = false;
        if (w->at_block > 0 && (unsigned)w->at_block + done == n) {
            if (done > 0) {
                job->fail(fmt("%s: block (%u,%u,%u): __syncthreads reached by %d threads after %u threads of "
                              "the block returned",
                              job->kernel->name, blockIdx.x, blockIdx.y, blockIdx.z, w->at_block, done));
                return;
            }
            for (unsigned i = 0; i < n; i++) w->fibers[i].state = kRunnable;
            w->at_block = 0;
            released = true;
        }
        for (unsigned wi = 0; wi < w->warp_at.size(); wi++) {
            if (w->warp_at[wi] == 0) continue;
            unsigned lo = wi * 32, hi = lo + 32 < n ? lo + 32 : n, waiting = 0, gone = 0;
            for (unsigned i = lo; i < hi; i++) {
                if (w->fibers[i].state == kAtWarpBarrier) waiting++;
                if (w->fibers[i].state == kDone) gone++;
            }
            if (waiting == hi - lo) {
                for (unsigned i = lo; i < hi; i++) w->fibers[i].state = kRunnable;
                w->warp_at[wi] = 0;
                released = true;
            } else if (gone > 0 && waiting + gone == hi - lo) {
                job->fail(fmt("%s: block (%u,%u,%u): warp %u: a warp operation after %u of its lanes returned",
                              job->kernel->name, blockIdx.x, blockIdx.y, blockIdx.z, wi, gone));
                return;
            }
        }
        if (!released) {
            unsigned at_bar = 0, at_warp = 0;
            for (unsigned i = 0; i < n; i++) {
                at_bar += w->fibers[i].state == kAtBlockBarrier;
                at_warp += w->fibers[i].state == kAtWarpBarrier;
            }
            job->fail(fmt("%s: block (%u,%u,%u): deadlock: %u threads at __syncthreads, %u at warp operations, "
                          "%u returned (divergent barrier?)",
                          job->kernel->name, blockIdx.x, blockIdx.y, blockIdx.z, at_bar, at_warp, done));
            return;
        }
    }
}

void run_blocks(Job* job) {
    Worker* w = this_worker();
    for (;;) {
        if (job->failed) return;
        long b = job->next.fetch_add(1);
        if (b >= job->nblocks) return;
        run_block(w, job, b);
    }
}

// Pool: OS threads that join the calling thread in running a launch's blocks.
struct Pool {
    std::mutex mu;
    std::condition_variable cv, done_cv;
    Job* job = nullptr;
    uint64_t gen = 0;
    int active = 0;
    std::vector<std::thread> threads;

    void loop(uint64_t seen) {
        std::unique_lock<std::mutex> lk(mu);
        for (;;) {
            cv.wait(lk, [&] { return gen != seen; });
            seen = gen;
            Job* j = job;
            lk.unlock();
            run_blocks(j);
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
        bool helpers = j->nblocks > 1 && !threads.empty();  // one block: run it here
        if (helpers) {
            job = j;
            active = (int)threads.size();
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

Pool g_pool;
std::mutex g_launch_mu;

const SimKernel* find_kernel(const char* name) {
    for (int i = 0; i < sim_kernel_table_len; i++)
        if (strcmp(sim_kernel_table[i].name, name) == 0) return &sim_kernel_table[i];
    return nullptr;
}

// Allocations: with the guard on, each buffer ends at a PROT_NONE page, so
// reading or writing one element past its end faults at once.
struct Mapping {
    void* base;
    size_t len;
};
std::mutex g_alloc_mu;
std::map<uint64_t, Mapping> g_allocs;

}  // namespace

extern "C" {

void sim_syncthreads(void) {
    Worker* w = tls_worker;
    Fiber* f = w->cur;
    f->state = kAtBlockBarrier;
    w->at_block++;
    ctx_switch(&f->ctx, &w->sched);
}

void sim_syncwarp(void) {
    Worker* w = tls_worker;
    Fiber* f = w->cur;
    f->state = kAtWarpBarrier;
    w->warp_at[f->linear / 32]++;
    ctx_switch(&f->ctx, &w->sched);
}

uint64_t sim_shfl(uint64_t v, int mode, int arg, int width) {
    Worker* w = tls_worker;
    Fiber* f = w->cur;
    unsigned lin = f->linear, lane = lin & 31, base = lin - lane;
    size_t cap = w->xchg.size() / 2;
    uint64_t* buf = w->xchg.data() + (f->shfl_gen & 1) * cap;
    f->shfl_gen++;
    buf[lin] = v;
    sim_syncwarp();
    if (width <= 0 || width > 32 || (width & (width - 1)) != 0) {
        if (w->err.empty()) w->err = fmt("shuffle width %d is not a power of 2 in [1, 32]", width);
        return v;
    }
    unsigned seg = lane & ~(unsigned)(width - 1), in = lane & (unsigned)(width - 1), src = lane;
    switch (mode) {
        case SIM_SHFL_XOR:
            src = seg + ((in ^ (unsigned)arg) & (unsigned)(width - 1));
            if ((in ^ (unsigned)arg) >= (unsigned)width) src = lane;
            break;
        case SIM_SHFL_DOWN:
            src = in + (unsigned)arg < (unsigned)width ? lane + (unsigned)arg : lane;
            break;
        default:
            src = seg + ((unsigned)arg & (unsigned)(width - 1));
    }
    if (base + src >= w->nthreads) {
        if (w->err.empty())
            w->err = fmt("thread %u shuffles from lane %u, past the block's %u threads", lin, src, w->nthreads);
        return v;
    }
    return buf[base + src];
}

void sim_fault(const char* msg) {
    Worker* w = tls_worker;
    if (w->err.empty()) w->err = fmt("thread %u: %s", w->cur->linear, msg);
}

void* sim_dynamic_smem(void) {
    Worker* w = tls_worker;
    return w->dyn.empty() ? nullptr : w->dyn.data();
}

void sim_configure(int threads, int order, uint64_t seed, int guard) {
    g_threads = threads;
    g_order = order;
    g_seed = seed;
    g_guard = guard;
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
    // CUDA's limits (compute capability 8.0 and 9.0).
    if (grid[0] == 0 || grid[1] == 0 || grid[2] == 0 || grid[0] > 0x7fffffffu || grid[1] > 65535 || grid[2] > 65535)
        return fail(fmt("%s: invalid grid (%u, %u, %u)", name, grid[0], grid[1], grid[2]));
    unsigned long nthr = (unsigned long)block[0] * block[1] * block[2];
    if (block[0] == 0 || block[1] == 0 || block[2] == 0 || block[0] > 1024 || block[1] > 1024 || block[2] > 64 ||
        nthr > 1024)
        return fail(fmt("%s: invalid block (%u, %u, %u)", name, block[0], block[1], block[2]));
    if (shared > kMaxDynamicSmem)
        return fail(fmt("%s: %zu bytes of dynamic shared memory (at most %zu without opt-in)", name, shared,
                        kMaxDynamicSmem));
    Job job;
    job.kernel = k;
    job.args = args;
    job.grid = sim_dim3{grid[0], grid[1], grid[2]};
    job.block = sim_dim3{block[0], block[1], block[2]};
    job.shared = shared;
    job.nblocks = (long)grid[0] * grid[1] * grid[2];
    job.seq = g_launch_seq++;
    int threads = g_threads.load();
    if (threads <= 0) threads = (int)std::thread::hardware_concurrency();
    if (threads < 1) threads = 1;
    g_pool.run(&job, threads);
    if (job.failed) return fail(job.err);
    return 0;
}

uint64_t sim_alloc(size_t bytes) {
    if (bytes == 0) return 0;
    size_t page = (size_t)getpagesize();
    size_t body = (bytes + page - 1) / page * page;
    bool guard = g_guard.load() != 0;
    size_t len = body + (guard ? page : 0);
    void* m = mmap(nullptr, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (m == MAP_FAILED) return 0;
    char* p = (char*)m;
    if (guard) {
        mprotect(p + body, page, PROT_NONE);
        // End exactly at the guard page: 4-byte aligned for float buffers,
        // 8-byte for the double scratch (its sizes are multiples of 8).
        p += body - bytes;
    }
    memset(p, 0xFF, bytes);  // NaN: uninitialised reads show
    std::lock_guard<std::mutex> g(g_alloc_mu);
    g_allocs[(uint64_t)(uintptr_t)p] = Mapping{m, len};
    return (uint64_t)(uintptr_t)p;
}

void sim_free(uint64_t p) {
    Mapping m;
    {
        std::lock_guard<std::mutex> g(g_alloc_mu);
        auto it = g_allocs.find(p);
        if (it == g_allocs.end()) return;
        m = it->second;
        g_allocs.erase(it);
    }
    munmap(m.base, m.len);
}

void sim_htod(uint64_t dst, const void* src, size_t bytes) { memcpy((void*)(uintptr_t)dst, src, bytes); }
void sim_dtoh(void* dst, uint64_t src, size_t bytes) { memcpy(dst, (const void*)(uintptr_t)src, bytes); }
void sim_dtod(uint64_t dst, uint64_t src, size_t bytes) {
    memmove((void*)(uintptr_t)dst, (const void*)(uintptr_t)src, bytes);
}
void sim_memset32(uint64_t dst, uint32_t v, size_t n) {
    uint32_t* p = (uint32_t*)(uintptr_t)dst;
    for (size_t i = 0; i < n; i++) p[i] = v;
}

int sim_kernel_count(void) { return sim_kernel_table_len; }
const char* sim_kernel_name(int i) { return sim_kernel_table[i].name; }
const char* sim_kernel_sig(int i) { return sim_kernel_table[i].sig; }

}  // extern "C"
