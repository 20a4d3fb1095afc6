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
//     (the Go side checks they fit); scalars arrive one per 8-byte slot;
//   - float arithmetic that the CPU backend does in float32 is written with
//     fm_mul/fm_add (no FMA contraction), so that elementwise results are
//     bit-identical to gpu/cpu.go; reductions accumulate in double.
#pragma once

#ifdef __CUDACC__
#include <stdint.h>
#define FM_DEVICE __device__ __forceinline__
// A static shared variable: FM_SHARED(float, tile, [32][33]) declares
// __shared__ float tile[32][33] (the host build registers it with the
// kernelsim harness, which poisons and checks it; kernels_files_test.go
// requires every static shared variable to be declared so).
#define FM_SHARED(T, name, ...) __shared__ T name __VA_ARGS__
// Dynamic shared memory of a launch (its size is the launch's shared bytes).
#define FM_DYNAMIC_SMEM(T, name) extern __shared__ T name[]
#define FM_UNROLL _Pragma("unroll")
FM_DEVICE float fm_mul(float a, float b) { return __fmul_rn(a, b); }
FM_DEVICE float fm_add(float a, float b) { return __fadd_rn(a, b); }
FM_DEVICE float fm_sub(float a, float b) { return __fsub_rn(a, b); }
#else
#include "sim_shim.h"
// Inlined and unrolled as nvcc does: arrays indexed by unrolled loops
// (accumulators, staging registers) stay in host registers instead of
// memory every access of which the kernelsim checks would see.
#define FM_DEVICE static inline __attribute__((always_inline))
#define FM_SHARED(T, name, ...) SIM_SHARED(T, name, __VA_ARGS__)
#define FM_DYNAMIC_SMEM(T, name) T* name = (T*)sim_dynamic_smem()
#define FM_UNROLL _Pragma("GCC unroll 16")
static inline float fm_mul(float a, float b) { return a * b; }
static inline float fm_add(float a, float b) { return a + b; }
static inline float fm_sub(float a, float b) { return a - b; }
#endif

// Activation codes: gpu.Act (gpu/backend.go) is part of this ABI.
#define FM_ACT_NONE 0
#define FM_ACT_SILU 1

FM_DEVICE int imin(int a, int b) { return a < b ? a : b; }
FM_DEVICE int imax(int a, int b) { return a > b ? a : b; }
FM_DEVICE float fabs32(float v) { return v < 0.0f ? -v : v; }
FM_DEVICE float fmax32(float a, float b) { return a > b ? a : b; }

// Global linear thread id and grid stride of a 1-D launch.
FM_DEVICE int global_tid() { return (int)(blockIdx.x * blockDim.x + threadIdx.x); }
FM_DEVICE int grid_stride() { return (int)(gridDim.x * blockDim.x); }

// silu(z) = z sigmoid(z), as gpu/cpu.go computes it in float32.
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
