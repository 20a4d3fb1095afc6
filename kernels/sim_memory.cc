//go:build kernelsim

// Device and shared memory of the kernelsim harness, and the checks of
// every access the kernels make (with FMGPU_SIM_CHECKS: sim_internal.h):
//
//   memcheck   global memory is one reserved arena; each allocation sits
//              between two inaccessible guard pages, starts 256-byte
//              aligned as cuMemAlloc's, and a shadow byte per 4-byte word
//              says how many of its bytes belong to a live allocation, so
//              an access one byte out of bounds, to freed memory or at an
//              address not aligned to its size (the GPU faults on those;
//              8- and 16-byte vector accesses included) fails the launch;
//              dynamic shared memory is bounded by the launch's size;
//   racecheck  per 4-byte word, the last write and the last two reads of
//              distinct threads: two threads of a block touching a word of
//              shared memory in one barrier interval (no __syncthreads, nor
//              for lanes of a warp a __syncwarp, between them), at least one
//              writing, is a race; in global memory the same within a block,
//              and any two threads of different blocks of one launch
//              (blocks are unordered). Atomics never race;
//   initcheck  a read of shared memory that no thread of the block has
//              written since the block started (static __shared__ arrays
//              and dynamic shared memory are poisoned at every block start:
//              0xFF bytes, NaN as floats).
//
// Static __shared__ variables are thread_local in the host build (one copy
// per OS thread, which runs one block at a time); each registers with its
// worker when the thread first passes its declaration (FM_SHARED), and the
// words between registered variables are out of bounds.

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <deque>
#include <map>

#include "sim_api.h"
#include "sim_internal.h"

#if defined(FMGPU_SIM_ASAN)
// In the AddressSanitizer build the kernels are instrumented by it, and the
// bytes around every allocation are poisoned in its shadow: its bounds
// check is the memcheck there.
#include <sanitizer/asan_interface.h>
#define SIM_POISON(p, n) ASAN_POISON_MEMORY_REGION((const void*)(p), (n))
#define SIM_UNPOISON(p, n) ASAN_UNPOISON_MEMORY_REGION((const void*)(p), (n))
#else
#define SIM_POISON(p, n) ((void)(p), (void)(n))
#define SIM_UNPOISON(p, n) ((void)(p), (void)(n))
#endif

