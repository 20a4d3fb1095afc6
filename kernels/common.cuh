// Shared definitions of fmgpu's kernels: one header that every kernels/*.cu
// includes first. Under nvcc it maps the few helpers below onto CUDA; in the
// kernelsim build (no __CUDACC__) sim_shim.h supplies threadIdx, blockIdx,
// __syncthreads, shared memory, warp shuffles and atomics on the host, so that
// the same sources compile as C++ and run in the host harness.
//
// Conventions (kernels/README.md):
//   - every kernel is extern "C" __global__, named <op>_<direction>_kernel,
//     declares __launch_bounds__ and opens with its math, shapes and launch
//     preconditions;
//   - buffers are float32 row-major; element counts and sizes are int
//     (a device buffer holds fewer than 2^31 elements: gpu/device.go);
//     scalars arrive one per 8-byte slot;
//   - a loop counter that steps past a count (a grid-stride loop, a block
//     striding over a row or an image) is 64-bit: near 2^31 elements the
//     step past the end would overflow an int (an unsigned counter also
//     holds count + step when the step is a block's or a warp's width).
//     Inside the loop the index is below the count and may be narrowed to
//     an int for arithmetic;
//   - float arithmetic that the CPU backend does in float32 is written with
//     fm_mul/fm_add (no FMA contraction), so that elementwise results are
//     bit-identical to the CPU backend (gpu/cpu_*.go); reductions
//     accumulate in double.
#pragma once

#ifdef __CUDACC__
#include <stdint.h>
#define FM_DEVICE __device__ __forceinline__
// A static shared variable: FM_SHARED(float, tile, [32][33]) declares
// __shared__ float tile[32][33] (the host build registers it with the
// kernelsim harness, which poisons and checks it; kernels_files_test.go
// requires every static shared variable to be declared so).
#define FM_SHARED(T, name, ...) __shared__ T name __VA_ARGS__
// Dynamic shared memory of a launch (its size is the launch's shared bytes),
// 16-byte aligned (cp.async and float4 accesses) after any static shared
// variables of the kernel.
#define FM_DYNAMIC_SMEM(T, name) extern __shared__ __align__(16) T name[]
#define FM_UNROLL _Pragma("unroll")
#define FM_NO_UNROLL _Pragma("unroll 1")
FM_DEVICE float fm_mul(float a, float b) { return __fmul_rn(a, b); }
FM_DEVICE float fm_add(float a, float b) { return __fadd_rn(a, b); }
FM_DEVICE float fm_sub(float a, float b) { return __fsub_rn(a, b); }
FM_DEVICE float fm_rcp(float a) { return __frcp_rn(a); }
#else
#include "sim_shim.h"
// Inlined and unrolled as nvcc does: arrays indexed by unrolled loops
// (accumulators, staging registers) stay in host registers instead of
// memory every access of which the kernelsim checks would see.
#define FM_DEVICE static inline __attribute__((always_inline))
#define FM_SHARED(T, name, ...) SIM_SHARED(T, name, __VA_ARGS__)
#define FM_DYNAMIC_SMEM(T, name) T* name = (T*)sim_dynamic_smem()
#define FM_UNROLL _Pragma("GCC unroll 16")
#define FM_NO_UNROLL _Pragma("GCC unroll 1")
static inline float fm_mul(float a, float b) { return a * b; }
static inline float fm_add(float a, float b) { return a + b; }
static inline float fm_sub(float a, float b) { return a - b; }
static inline float fm_rcp(float a) { return 1.0f / a; }
#endif

// Activation codes: gpu.Act (gpu/dense.go) is part of this ABI.
#define FM_ACT_NONE 0
#define FM_ACT_SILU 1

FM_DEVICE int imin(int a, int b) { return a < b ? a : b; }
FM_DEVICE int imax(int a, int b) { return a > b ? a : b; }
FM_DEVICE float fabs32(float v) { return v < 0.0f ? -v : v; }
FM_DEVICE float fmax32(float a, float b) { return a > b ? a : b; }

// Global linear thread id and grid stride of a 1-D launch, for the 64-bit
// counters of grid-stride loops.
FM_DEVICE long long global_tid() { return (long long)blockIdx.x * blockDim.x + threadIdx.x; }
FM_DEVICE long long grid_stride() { return (long long)gridDim.x * blockDim.x; }

