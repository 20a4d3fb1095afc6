// Host shim of the kernelsim build: the subset of CUDA C++ that fmgpu's
// kernels use, mapped onto host C++ so that kernels/*.cu compile unchanged
// with g++ and run in the harness of sim_runtime.cc.
//
// Execution model (sim_runtime.cc): each CUDA thread of a block is a host
// fiber with its own stack; a block's fibers run on one OS thread, and up
// to FMGPU_SIM_THREADS OS threads run different blocks in parallel.
//   - threadIdx, blockIdx, blockDim, gridDim are thread_local variables
//     that the scheduler sets before it resumes a fiber;
//   - __syncthreads() parks the fiber until every thread of the block has
//     reached it (reaching it after another thread of the block returned is
//     reported as an error: CUDA leaves that undefined);
//   - warp shuffles and __syncwarp park the fiber until the 32 lanes of its
//     warp arrive, then exchange values through a per-warp buffer;
//   - __shared__ variables are static thread_local: one copy per OS thread,
//     which runs one block at a time, so one copy per block in flight;
//   - dynamic shared memory is a per-OS-thread buffer filled with NaN
//     before each block;
//   - atomics are the compiler's __atomic builtins (blocks on different OS
//     threads really do run concurrently).
// Between barriers the fibers of a block run in an order that changes from
// one phase to the next (FMGPU_SIM_ORDER), so a missing __syncthreads shows
// up as a wrong result instead of passing by luck.
#pragma once

#include <math.h>
#include <stdint.h>
#include <string.h>

struct sim_dim3 {
    unsigned x, y, z;
};
typedef sim_dim3 dim3;
typedef sim_dim3 uint3;

extern thread_local sim_dim3 threadIdx;
extern thread_local sim_dim3 blockIdx;
extern thread_local sim_dim3 blockDim;
extern thread_local sim_dim3 gridDim;
static const int warpSize = 32;

#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __launch_bounds__(...)
#define __shared__ static thread_local
#define __align__(n) __attribute__((aligned(n)))

extern "C" {
void sim_syncthreads(void);
void sim_syncwarp(void);
uint64_t sim_shfl(uint64_t v, int mode, int arg, int width);
void* sim_dynamic_smem(void);
// sim_fault records misuse a GPU would fault on (the launch fails with msg).
void sim_fault(const char* msg);
}

// sim_check_aligned: vector accesses must be aligned as on the GPU, where
// a misaligned one is a launch failure.
static inline void sim_check_aligned(const void* p, unsigned n) {
    if ((uintptr_t)p % n != 0) sim_fault("misaligned vector access to shared or global memory");
}

static inline void __syncthreads(void) { sim_syncthreads(); }
static inline void __syncwarp(unsigned mask = 0xffffffffu) {
    (void)mask;
    sim_syncwarp();
}

#define SIM_SHFL_XOR 0
#define SIM_SHFL_DOWN 1
#define SIM_SHFL_IDX 2

template <typename T>
static inline T sim_shfl_t(T v, int mode, int arg, int width) {
    static_assert(sizeof(T) <= 8, "shuffle of a type wider than 8 bytes");
    uint64_t bits = 0;
    memcpy(&bits, &v, sizeof(T));
    bits = sim_shfl(bits, mode, arg, width);
    T out;
    memcpy(&out, &bits, sizeof(T));
    return out;
}
template <typename T>
static inline T __shfl_xor_sync(unsigned mask, T v, int laneMask, int width = 32) {
    (void)mask;
    return sim_shfl_t(v, SIM_SHFL_XOR, laneMask, width);
}
template <typename T>
static inline T __shfl_down_sync(unsigned mask, T v, unsigned delta, int width = 32) {
    (void)mask;
    return sim_shfl_t(v, SIM_SHFL_DOWN, (int)delta, width);
}
template <typename T>
static inline T __shfl_sync(unsigned mask, T v, int src, int width = 32) {
    (void)mask;
    return sim_shfl_t(v, SIM_SHFL_IDX, src, width);
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