namespace sim {

static const size_t g_page = (size_t)getpagesize();

SIM_HOOK static size_t page_size() { return g_page; }

SIM_HOOK static size_t round_up(size_t v, size_t m) { return (v + m - 1) / m * m; }

// The hooks use no library templates: GCC does not inline instrumented
// code into them, and an out-of-line call per access is slow.
SIM_HOOK static inline uintptr_t umin(uintptr_t a, uintptr_t b) { return a < b ? a : b; }

// ---- device memory: the arena ---------------------------------------------

// Reserved address space, committed allocation by allocation. The valid
// shadow (one byte per 4-byte word: 0 inaccessible, 1-4 the number of
// leading bytes that belong to an allocation, kFreed) is readable over the
// whole arena; the race shadow (3 words per 4-byte word) only over live
// allocations.
static const size_t kArenaBytes = (size_t)64 << 30;
static const uint8_t kFreed = 0xFF;
static const size_t kQuarantineBytes = (size_t)64 << 20;  // freed address space kept unusable

struct Alloc {
    uintptr_t p = 0;
    size_t bytes = 0;
    uintptr_t region = 0;  // guard page, data pages, guard page
    size_t region_len = 0;
};

static uintptr_t g_lo = 0;  // arena data; 0 until the first allocation
static size_t g_size = 0;
static uint8_t* g_valid = nullptr;
static uint64_t* g_race = nullptr;
static std::once_flag g_arena_once;
static bool g_arena_ok = false;

static std::mutex g_alloc_mu;  // guards everything below
static size_t g_bump = 0;      // bytes of the arena handed out so far
static std::map<uintptr_t, Alloc> g_live;             // by p
static std::deque<Alloc> g_quarantine;                // freed, not reusable yet
static size_t g_quarantine_bytes = 0;
static std::map<uintptr_t, size_t> g_free;            // reusable regions: start -> length

static void arena_init() {
    void* d = mmap(nullptr, kArenaBytes, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (d == MAP_FAILED) return;
    void* v = mmap(nullptr, kArenaBytes / 4, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (v == MAP_FAILED) {
        munmap(d, kArenaBytes);
        return;
    }
    void* r = nullptr;
    if (hooks_compiled()) {
        r = mmap(nullptr, kArenaBytes / 4 * 24, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
        if (r == MAP_FAILED) {
            munmap(d, kArenaBytes);
            munmap(v, kArenaBytes / 4);
            return;
        }
    }
    g_valid = (uint8_t*)v;
    g_race = (uint64_t*)r;
    g_size = kArenaBytes;
    g_lo = (uintptr_t)d;  // last: the hooks test addresses against g_lo + g_size
    g_arena_ok = true;
}

SIM_HOOK static size_t granule(uintptr_t a) { return (a - g_lo) >> 2; }

// shadow_rw makes the shadows of [a, a + len) writable.
static void shadow_rw(uintptr_t a, size_t len) {
    size_t pg = page_size();
    uintptr_t v0 = (uintptr_t)(g_valid + granule(a)), v1 = (uintptr_t)(g_valid + granule(a + len));
    v0 = v0 / pg * pg;
    v1 = round_up(v1, pg);
    mprotect((void*)v0, v1 - v0, PROT_READ | PROT_WRITE);
    if (g_race) mprotect(g_race + 3 * granule(a), len / 4 * 24, PROT_READ | PROT_WRITE);
}

// region_take finds len bytes of arena address space: the best-fitting
// reusable region, else fresh space.
static uintptr_t region_take(size_t len) {
    auto best = g_free.end();
    for (auto it = g_free.begin(); it != g_free.end(); ++it)
        if (it->second >= len && (best == g_free.end() || it->second < best->second)) best = it;
    if (best != g_free.end()) {
        uintptr_t r = best->first;
        size_t rest = best->second - len;
        g_free.erase(best);
        if (rest > 0) g_free[r + len] = rest;
        return r;
    }
    if (g_bump + len > g_size) return 0;
    uintptr_t r = g_lo + g_bump;
    g_bump += len;
    return r;
}

static void region_give(uintptr_t r, size_t len) {
    memset(g_valid + granule(r), 0, len / 4);
    auto next = g_free.find(r + len);
    if (next != g_free.end()) {
        len += next->second;
        g_free.erase(next);
    }
    auto prev = g_free.lower_bound(r);
    if (prev != g_free.begin()) {
        --prev;
        if (prev->first + prev->second == r) {
            prev->second += len;
            return;
        }
    }
    g_free[r] = len;
}

// describe_global names an address of the arena for a message: its
// allocation and offset, and the kernel arguments that point into it.
static std::string describe_global(const Job* job, uintptr_t a) {
    std::lock_guard<std::mutex> g(g_alloc_mu);
    auto args_in = [&](const Alloc& al) {
        std::string s;
        if (!job) return s;
        for (int i = 0; i < job->nargs; i++) {
            if (job->sig[i] != 'p') continue;
            uintptr_t v = (uintptr_t)job->args[i];
            if (v >= al.p && v <= al.p + al.bytes) s += fmt("%sargument %d", s.empty() ? ", kernel " : " and ", i);
        }
        return s;
    };
    auto it = g_live.upper_bound(a);
    const Alloc* near = nullptr;
    if (it != g_live.begin()) {
        const Alloc& al = std::prev(it)->second;
        if (a < al.region + al.region_len) near = &al;
    }
    if (!near && it != g_live.end() && a >= it->second.region) near = &it->second;
    if (near) {
        const Alloc& al = *near;
        std::string what = fmt("allocation 0x%lx (%zu bytes%s)", (unsigned long)al.p, al.bytes, args_in(al).c_str());
        if (a < al.p) return fmt("%zu bytes before the start of %s", (size_t)(al.p - a), what.c_str());
        if (a >= al.p + al.bytes) return fmt("%zu bytes past the end of %s", (size_t)(a - al.p - al.bytes), what.c_str());
        return fmt("%s + %zu", what.c_str(), (size_t)(a - al.p));
    }
    for (auto q = g_quarantine.rbegin(); q != g_quarantine.rend(); ++q)
        if (a >= q->region && a < q->region + q->region_len)
            return fmt("freed allocation 0x%lx (%zu bytes) + %ld", (unsigned long)q->p, q->bytes, (long)(a - q->p));
    return fmt("unallocated device memory 0x%lx", (unsigned long)a);
}

// check_host: a host copy must stay inside one live allocation (the
// launcher's sizes are wrong otherwise): abort with a message rather than
// fault in the guard page or corrupt a neighbour.
SIM_HOOK static void check_host(uint64_t p, size_t bytes, const char* what) {
    if (bytes == 0 || !g_arena_ok) return;
    uintptr_t a = (uintptr_t)p;
    bool ok = a - g_lo < g_size && a + bytes - g_lo <= g_size;
    for (uintptr_t x = a; ok && x < a + bytes; x = (x | 3) + 1) {
        uint8_t v = g_valid[granule(x)];
        uintptr_t end = umin(a + bytes, (x | 3) + 1);
        ok = v != 0 && v != kFreed && end - (x & ~(uintptr_t)3) <= v;
    }
    if (!ok) {
        fprintf(stderr, "kernelsim: %s of %zu bytes at 0x%lx: %s\n", what, bytes, (unsigned long)a,
                describe_global(nullptr, a + bytes - 1).c_str());
        abort();
    }
}

// ---- shared memory ----------------------------------------------------------

static const size_t kDynWindow = (size_t)228 << 10;  // at least every GPU's dynamic shared memory

// Cell flags in init_mask above the byte bits.
static const uint32_t kCellGap = 1u << 31;     // between static variables: out of bounds
static const uint32_t kCellIgnore = 1u << 30;  // a harness thread-local: not shared memory

void smem_init(Worker* w) {
    size_t pg = page_size();
    void* m = mmap(nullptr, kDynWindow + 2 * pg, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (m == MAP_FAILED) {
        fprintf(stderr, "kernelsim: cannot map dynamic shared memory: %s\n", strerror(errno));
        abort();
    }
    w->dyn_map = (char*)m;
    mprotect(w->dyn_map, pg, PROT_NONE);
    mprotect(w->dyn_map + pg + kDynWindow, pg, PROT_NONE);
    w->dyn = w->dyn_map + pg;
}

void smem_release(Worker* w) {
    // The shadow outlives the mapping: clear the window's poison, or memory
    // mapped here later (a fiber's stack) would inherit it.
    SIM_UNPOISON(w->dyn, kDynWindow);
    munmap(w->dyn_map, kDynWindow + 2 * page_size());
}

static std::string describe_shared(const Worker* w, uintptr_t a) {
    if (a - (uintptr_t)w->dyn_map < kDynWindow + 2 * page_size()) {
        long off = (long)(a - (uintptr_t)w->dyn);
        return fmt("dynamic shared memory + %ld (of %zu bytes)", off, w->dyn_size);
    }
    const SharedVar* before = nullptr;
    for (const auto& v : w->ssm_vars) {
        if (a >= v.p && a < v.p + v.size)
            return fmt("__shared__ %s + %zu (of %zu bytes)", v.name.c_str(), (size_t)(a - v.p), v.size);
        if (v.p + v.size <= a) before = &v;
    }
    if (before)
        return fmt("static shared memory %zu bytes past the end of __shared__ %s (%zu bytes)",
                   (size_t)(a - before->p - before->size), before->name.c_str(), before->size);
    return fmt("static shared memory 0x%lx", (unsigned long)a);
}

// register_shared adds a static variable to the worker's span of cells.
static void register_shared(Worker* w, uintptr_t p, size_t size, const char* fn, const char* name) {
    auto at = std::lower_bound(w->ssm_vars.begin(), w->ssm_vars.end(), p,
                               [](const SharedVar& v, uintptr_t x) { return v.p < x; });
    if (at != w->ssm_vars.end() && at->p == p) return;
    w->ssm_vars.insert(at, SharedVar{p, size, std::string(fn) + "::" + name});
    memset((void*)p, 0xFF, size);  // poisoned, as at every block start
    if (!hooks_compiled()) return;
    uintptr_t lo = w->ssm_vars.front().p & ~(uintptr_t)3, hi = 0;
    for (const auto& v : w->ssm_vars) hi = std::max<uintptr_t>(hi, round_up(v.p + v.size, 4));
    if (lo != w->ssm_lo || hi - lo != w->ssm_size) {
        // The span must hold the kernels' variables only: a thread-local of
        // the harness inside it would read as shared memory, as when the
        // kernels' translation units are linked apart (sim_kernels.cc).
        for (uintptr_t own : {(uintptr_t)&threadIdx, (uintptr_t)&gridDim, (uintptr_t)&tls_worker}) {
            if (own - lo < hi - lo) {
                fprintf(stderr,
                        "kernelsim: the static __shared__ variables up to %s::%s span the harness's own "
                        "thread-locals: link the kernels' objects (sim_kernels*.cc) next to each other\n",
                        fn, name);
                abort();
            }
        }
        // A wider span: move the cells over; new words are gaps until a
        // variable covers them.
        std::vector<SmemCell> cells((hi - lo) / 4, SmemCell{0, kCellGap, 0, 0, 0});
        for (size_t i = 0; i < w->ssm_cells.size(); i++) cells[(w->ssm_lo - lo) / 4 + i] = w->ssm_cells[i];
        w->ssm_cells.swap(cells);
        w->ssm_cell0 = w->ssm_cells.data();
        w->ssm_lo = lo;
        w->ssm_size = hi - lo;
    }
    for (uintptr_t x = p & ~(uintptr_t)3; x < p + size; x += 4) w->ssm_cells[(x - lo) / 4] = SmemCell{0, 0, 0, 0, 0};
}

static bool hooks_on(const Job* job) { return job->hooked; }

SIM_HOOK void smem_block_start(Worker* w, const Job* job) {
    if (w->stamp >= 0xFFFFFF00u) {  // the stamps wrap: forget every record
        for (auto& c : w->ssm_cells) c.init_stamp = 0, c.w = c.r = c.r2 = 0;
        for (auto& c : w->dyn_cells) c = SmemCell{0, 0, 0, 0, 0};
        w->stamp = 0;
    }
    w->stamp++;
    w->block_stamp = w->stamp;
    w->dyn_size = job->shared;
    SIM_POISON(w->dyn, kDynWindow);
    SIM_UNPOISON(w->dyn, job->shared);
    memset(w->dyn, 0xFF, job->shared);
    bool init = hooks_on(job) && (job->checks & kCheckInit);
    if (hooks_compiled() && w->dyn_cells.size() < (job->shared + 3) / 4) {
        w->dyn_cells.resize((job->shared + 3) / 4, SmemCell{0, 0, 0, 0, 0});
        w->dyn_cell0 = w->dyn_cells.data();
    }
    if (!init) {
        // Without initcheck's stamps, poison the static variables now (those
        // this thread's blocks have declared: a later one is poisoned when
        // it registers).
        for (const auto& v : w->ssm_vars) memset((void*)v.p, 0xFF, v.size);
    }
}

void* dyn_smem(Worker* w) { return w->dyn; }

void global_launch_start(Job* job) {
    static const uint64_t kTags = 4095;
    job->tag = job->seq % kTags + 1;
    if (job->tag == 1 && job->seq > 0 && g_race) {
        // The tags wrap: forget the records of earlier launches.
        std::lock_guard<std::mutex> g(g_alloc_mu);
        madvise(g_race, g_bump / 4 * 24, MADV_DONTNEED);
    }
}

bool hooks_compiled() {
#if defined(FMGPU_SIM_CHECKS)
    return true;
#else
    return false;
#endif
}

// ---- the access hooks ------------------------------------------------------

enum Kind { kRead = 0, kWrite = 1, kAtomic = 2 };

// hook_fault: the hooks' SIM_FAULT. The message is made with the hooks
// off (its code is instrumented).
#define hook_fault(w, msg)       \
    do {                         \
        (w)->in_kernel = false;  \
        SIM_FAULT((w), (msg));   \
    } while (0)

SIM_HOOK static const char* kind_name(int k) { return k == kRead ? "read" : k == kWrite ? "write" : "atomic"; }

// Shared-memory access records: stamp (32) | wep (16) | thread (10).
SIM_HOOK static inline uint64_t smem_acc(const Worker* w, unsigned tid) {
    return (uint64_t)w->stamp << 32 | (uint64_t)(w->wep[tid >> 5] & 0xFFFF) << 10 | tid;
}

SIM_HOOK static inline bool smem_conc(const Worker* w, uint64_t x, unsigned tid) {
    if (x >> 32 != w->stamp) return false;  // another barrier interval (or block), or none
    unsigned t = (unsigned)(x & 1023);
    if (t == tid) return false;
    if (t >> 5 == tid >> 5 && ((x >> 10) & 0xFFFF) != (w->wep[tid >> 5] & 0xFFFF)) return false;  // __syncwarp
    return true;
}

// Global-memory access records: launch tag (12) | block (22) | epoch (20) |
// thread (10).
SIM_HOOK static inline uint64_t gmem_acc(const Worker* w, unsigned tid) {
    return w->job->tag << 52 | (uint64_t)(w->block_linear & 0x3FFFFF) << 30 | (uint64_t)(w->epoch & 0xFFFFF) << 10 |
           tid;
}

static const uint64_t kSameThread = ~((uint64_t)0xFFFFF << 10);  // tag, block, thread

// The blocks whose fences the global racecheck tells apart (the block
// field of a record).
static const long kReleasedSlots = 1L << 22;

// fence_ordered: whether record x, of another block of the launch, is
// ordered before the current block's accesses by __threadfence, as in the
// last-block pattern of common.cuh's last_block_of (partials, barrier,
// fence, count; the last block's count, fence, then the partials): x's
// block fenced after x, in a later barrier interval of its own (accesses
// before the barrier that precedes the fence), and the current block made
// a global atomic after that fence ran (the count that sees it), then a
// fence of its own. The fences and atomics run in an order a GPU could
// have; which atomic saw which is not followed. A block that fences twice
// is known by its latest fence (kernels fence once before they count);
// above kReleasedSlots blocks, block numbers in the records wrap, and a
// launch that fenced reports no race between blocks.
SIM_HOOK __attribute__((noinline)) static bool fence_ordered(const Worker* w, uint64_t x) {
    const Job* job = w->job;
    std::atomic<uint64_t>* rel = job->released.load(std::memory_order_acquire);
    if (!rel || w->acquired == 0) return false;
    if (job->nblocks > kReleasedSlots) return true;
    uint64_t r = rel[(x >> 30) & 0x3FFFFF].load(std::memory_order_relaxed);
    return r != 0 && ((x >> 10) & 0xFFFFF) < (r & 0xFFFFF) && (r >> 20) <= w->acquired;
}

SIM_HOOK static inline bool gmem_conc(const Worker* w, uint64_t x, uint64_t me) {
    if (x == 0 || (x >> 52) != (me >> 52)) return false;            // another launch, or none
    if (((x >> 30) & 0x3FFFFF) != ((me >> 30) & 0x3FFFFF))
        return !fence_ordered(w, x);                                 // another block
    if ((x & 1023) == (me & 1023)) return false;                     // the same thread
    return ((x >> 10) & 0xFFFFF) == ((me >> 10) & 0xFFFFF);          // same barrier interval
}

// race_fault reports a race at address x of global (or shared) memory
// between the current thread's access and record other.
[[noreturn]] static void race_fault(Worker* w, uintptr_t x, bool global, int kind, int okind, uint64_t other) {
    w->in_kernel = false;
    const Job* job = w->job;
    unsigned tid = w->cur->linear, otid = (unsigned)(other & 1023);
    long oblock = global ? (long)((other >> 30) & 0x3FFFFF) : w->block_linear;
    std::string msg;
    {
        std::string where = global ? "global memory: " + describe_global(job, x) : describe_shared(w, x);
        std::string who = thread_name(job, otid), when = "in the same barrier interval";
        if (oblock != w->block_linear) {
            who += " of " + block_name(job, oblock);
            when = "(blocks are unordered)";
        }
        msg = fmt("racecheck: %s: %s by %s races with a %s by %s %s", where.c_str(), kind_name(kind),
                  thread_name(job, tid).c_str(), kind_name(okind), who.c_str(), when.c_str());
    }
    fiber_fault(w, std::move(msg));
}

[[noreturn]] SIM_HOOK __attribute__((noinline)) static void global_fault(Worker* w, uintptr_t a, size_t n, int kind) {
    unsigned tid = w->cur->linear;
    if (a + n - g_lo > g_size)
        hook_fault(w, fmt("memcheck: %s: %zu-byte %s past the end of the device memory arena",
                          thread_name(w->job, tid).c_str(), n, kind_name(kind)));
    for (uintptr_t x = a; x < a + n; x = (x | 3) + 1) {
        uint8_t v = g_valid[granule(x)];
        if (v == 0 || v == kFreed || umin(a + n, (x | 3) + 1) - (x & ~(uintptr_t)3) > v) {
            uintptr_t bad = v == 0 || v == kFreed ? x : (x & ~(uintptr_t)3) + v;
            hook_fault(w, fmt("memcheck: %s: %zu-byte %s of global memory: %s", thread_name(w->job, tid).c_str(), n,
                              kind_name(kind), describe_global(w->job, bad).c_str()));
        }
    }
    abort();  // not reached: the caller saw an invalid byte
}

// global_race updates the record of one word of global memory and returns
// an access it races with (0: none). The records are relaxed: a race
// between two blocks running at the very same moment on two OS threads can
// go unseen; a report is never false.
SIM_HOOK static inline uint64_t global_race(const Worker* w, uint64_t* s, uint64_t me, int kind, int* okind) {
    if (kind == kRead) {
        *okind = kWrite;
        uint64_t r = __atomic_load_n(&s[1], __ATOMIC_RELAXED);
        if (r != me) {
            if ((r & kSameThread) != (me & kSameThread)) __atomic_store_n(&s[2], r, __ATOMIC_RELAXED);
            __atomic_store_n(&s[1], me, __ATOMIC_RELAXED);
        }
        uint64_t wv = __atomic_load_n(&s[0], __ATOMIC_RELAXED);
        return gmem_conc(w, wv, me) ? wv : 0;
    }
    uint64_t old = __atomic_load_n(&s[0], __ATOMIC_RELAXED);
    for (;;) {
        if (gmem_conc(w, old, me)) {
            *okind = kWrite;
            return old;
        }
        if (old == me || __atomic_compare_exchange_n(&s[0], &old, me, false, __ATOMIC_RELAXED, __ATOMIC_RELAXED)) break;
    }
    *okind = kRead;
    uint64_t r = __atomic_load_n(&s[1], __ATOMIC_RELAXED);
    if (gmem_conc(w, r, me)) return r;
    r = __atomic_load_n(&s[2], __ATOMIC_RELAXED);
    return gmem_conc(w, r, me) ? r : 0;
}

SIM_HOOK __attribute__((noinline)) static void global_access(Worker* w, uintptr_t a, size_t n, int kind, bool sized) {
    if (sized && (a & (n - 1)) != 0)
        hook_fault(w, fmt("memcheck: %s: misaligned %zu-byte %s of global memory: %s",
                          thread_name(w->job, w->cur->linear).c_str(), n, kind_name(kind),
                          describe_global(w->job, a).c_str()));
    size_t g0 = granule(a), g1 = granule(a + n - 1);
    if (a + n - g_lo > g_size) global_fault(w, a, n, kind);
    if (g0 == g1) {
        uint8_t v = g_valid[g0];
        if (v > 4 || (a & 3) + n > v) global_fault(w, a, n, kind);  // v = 0 or kFreed fail too
    } else {
        for (size_t g = g0; g <= g1; g++) {
            uint8_t v = g_valid[g];
            size_t end = g == g1 ? ((a + n - 1) & 3) + 1 : 4;
            if (v > 4 || end > v) global_fault(w, a, n, kind);
        }
    }
    if (kind == kAtomic || !w->global_race) return;
    unsigned tid = w->cur->linear;
    uint64_t me = gmem_acc(w, tid);
    for (size_t g = g0; g <= g1; g++) {
        int okind;
        uint64_t other = global_race(w, g_race + 3 * g, me, kind, &okind);
        if (other)
            race_fault(w, g_lo + 4 * g, true, kind, okind, other);
    }
}

[[noreturn]] SIM_HOOK __attribute__((noinline)) static void shared_fault(Worker* w, const char* what, uintptr_t a,
                                                                          size_t n, int kind) {
    hook_fault(w, fmt("%s: %s: %zu-byte %s of %s%s", what, thread_name(w->job, w->cur->linear).c_str(), n,
                      kind_name(kind), describe_shared(w, a).c_str(),
                      what[0] == 'i' ? ", which no thread of the block has written" : ""));
}

// shared_access checks an access to shared memory; cells are the shadow of
// the bytes starting at base.
SIM_HOOK static inline void shared_access(Worker* w, uintptr_t a, size_t n, int kind, bool sized, SmemCell* cells,
                                          uintptr_t base) {
    if (sized && (a & (n - 1)) != 0) shared_fault(w, "memcheck: misaligned", a, n, kind);
    unsigned tid = w->cur->linear;
    int checks = w->job->checks;
    bool race = (checks & kCheckRace) && kind != kAtomic, init = (checks & kCheckInit) && kind != kWrite;
    uint64_t me = smem_acc(w, tid);
    for (uintptr_t x = a; x < a + n; x = (x | 3) + 1) {
        SmemCell& c = cells[(x - base) >> 2];
        if (c.init_mask & (kCellIgnore | kCellGap)) {
            if (c.init_mask & kCellIgnore) continue;
            shared_fault(w, "memcheck", x, n, kind);
        }
        uint32_t bytes = ((1u << (umin(a + n, (x | 3) + 1) - x)) - 1) << (x & 3);
        if (init && (c.init_stamp < w->block_stamp || (c.init_mask & bytes) != bytes)) shared_fault(w, "initcheck", x, n, kind);
        if (race) {
            uint64_t other = 0;
            int okind = kWrite;
            if (smem_conc(w, c.w, tid)) {
                other = c.w;
            } else if (kind == kRead) {
                if ((c.r & 1023) != tid || c.r >> 32 != w->stamp) c.r2 = c.r;
                c.r = me;
            } else {
                okind = kRead;
                if (smem_conc(w, c.r, tid))
                    other = c.r;
                else if (smem_conc(w, c.r2, tid))
                    other = c.r2;
                c.w = me;
            }
            if (other) race_fault(w, x, false, kind, okind, other);
        }
        if (kind != kRead) {
            if (c.init_stamp < w->block_stamp) c.init_mask = 0;
            c.init_stamp = w->stamp;
            c.init_mask |= bytes;
        }
    }
}

// on_access is every hook's fast path: most accesses are to the fibers'
// stacks or the harness's own memory, or made outside kernels; the checks
// are out of line.
SIM_HOOK __attribute__((noinline)) static void dyn_access(Worker* w, uintptr_t a, size_t n, int kind, bool sized) {
    if (a < (uintptr_t)w->dyn || a + n > (uintptr_t)w->dyn + w->dyn_size)
        hook_fault(w, fmt("memcheck: %s: %zu-byte %s of %s: out of bounds", thread_name(w->job, w->cur->linear).c_str(),
                          n, kind_name(kind), describe_shared(w, a).c_str()));
    shared_access(w, a, n, kind, sized, w->dyn_cell0, (uintptr_t)w->dyn);
}

SIM_HOOK __attribute__((noinline)) static void ssm_access(Worker* w, uintptr_t a, size_t n, int kind, bool sized) {
    shared_access(w, a, n, kind, sized, w->ssm_cell0, w->ssm_lo);
}

SIM_HOOK static inline void on_access(const volatile void* p, size_t n, int kind, bool sized) {
    Worker* w = tls_worker;
    if (!w || !w->in_kernel) return;
    uintptr_t a = (uintptr_t)p;
    if (a - g_lo < g_size) return global_access(w, a, n, kind, sized);
    if (a - (uintptr_t)w->dyn_map < kDynWindow + 2 * g_page) return dyn_access(w, a, n, kind, sized);
    if (a - w->ssm_lo < w->ssm_size) return ssm_access(w, a, n, kind, sized);
}

}  // namespace sim

using namespace sim;

extern "C" SIM_HOOK void sim_shared_var(void* p, size_t size, const char* fn, const char* name) {
    Worker* w = tls_worker;
    uintptr_t* seen = &w->ssm_seen[((uintptr_t)p >> 4) % Worker::kSeen];
    if (*seen == (uintptr_t)p) return;  // registered: every thread of every block passes here
    *seen = (uintptr_t)p;
    bool on = w->in_kernel;
    w->in_kernel = false;
    register_shared(w, (uintptr_t)p, size, fn, name);
    w->in_kernel = on;
}

// __threadfence: a fence, and for the global racecheck a release of the
// block's accesses before it and an acquire of the fences its atomics came
// after (fence_ordered).
extern "C" SIM_HOOK void sim_threadfence(void) {
    __atomic_thread_fence(__ATOMIC_SEQ_CST);
    Worker* w = tls_worker;
    if (!w || !w->in_kernel || !w->global_race) return;
    Job* job = w->job;
    std::atomic<uint64_t>* rel = job->released.load(std::memory_order_acquire);
    if (!rel) {
        w->in_kernel = false;
        {
            std::lock_guard<std::mutex> g(job->released_mu);
            rel = job->released.load(std::memory_order_relaxed);
            if (!rel) {
                rel = new std::atomic<uint64_t>[std::min(job->nblocks, kReleasedSlots)]();
                job->released.store(rel, std::memory_order_release);
            }
        }
        w->in_kernel = true;
    }
    uint64_t t = job->fence_clock.fetch_add(1) + 1;
    rel[w->block_linear & 0x3FFFFF].store(t << 20 | (w->epoch & 0xFFFFF), std::memory_order_release);
    w->acquired = w->seen;
}

// AtomicHook checks an atomic access before it and, after it (its
// destructor), notes for fence_ordered the fences that ran before an
// atomic of global memory.
struct AtomicHook {
    const volatile void* a;
    SIM_HOOK AtomicHook(const volatile void* p, size_t n) : a(p) { on_access(p, n, kAtomic, true); }
    SIM_HOOK ~AtomicHook() {
        Worker* w = tls_worker;
        if (w && w->in_kernel && (uintptr_t)a - g_lo < g_size) w->seen = w->job->fence_clock.load();
    }
};

extern "C" void sim_misaligned(const void* p, unsigned n) {
    Worker* w = tls_worker;
    uintptr_t a = (uintptr_t)p;
    w->in_kernel = false;
    std::string msg;
    {
        std::string where = fmt("0x%lx", (unsigned long)a);
        if (g_arena_ok && a - g_lo < g_size)
            where = "global memory: " + describe_global(w->job, a);
        else if (a - (uintptr_t)w->dyn_map < kDynWindow + 2 * page_size() || (a - w->ssm_lo < w->ssm_size))
            where = describe_shared(w, a);
        msg = fmt("memcheck: %s: misaligned %u-byte vector access to %s", thread_name(w->job, w->cur->linear).c_str(), n,
                  where.c_str());
    }
    fiber_fault(w, std::move(msg));
}

// The entry points GCC's -fsanitize=thread instrumentation calls (their
// types as GCC declares them); no ThreadSanitizer runtime is linked.
#if defined(FMGPU_SIM_CHECKS)
extern "C" {
SIM_HOOK void __tsan_init(void) {}
SIM_HOOK void __tsan_func_entry(void*) {}
SIM_HOOK void __tsan_func_exit(void) {}
SIM_HOOK void __tsan_vptr_update(void**, void*) {}
SIM_HOOK void __tsan_vptr_read(void**) {}
SIM_HOOK void __tsan_read_range(void* a, unsigned long n) { on_access(a, n, kRead, false); }
SIM_HOOK void __tsan_write_range(void* a, unsigned long n) { on_access(a, n, kWrite, false); }
#define SIM_TSAN_RW(n)                                                                          \
    SIM_HOOK void __tsan_read##n(void* a) { on_access(a, n, kRead, true); }                     \
    SIM_HOOK void __tsan_write##n(void* a) { on_access(a, n, kWrite, true); }                   \
    SIM_HOOK void __tsan_unaligned_read##n(void* a) { on_access(a, n, kRead, true); }           \
    SIM_HOOK void __tsan_unaligned_write##n(void* a) { on_access(a, n, kWrite, true); }         \
    SIM_HOOK void __tsan_volatile_read##n(void* a) { on_access(a, n, kRead, true); }            \
    SIM_HOOK void __tsan_volatile_write##n(void* a) { on_access(a, n, kWrite, true); }          \
    SIM_HOOK void __tsan_unaligned_volatile_read##n(void* a) { on_access(a, n, kRead, true); }  \
    SIM_HOOK void __tsan_unaligned_volatile_write##n(void* a) { on_access(a, n, kWrite, true); }
SIM_TSAN_RW(1)
SIM_TSAN_RW(2)
SIM_TSAN_RW(4)
SIM_TSAN_RW(8)
SIM_TSAN_RW(16)

#define SIM_TSAN_ATOMIC(N, T)                                                                              \
    SIM_HOOK T __tsan_atomic##N##_load(const volatile void* a, int) {                                      \
        AtomicHook hook(a, sizeof(T));                                                                     \
        return __atomic_load_n((const volatile T*)a, __ATOMIC_SEQ_CST);                                    \
    }                                                                                                      \
    SIM_HOOK void __tsan_atomic##N##_store(volatile void* a, T v, int) {                                   \
        AtomicHook hook(a, sizeof(T));                                                                     \
        __atomic_store_n((volatile T*)a, v, __ATOMIC_SEQ_CST);                                             \
    }                                                                                                      \
    SIM_HOOK T __tsan_atomic##N##_exchange(volatile void* a, T v, int) {                                   \
        AtomicHook hook(a, sizeof(T));                                                                     \
        return __atomic_exchange_n((volatile T*)a, v, __ATOMIC_SEQ_CST);                                   \
    }                                                                                                      \
    SIM_HOOK T __tsan_atomic##N##_fetch_add(volatile void* a, T v, int) {                                  \
        AtomicHook hook(a, sizeof(T));                                                                     \
        return __atomic_fetch_add((volatile T*)a, v, __ATOMIC_SEQ_CST);                                    \
    }                                                                                                      \
    SIM_HOOK T __tsan_atomic##N##_fetch_sub(volatile void* a, T v, int) {                                  \
        AtomicHook hook(a, sizeof(T));                                                                     \
        return __atomic_fetch_sub((volatile T*)a, v, __ATOMIC_SEQ_CST);                                    \
    }                                                                                                      \
    SIM_HOOK T __tsan_atomic##N##_fetch_and(volatile void* a, T v, int) {                                  \
        AtomicHook hook(a, sizeof(T));                                                                     \
        return __atomic_fetch_and((volatile T*)a, v, __ATOMIC_SEQ_CST);                                    \
    }                                                                                                      \
    SIM_HOOK T __tsan_atomic##N##_fetch_or(volatile void* a, T v, int) {                                   \
        AtomicHook hook(a, sizeof(T));                                                                     \
        return __atomic_fetch_or((volatile T*)a, v, __ATOMIC_SEQ_CST);                                     \
    }                                                                                                      \
    SIM_HOOK T __tsan_atomic##N##_fetch_xor(volatile void* a, T v, int) {                                  \
        AtomicHook hook(a, sizeof(T));                                                                     \
        return __atomic_fetch_xor((volatile T*)a, v, __ATOMIC_SEQ_CST);                                    \
    }                                                                                                      \
    SIM_HOOK T __tsan_atomic##N##_fetch_nand(volatile void* a, T v, int) {                                 \
        AtomicHook hook(a, sizeof(T));                                                                     \
        return __atomic_fetch_nand((volatile T*)a, v, __ATOMIC_SEQ_CST);                                   \
    }                                                                                                      \
    SIM_HOOK bool __tsan_atomic##N##_compare_exchange_strong(volatile void* a, void* c, T v, int, int) {   \
        AtomicHook hook(a, sizeof(T));                                                                     \
        return __atomic_compare_exchange_n((volatile T*)a, (T*)c, v, false, __ATOMIC_SEQ_CST,              \
                                           __ATOMIC_SEQ_CST);                                              \
    }                                                                                                      \
    SIM_HOOK bool __tsan_atomic##N##_compare_exchange_weak(volatile void* a, void* c, T v, int, int) {     \
        AtomicHook hook(a, sizeof(T));                                                                     \
        return __atomic_compare_exchange_n((volatile T*)a, (T*)c, v, false, __ATOMIC_SEQ_CST,              \
                                           __ATOMIC_SEQ_CST);                                              \
    }                                                                                                      \
    SIM_HOOK T __tsan_atomic##N##_compare_exchange_val(volatile void* a, T c, T v, int, int) {             \
        AtomicHook hook(a, sizeof(T));                                                                     \
        __atomic_compare_exchange_n((volatile T*)a, &c, v, false, __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST);     \
        return c;                                                                                          \
    }