// Streaming kernels whose output may alias an input cannot have a thread's
// next loads issued before its store (the compiler must assume the store
// may change them): each thread handles FM_VEC elements per pass of a
// grid-stride loop, e, e + stride, ..., loading all of them before it
// stores any, so FM_VEC loads are in flight instead of one. (Exact aliasing
// only: each element is read and written by the same thread.) The grid
// for n elements is then about n / (256 FM_VEC) blocks (gpu.blocksVec).
#define FM_VEC 4

// silu(z) = z sigmoid(z), as the CPU backend computes it in float32.
FM_DEVICE float silu_f(float z) { return z / (1.0f + expf(-z)); }

// d/dz silu(z) = s (1 + z (1 - s)), s = sigmoid(z).
FM_DEVICE float silu_grad_f(float z) {
    float s = 1.0f / (1.0f + expf(-z));
    return fm_mul(s, fm_add(1.0f, fm_mul(z, fm_sub(1.0f, s))));
}

// warp_sum_d: butterfly sum over the 32 lanes of a warp; every lane gets
// the total, and the order of additions is fixed (deterministic).
// Precondition: all 32 lanes of the warp call it.
FM_DEVICE double warp_sum_d(double v) {
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}

// block_sum_d: the sum of v over a 1-D block, returned in thread 0 (other
// threads get partial values). Preconditions: blockDim.x is a multiple of
// 32 and at most 1024, every thread calls it, at most once per kernel.
FM_DEVICE double block_sum_d(double v) {
    FM_SHARED(double, warp_part, [32]);
    int lane = (int)threadIdx.x & 31, w = (int)threadIdx.x >> 5;
    v = warp_sum_d(v);
    if (lane == 0) warp_part[w] = v;
    __syncthreads();
    int nw = (int)blockDim.x >> 5;
    if (w == 0) {
        v = lane < nw ? warp_part[lane] : 0.0;
        v = warp_sum_d(v);
    }
    return v;
}

// One-pass deterministic reductions. A reduction kernel writes one double
// partial per block, then the last block to finish adds the partials in a
// fixed order (the same tree whatever block finishes last), so no second
// launch is needed and the sum is the same bits on every run. A block
// learns that it is last from an unsigned completion counter in device
// memory (an integer atomic: no float atomics), which the last block sets
// back to 0 for the next launch; every launch of the stream may use the
// same counters because launches of a stream do not overlap.
FM_DEVICE void fm_fence() { __threadfence(); }
#ifdef __CUDACC__
// fm_ldcg loads at the L2 (bypassing a possibly stale L1): another block's
// partials.
template <typename T>
FM_DEVICE T fm_ldcg(const T* p) {
    return __ldcg(p);
}
#else
template <typename T>
static inline T fm_ldcg(const T* p) {
    return *(const volatile T*)p;
}
#endif

// last_block_of: called by every thread of a block after it wrote its
// partials; true in every thread of the block that finishes last of the
// total blocks counting on *counter (the counter is then reset to 0).
// Preconditions: every thread of the block calls it (it contains
// __syncthreads), once per counter per launch.
FM_DEVICE bool last_block_of(unsigned* counter, unsigned total) {
    FM_SHARED(bool, last);
    __syncthreads();
    if (threadIdx.x == 0 && threadIdx.y == 0 && threadIdx.z == 0) {
        fm_fence();  // this block's partials before its count
        unsigned done = atomicAdd(counter, 1u);
        last = done == total - 1;
        if (last) *counter = 0;
    }
    __syncthreads();
    if (last) fm_fence();  // the others' partials after their counts
    return last;
}

// final_sum_d: the sum of count double partials, in thread 0 of a 1-D
// block, in the order of sum_final_reduce_kernel (threads stride over the
// partials, then block_sum_d); used by the last block of a one-pass
// reduction. Preconditions: as block_sum_d, and a __syncthreads since any
// earlier block_sum_d of the kernel.
FM_DEVICE double final_sum_d(const double* partial, int count) {
    double acc = 0.0;
    for (int i = (int)threadIdx.x; i < count; i += (int)blockDim.x) acc += fm_ldcg(partial + i);
    return block_sum_d(acc);
}
