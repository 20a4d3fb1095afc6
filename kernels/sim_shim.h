// Host shim of the kernelsim build: the subset of CUDA C++ that fmgpu's
// kernels use, mapped onto host C++ so that kernels/*.cu compile unchanged
// with g++ and run in the harness of sim_runtime.cc (static shared
// variables through common.cuh's FM_SHARED).
//
// Execution model (sim_runtime.cc): each CUDA thread of a block is a host
// fiber with its own stack; a block's fibers run on one OS thread, and up
// to FMGPU_SIM_THREADS OS threads run different blocks in parallel.
//   - threadIdx, blockIdx, blockDim, gridDim are thread_local variables
//     that the scheduler sets before it resumes a fiber;
//   - __syncthreads() parks the fiber until every thread of the block has
//     reached it, at the same call site (a barrier reached after another
//     thread returned, or in divergent code, is a launch error: CUDA leaves
//     both undefined);
//   - warp operations (shuffles, votes, __syncwarp) park the fiber until
//     every lane of their mask has arrived at the same operation with the
//     same mask; the scheduler then computes each lane's result (a mask
//     without the calling lane, naming lanes that do not exist or have
//     returned, or lanes meeting at different operations, is an error);
//   - static shared variables (FM_SHARED) are static thread_local: one copy
//     per OS thread, which runs one block at a time, so one copy per block
//     in flight;
//   - dynamic shared memory is a per-OS-thread window with guard pages;
//   - both are poisoned (0xFF: NaN) at every block start;
//   - atomics are the compiler's __atomic builtins (blocks on different OS
//     threads really do run concurrently).
// Between barriers the fibers of a block run in an order that changes from
// one phase to the next (FMGPU_SIM_ORDER), so a missing __syncthreads shows
// up as a wrong result instead of passing by luck; with the access checks
// (sim_memory.cc) it is reported as a race.
#pragma once

#include <math.h>
#include <stdint.h>
#include <string.h>

struct sim_dim3 {
    unsigned x, y, z;
};
typedef sim_dim3 dim3;
typedef sim_dim3 uint3;

// __thread rather than thread_local: no C++ TLS wrapper call per access.
extern __thread sim_dim3 threadIdx;
extern __thread sim_dim3 blockIdx;
extern __thread sim_dim3 blockDim;
extern __thread sim_dim3 gridDim;
static const int warpSize = 32;

#define __global__
#define __device__
#define __host__
#define __forceinline__ inline __attribute__((always_inline))
#define __launch_bounds__(...)
#define __align__(n) __attribute__((aligned(n)))

extern "C" {
void sim_syncthreads_at(const char* file, int line);
void sim_shared_var(void* p, size_t size, const char* fn, const char* name);
uint64_t sim_warp_op(int op, unsigned mask, uint64_t v, int mode, int arg, int width);
void* sim_dynamic_smem(void);
// sim_fault records misuse a GPU would fault on: the thread stops and the
// launch fails with msg.
void sim_fault(const char* msg);
// sim_threadfence: __threadfence, seen by the global racecheck.
void sim_threadfence(void);
}
static inline void __threadfence() { sim_threadfence(); }

// sim_check_aligned: vector accesses must be aligned as on the GPU, where
// a misaligned one is a launch failure (sim_misaligned names the memory).
extern "C" void sim_misaligned(const void* p, unsigned n);
static inline void sim_check_aligned(const void* p, unsigned n) {
    if ((uintptr_t)p % n != 0) sim_misaligned(p, n);
}