SIM_TSAN_ATOMIC(8, unsigned char)
SIM_TSAN_ATOMIC(16, unsigned short)
SIM_TSAN_ATOMIC(32, unsigned int)
SIM_TSAN_ATOMIC(64, unsigned long)

SIM_HOOK void __tsan_atomic_thread_fence(int) { __atomic_thread_fence(__ATOMIC_SEQ_CST); }
SIM_HOOK void __tsan_atomic_signal_fence(int) { __atomic_signal_fence(__ATOMIC_SEQ_CST); }
}  // extern "C"
#endif

extern "C" {

uint64_t sim_alloc(size_t bytes) {
    if (bytes == 0) return 0;
    std::call_once(g_arena_once, arena_init);
    if (!g_arena_ok) return 0;
    size_t pg = page_size();
#if defined(FMGPU_SIM_ASAN)
    bool checked = true;
#else
    bool checked = hooks_compiled();
#endif
    // With the access hooks (or AddressSanitizer) the start is 256-byte
    // aligned, as cuMemAlloc's, and the valid shadow (or AddressSanitizer's)
    // bounds the allocation to the byte; without them it ends exactly at
    // the guard page, which bounds it then.
    size_t body = checked ? round_up(bytes, 256) : bytes;
    size_t data = round_up(body, pg), len = data + 2 * pg;
    uintptr_t r;
    {
        std::lock_guard<std::mutex> g(g_alloc_mu);
        r = region_take(len);
        while (r == 0 && !g_quarantine.empty()) {
            Alloc q = g_quarantine.front();
            g_quarantine.pop_front();
            g_quarantine_bytes -= q.region_len;
            region_give(q.region, q.region_len);
            r = region_take(len);
        }
        if (r == 0) return 0;
        if (mprotect((void*)(r + pg), data, PROT_READ | PROT_WRITE) != 0) {
            region_give(r, len);
            return 0;
        }
        shadow_rw(r, len);
        uintptr_t p = r + pg + data - body;
        memset(g_valid + granule(r), 0, len / 4);
        memset(g_valid + granule(p), 4, bytes / 4);
        if (bytes % 4) g_valid[granule(p) + bytes / 4] = (uint8_t)(bytes % 4);
        SIM_POISON(r + pg, data);
        SIM_UNPOISON(p, bytes);
        memset((void*)p, 0xFF, bytes);  // NaN: uninitialised reads show
        g_live[p] = Alloc{p, bytes, r, len};
        return (uint64_t)p;
    }
}

void sim_free(uint64_t p) {
    std::lock_guard<std::mutex> g(g_alloc_mu);
    auto it = g_live.find((uintptr_t)p);
    if (it == g_live.end()) return;
    Alloc a = it->second;
    g_live.erase(it);
    size_t pg = page_size();
    uintptr_t data = a.region + pg;
    size_t dlen = a.region_len - 2 * pg;
    SIM_POISON(data, dlen);
    madvise((void*)data, dlen, MADV_DONTNEED);
    mprotect((void*)data, dlen, PROT_NONE);  // a late access faults even unchecked
    memset(g_valid + granule(a.p), kFreed, round_up(a.bytes, 4) / 4);
    // The race shadow keeps its records: their launch tags are old.
    g_quarantine.push_back(a);
    g_quarantine_bytes += a.region_len;
    while (g_quarantine_bytes > kQuarantineBytes) {
        Alloc q = g_quarantine.front();
        g_quarantine.pop_front();
        g_quarantine_bytes -= q.region_len;
        region_give(q.region, q.region_len);
    }
}

void sim_htod(uint64_t dst, const void* src, size_t bytes) {
    check_host(dst, bytes, "copy to the device");
    memcpy((void*)(uintptr_t)dst, src, bytes);
}

void sim_dtoh(void* dst, uint64_t src, size_t bytes) {
    check_host(src, bytes, "copy from the device");
    memcpy(dst, (const void*)(uintptr_t)src, bytes);
}

void sim_dtod(uint64_t dst, uint64_t src, size_t bytes) {
    check_host(src, bytes, "device copy from");
    check_host(dst, bytes, "device copy to");
    memmove((void*)(uintptr_t)dst, (const void*)(uintptr_t)src, bytes);
}

SIM_HOOK void sim_memset32(uint64_t dst, uint32_t v, size_t n) {
    check_host(dst, 4 * n, "memset");
    uint32_t* p = (uint32_t*)(uintptr_t)dst;
    for (size_t i = 0; i < n; i++) p[i] = v;
}

}  // extern "C"
