// Kernels that test the kernelsim harness itself (kernels_test.go): they
// are compiled into the harness only, never into fmgpu.fatbin, and their
// names start with simtest_.
#pragma once
#include "common.cuh"

// Reverses each block's slice through shared memory: correct only with
// the barrier between the write and the read.
extern "C" __global__ void __launch_bounds__(1024) simtest_reverse_kernel(const float* in, float* out, int sync) {
    __shared__ float s[1024];
    int n = (int)blockDim.x, base = (int)blockIdx.x * n, i = (int)threadIdx.x;
    s[i] = in[base + i];
    if (sync) __syncthreads();
    out[base + i] = s[n - 1 - i];
}

// Returns early in half of the threads before a barrier (undefined in CUDA;
// the harness reports it).
extern "C" __global__ void __launch_bounds__(256) simtest_early_exit_kernel(float* out) {
    if (threadIdx.x % 2 == 1) return;
    __syncthreads();
    out[threadIdx.x] = 1.0f;
}

// Half a warp waits at a shuffle while the rest of the block waits at a
// barrier: a deadlock the harness reports.
extern "C" __global__ void __launch_bounds__(256) simtest_divergent_kernel(float* out) {
    if (threadIdx.x < 16) {
        out[threadIdx.x] = __shfl_xor_sync(0xffffffffu, (float)threadIdx.x, 1);
    } else {
        __syncthreads();
    }
}

// Warp primitives: out[i] = the block sum of in (block_sum_d) in thread 0's
// slot, xor- and down-shuffles of the lane number elsewhere.
extern "C" __global__ void __launch_bounds__(1024)
    simtest_warp_kernel(const float* in, double* sum, int* xorv, int* downv) {
    int i = (int)threadIdx.x;
    int lane = i & 31;
    xorv[i] = __shfl_xor_sync(0xffffffffu, lane, 5);
    downv[i] = __shfl_down_sync(0xffffffffu, lane, 3);
    double s = block_sum_d((double)in[i]);
    if (i == 0) sum[0] = s;
}

// Dynamic shared memory starts as NaN in the harness; out gets what thread
// i reads from slot i before and after writing it.
extern "C" __global__ void __launch_bounds__(256) simtest_dynamic_smem_kernel(float* before, float* after) {
    FM_DYNAMIC_SMEM(float, s);
    int i = (int)threadIdx.x;
    before[i] = s[i];
    __syncthreads();
    s[i] = (float)i;
    __syncthreads();
    after[i] = s[(int)blockDim.x - 1 - i];
}

// Index kernel: out[linear thread id] = its (threadIdx, blockIdx) packed,
// for a 3-D grid and block.
extern "C" __global__ void __launch_bounds__(512) simtest_index_kernel(int* out) {
    int tpb = (int)(blockDim.x * blockDim.y * blockDim.z);
    int b = (int)(blockIdx.x + gridDim.x * (blockIdx.y + gridDim.y * blockIdx.z));
    int t = (int)(threadIdx.x + blockDim.x * (threadIdx.y + blockDim.y * threadIdx.z));
    out[b * tpb + t] = (int)(threadIdx.x | threadIdx.y << 8 | threadIdx.z << 16 | blockIdx.x << 20 |
                             blockIdx.y << 24 | blockIdx.z << 28);
}

// Reads one element past n (the guard page must stop it).
extern "C" __global__ void __launch_bounds__(32) simtest_overrun_kernel(const float* in, float* out, int n) {
    if (threadIdx.x == 0) out[0] = in[n];
}

// Scalars in 8-byte slots: writes them back as doubles.
extern "C" __global__ void __launch_bounds__(32) simtest_args_kernel(int i, float f, double d,
                                                                     unsigned long long u, double* out) {
    if (threadIdx.x == 0) {
        out[0] = (double)i;
        out[1] = (double)f;
        out[2] = d;
        out[3] = (double)(u >> 32);
        out[4] = (double)(u & 0xffffffffu);
    }
}