// Static shared variables (common.cuh's FM_SHARED): thread_local, so one
// copy per OS thread, which runs one block at a time; each thread passing
// the declaration registers the variable with the harness (poisoning,
// bounds, names in messages), which keeps the first registration.
#define SIM_SHARED(T, name, ...)            \
    static thread_local T name __VA_ARGS__; \
    sim_shared_var((void*)&name, sizeof(name), __func__, #name)

// The call site names the barrier: threads must all reach the same one.
#define __syncthreads() sim_syncthreads_at(__FILE__, __LINE__)

// Operations of sim_warp_op (sim_internal.h's WarpOp).
#define SIM_WARP_SYNC 0
#define SIM_WARP_SHFL 1
#define SIM_WARP_BALLOT 2
#define SIM_WARP_ANY 3
#define SIM_WARP_ALL 4

#define SIM_SHFL_XOR 0
#define SIM_SHFL_DOWN 1
#define SIM_SHFL_IDX 2
#define SIM_SHFL_UP 3

// Warp-wide instructions of the tensor cores (mma.sync, ldmatrix: mma.cuh,
// emulated in sim_mma.h): every lane of a full warp parks with a pointer
// to its own SimWarpCollective; when all 32 have arrived the scheduler
// calls fn once with the 32 lanes' records (lanes[l] is lane l's), which
// computes every lane's result from the others' operands. fn returns 0,
// or nonzero with a message in err (a launch error). It runs on the
// scheduler's stack: it must not use the access checks (no_sanitize_thread).
#define SIM_WARP_MMA 5
#define SIM_WARP_LDMATRIX 6
struct SimWarpCollective {
    int (*fn)(SimWarpCollective* const* lanes, char* err, size_t errlen);
};
#define SIM_NO_CHECKS __attribute__((no_sanitize_thread))

// cp.async (mma.cuh) as the harness emulates it: a copy is queued in the
// issuing thread (sim_cp_async), a commit closes the queued copies into a
// group, and wait_group n hands back the copies of every committed group
// but the n most recent (sim_cp_async_take), which the thread then applies
// itself (sim_mma.h): until then the destination keeps whatever it held,
// so a read before the wait sees stale or poisoned memory, as a GPU may.
struct SimAsyncCopy {
    void* dst;
    const void* src;
    unsigned bytes, src_bytes;
};
#define SIM_MAX_ASYNC_COPIES 128
extern "C" {
void sim_cp_async(void* dst, const void* src, unsigned bytes, unsigned src_bytes);
void sim_cp_async_commit(void);
int sim_cp_async_take(int keep, SimAsyncCopy* out);
}

static inline void __syncwarp(unsigned mask = 0xffffffffu) { sim_warp_op(SIM_WARP_SYNC, mask, 0, 0, 0, 32); }

template <typename T>
static inline T sim_shfl_t(unsigned mask, T v, int mode, int arg, int width) {
    static_assert(sizeof(T) <= 8, "shuffle of a type wider than 8 bytes");
    uint64_t bits = 0;
    memcpy(&bits, &v, sizeof(T));
    bits = sim_warp_op(SIM_WARP_SHFL, mask, bits, mode, arg, width);
    T out;
    memcpy(&out, &bits, sizeof(T));
    return out;
}
template <typename T>
static inline T __shfl_xor_sync(unsigned mask, T v, int laneMask, int width = 32) {
    return sim_shfl_t(mask, v, SIM_SHFL_XOR, laneMask, width);
}
template <typename T>
static inline T __shfl_down_sync(unsigned mask, T v, unsigned delta, int width = 32) {
    return sim_shfl_t(mask, v, SIM_SHFL_DOWN, (int)delta, width);
}
template <typename T>
static inline T __shfl_up_sync(unsigned mask, T v, unsigned delta, int width = 32) {
    return sim_shfl_t(mask, v, SIM_SHFL_UP, (int)delta, width);
}
template <typename T>
static inline T __shfl_sync(unsigned mask, T v, int src, int width = 32) {
    return sim_shfl_t(mask, v, SIM_SHFL_IDX, src, width);
}
static inline unsigned __ballot_sync(unsigned mask, int pred) {
    return (unsigned)sim_warp_op(SIM_WARP_BALLOT, mask, pred != 0, 0, 0, 32);
}
static inline int __any_sync(unsigned mask, int pred) { return (int)sim_warp_op(SIM_WARP_ANY, mask, pred != 0, 0, 0, 32); }
static inline int __all_sync(unsigned mask, int pred) { return (int)sim_warp_op(SIM_WARP_ALL, mask, pred != 0, 0, 0, 32); }

// Vector types. On the GPU a load or store of one is a single 8- or
// 16-byte access that must be aligned to its size; the host compiler may
// split it into scalar accesses, so copying one from or to memory checks
// the alignment itself.
#define SIM_VECTOR_TYPE(T, E, A, ...)                                    \
    struct __align__(A) T {                                             \
        E __VA_ARGS__;                                                  \
        T() = default;                                                  \
        T(const T& o) {                                                 \
            sim_check_aligned(&o, A);                                   \
            memcpy((void*)this, (const void*)&o, sizeof(T));            \
        }                                                               \
        T& operator=(const T& o) {                                      \
            sim_check_aligned(this, A);                                 \
            sim_check_aligned(&o, A);                                   \
            memcpy((void*)this, (const void*)&o, sizeof(T));            \
            return *this;                                               \
        }                                                               \
    }
SIM_VECTOR_TYPE(float2, float, 8, x, y);
SIM_VECTOR_TYPE(float4, float, 16, x, y, z, w);
SIM_VECTOR_TYPE(double2, double, 16, x, y);
#undef SIM_VECTOR_TYPE
static inline float2 make_float2(float x, float y) {
    float2 v;
    v.x = x, v.y = y;
    return v;
}
static inline float4 make_float4(float x, float y, float z, float w) {
    float4 v;
    v.x = x, v.y = y, v.z = z, v.w = w;
    return v;
}
static inline double2 make_double2(double x, double y) {
    double2 v;
    v.x = x, v.y = y;
    return v;
}

// Atomics.
static inline float atomicAdd(float* p, float v) {
    float old, next;
    __atomic_load(p, &old, __ATOMIC_RELAXED);
    do {
        next = old + v;
    } while (!__atomic_compare_exchange(p, &old, &next, false, __ATOMIC_RELAXED, __ATOMIC_RELAXED));
    return old;
}
static inline int atomicAdd(int* p, int v) { return __atomic_fetch_add(p, v, __ATOMIC_RELAXED); }
static inline unsigned atomicAdd(unsigned* p, unsigned v) { return __atomic_fetch_add(p, v, __ATOMIC_RELAXED); }
static inline int atomicCAS(int* p, int cmp, int v) {
    __atomic_compare_exchange_n(p, &cmp, v, false, __ATOMIC_RELAXED, __ATOMIC_RELAXED);
    return cmp;
}
static inline unsigned atomicCAS(unsigned* p, unsigned cmp, unsigned v) {
    __atomic_compare_exchange_n(p, &cmp, v, false, __ATOMIC_RELAXED, __ATOMIC_RELAXED);
    return cmp;
}

// Integer and float intrinsics.
static inline unsigned __umulhi(unsigned a, unsigned b) { return (unsigned)(((uint64_t)a * b) >> 32); }
static inline float __int_as_float(int v) {
    float f;
    memcpy(&f, &v, 4);
    return f;
}
static inline int __float_as_int(float v) {
    int i;
    memcpy(&i, &v, 4);
    return i;
}
static inline float __uint_as_float(unsigned v) {
    float f;
    memcpy(&f, &v, 4);
    return f;
}
static inline unsigned __float_as_uint(float v) {
    unsigned u;
    memcpy(&u, &v, 4);
    return u;
}
static inline float rsqrtf(float v) { return (float)(1.0 / sqrt((double)v)); }

// sincospif(x): sin(pi x) and cos(pi x). The host evaluates it in double and
// rounds: at least as accurate as CUDA's (1 ulp), so the harness and the
// GPU agree to a few ulps.
static inline void sincospif(float x, float* s, float* c) {
    double sd, cd;
    sincos(M_PI * (double)x, &sd, &cd);
    *s = (float)sd;
    *c = (float)cd;
}
static inline void sincospi(double x, double* s, double* c) {
    // Reduce first so that sin(pi n) is exactly 0, as CUDA's sincospi gives.
    double r = remainder(x, 2.0);
    sincos(M_PI * r, s, c);
}
