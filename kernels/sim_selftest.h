// Kernels that test the kernelsim harness itself (kernels_test.go): they
// are compiled into the harness only, never into fmgpu.fatbin, and their
// names start with simtest_.
#pragma once
#include "common.cuh"
#include "mma.cuh"

// Reverses each block's slice through shared memory: correct only with
// the barrier between the write and the read.
extern "C" __global__ void __launch_bounds__(1024) simtest_reverse_kernel(const float* in, float* out, int sync) {
    FM_SHARED(float, s, [1024]);
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

// Dynamic shared memory starts as NaN in the harness; before and after get
// what thread i of each block reads from slot i before writing it and
// from slot n - 1 - i after.
extern "C" __global__ void __launch_bounds__(256) simtest_dynamic_smem_kernel(float* before, float* after) {
    FM_DYNAMIC_SMEM(float, s);
    int i = (int)threadIdx.x, n = (int)blockDim.x, o = (int)blockIdx.x * n;
    before[o + i] = s[i];
    __syncthreads();
    s[i] = (float)i;
    __syncthreads();
    after[o + i] = s[n - 1 - i];
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

// ---- planted faults: each checker must catch its own (kernels_test.go) ----

// racecheck, shared memory. After a barrier-separated initialisation:
//   mode 0: each thread writes s[i] and reads s[i + 1] (no barrier: race);
//   mode 1: every thread writes s[0] (race);
//   mode 2: mode 0 with the barrier (correct);
//   mode 3: write s[i], __syncwarp, read s[i ^ 1] (a warp's lanes: correct);
//   mode 4: mode 3 without the __syncwarp (race);
//   mode 5: every thread atomicAdds s[0] (atomics do not race).
extern "C" __global__ void __launch_bounds__(256) simtest_shared_race_kernel(float* out, int mode) {
    FM_SHARED(float, s, [257]);
    FM_SHARED(int, count);
    int i = (int)threadIdx.x, n = (int)blockDim.x;
    s[i] = 0.0f;
    if (i == 0) s[n] = 0.0f, count = 0;
    __syncthreads();
    float v = 0.0f;
    switch (mode) {
        case 0:
            s[i] = (float)i;
            v = s[i + 1];
            break;
        case 1:
            s[0] = (float)i;
            break;
        case 2:
            s[i] = (float)i;
            __syncthreads();
            v = s[i + 1];
            break;
        case 3:
            s[i] = (float)i;
            __syncwarp();
            v = s[i ^ 1];
            break;
        case 4:
            s[i] = (float)i;
            v = s[i ^ 1];
            break;
        case 5:
            atomicAdd(&count, 1);
            __syncthreads();
            v = (float)count;
            break;
    }
    out[blockIdx.x * n + i] = v;
}

// racecheck, global memory, over a 1-D launch with buf of at least
// (gridDim.x + 1) blockDim.x floats:
//   mode 0: every thread of a block writes buf[0] (race);
//   mode 1: thread 0 of every block writes buf[0] (race between blocks);
//   mode 2: thread i writes buf[i] and reads buf[i + 1] (race);
//   mode 3: mode 2 with a barrier between (correct within a block);
//   mode 4: mode 3, but the read crosses into the next block's slice
//           (race: blocks are unordered, barriers order a block only);
//   mode 5: every thread atomicAdds buf[0] (atomics do not race).
extern "C" __global__ void __launch_bounds__(256) simtest_global_race_kernel(float* buf, int mode) {
    int i = (int)threadIdx.x, g = (int)(blockIdx.x * blockDim.x) + i;
    float v;
    switch (mode) {
        case 0:
            buf[0] = (float)i;
            break;
        case 1:
            if (i == 0) buf[0] = (float)blockIdx.x;
            break;
        case 2:
            buf[g] = (float)g;
            v = buf[g + 1];
            buf[g] = v;
            break;
        case 3:
        case 4:
            buf[g] = (float)g;
            __syncthreads();
            v = mode == 3 && i == (int)blockDim.x - 1 ? 0.0f : buf[g + 1];
            __syncthreads();
            buf[g] = v;
            break;
        case 5:
            atomicAdd(&buf[0], 1.0f);
            break;
    }
}

// racecheck, global memory, across blocks ordered by __threadfence (the
// one-pass reductions' last block: common.cuh's last_block_of): thread 0
// of every block writes part[blockIdx.x]; the block that counts last on
// *counter (0 before the launch) writes their sum to out[0].
//   mode 0: last_block_of (correct);
//   mode 1: its counter without the fences (race);
//   mode 2: the fences, but the partial written after the block's fence
//           (race);
//   mode 3: the fence before the count, none after it in the last block
//           (race: the count orders nothing after it).
extern "C" __global__ void __launch_bounds__(256)
    simtest_last_block_kernel(float* part, unsigned* counter, float* out, int mode) {
    FM_SHARED(bool, last);
    if (threadIdx.x == 0 && mode != 2) part[blockIdx.x] = (float)(blockIdx.x + 1);
    if (mode == 0) {
        if (!last_block_of(counter, gridDim.x)) return;
    } else {
        __syncthreads();
        if (threadIdx.x == 0) {
            if (mode >= 2) __threadfence();
            if (mode == 2) part[blockIdx.x] = (float)(blockIdx.x + 1);
            unsigned done = atomicAdd(counter, 1u);
            last = done == gridDim.x - 1;
            if (last) *counter = 0;
        }
        __syncthreads();
        if (!last) return;
        if (mode == 2) __threadfence();
    }
    if (threadIdx.x == 0) {
        float sum = 0.0f;
        for (unsigned b = 0; b < gridDim.x; b++) sum += fm_ldcg(part + b);
        out[0] = sum;
    }
}

// initcheck: only block 0 writes the shared array; the other blocks read
// it (on a GPU: whatever another kernel left there).
extern "C" __global__ void __launch_bounds__(256) simtest_uninit_shared_kernel(float* out) {
    FM_SHARED(float, s, [256]);
    int i = (int)threadIdx.x;
    if (blockIdx.x == 0) s[i] = 1.0f;
    __syncthreads();
    out[blockIdx.x * blockDim.x + i] = s[i];
}

// synccheck, warp masks (one warp unless said):
//   mode 0: all 32 lanes shuffle with mask 0x0000ffff (16..31 not in it);
//   mode 1: lanes 0..15 return, the rest shuffle with the full mask;
//   mode 2: lanes 0..15 shuffle among themselves (mask 0x0000ffff) while
//           lanes 16..31 __syncwarp among themselves (correct);
//   mode 3: mode 2, but lane 3 reads lane 20 (not in its mask);
//   mode 4: the full mask in a block of 48 threads (warp 1 has 16 lanes);
//   mode 5: lanes 0..15 __syncwarp, lanes 16..31 shuffle, both with the
//           full mask (different operations).
extern "C" __global__ void __launch_bounds__(64) simtest_mask_kernel(int* out, int mode) {
    int i = (int)threadIdx.x, lane = i & 31, v = i;
    switch (mode) {
        case 0:
            v = __shfl_sync(0x0000ffffu, v, 0);
            break;
        case 1:
            if (lane < 16) return;
            v = __shfl_xor_sync(0xffffffffu, v, 1);
            break;
        case 2:
        case 3:
            if (lane < 16)
                v = __shfl_sync(0x0000ffffu, v, mode == 3 && lane == 3 ? 20 : 15 - lane);
            else
                __syncwarp(0xffff0000u);
            break;
        case 4:
            v = __shfl_xor_sync(0xffffffffu, v, 1);
            break;
        case 5:
            if (lane < 16)
                __syncwarp();
            else
                v = __shfl_xor_sync(0xffffffffu, v, 1);
            break;
    }
    out[i] = v;
}

// Votes and the upward shuffle: per lane, the ballot of pred over the
// warp, any, all, and the lane value 2 lanes down (shfl_up by 2).
extern "C" __global__ void __launch_bounds__(64)
    simtest_vote_kernel(const int* pred, unsigned* ballot, int* any, int* all, int* up) {
    int i = (int)threadIdx.x;
    ballot[i] = __ballot_sync(0xffffffffu, pred[i]);
    any[i] = __any_sync(0xffffffffu, pred[i]);
    all[i] = __all_sync(0xffffffffu, pred[i]);
    up[i] = __shfl_up_sync(0xffffffffu, i & 31, 2);
}

// synccheck: the warps of a block reach different __syncthreads.
extern "C" __global__ void __launch_bounds__(64) simtest_barrier_sites_kernel(float* out) {
    if (threadIdx.x < 32) {
        __syncthreads();
        out[threadIdx.x] = 1.0f;
    } else {
        __syncthreads();
        out[threadIdx.x] = 2.0f;
    }
}

// memcheck: one thread's load of in[off] into out[0] (off may be negative).
extern "C" __global__ void __launch_bounds__(32) simtest_load_kernel(const float* in, long long off, float* out) {
    if (threadIdx.x == 0) out[0] = in[off];
}

// memcheck, alignment: thread 0 accesses in + off floats as
//   mode 0: a float2 load;  mode 1: a float4 load;  mode 2: a double load;
//   mode 3: an unsigned long long store;  mode 4: a float4 shared load
//   from a 16-byte aligned array + off floats.
extern "C" __global__ void __launch_bounds__(32) simtest_misaligned_kernel(float* in, int off, int mode, float* out) {
    FM_SHARED(__align__(16) float, s, [16]);
    if (threadIdx.x != 0) return;
    for (int k = 0; k < 16; k++) s[k] = (float)k;
    float v = 0.0f;
    switch (mode) {
        case 0: {
            float2 q = *reinterpret_cast<const float2*>(in + off);
            v = q.x + q.y;
            break;
        }
        case 1: {
            float4 q = *reinterpret_cast<const float4*>(in + off);
            v = q.x + q.w;
            break;
        }
        case 2:
            v = (float)*reinterpret_cast<const double*>(in + off);
            break;
        case 3:
            *reinterpret_cast<unsigned long long*>(in + off) = 0;
            break;
        case 4: {
            float4 q = *reinterpret_cast<const float4*>(s + off);
            v = q.x + q.w;
            break;
        }
    }
    out[0] = v;
}

// ---- tensor-core instructions (mma.cuh, emulated by sim_mma.h) ----

// One warp: D = C + A B by fm_mma_tf32<2, 2> (2 x 2 m16n8k8 products),
// A 32 x 8 and B 8 x 16 row-major, C and D 32 x 16, each lane loading its
// fragments by the PTX layouts (mma.cuh). mode 0 passes A's raw float32
// bits (an emulation error: not tf32 values), 1 the tf32-rounded operands,
// 2 their 3xTF32 split (fm_mma_tf32x3).
extern "C" __global__ void __launch_bounds__(32)
    simtest_mma_kernel(const float* A, const float* B, const float* C, float* D, int mode) {
    const int l = (int)threadIdx.x, g = l >> 2, t = l & 3;
    uint32_t a[2][4], b[2][2], alo[2][4], blo[2][2];
    float acc[2][2][4];
    for (int i = 0; i < 2; i++)
        for (int r = 0; r < 4; r++) {
            float v = A[(16 * i + g + 8 * (r & 1)) * 8 + t + 4 * (r >> 1)];
            a[i][r] = mode == 1 ? fm_tf32(v) : __float_as_uint(v);
            if (mode == 2) fm_tf32_split(v, a[i][r], alo[i][r]);
        }
    for (int j = 0; j < 2; j++)
        for (int r = 0; r < 2; r++) {
            float v = B[(t + 4 * r) * 16 + 8 * j + g];
            b[j][r] = fm_tf32(v);
            if (mode == 2) fm_tf32_split(v, b[j][r], blo[j][r]);
        }
    for (int i = 0; i < 2; i++)
        for (int j = 0; j < 2; j++)
            for (int r = 0; r < 4; r++) acc[i][j][r] = C[(16 * i + g + 8 * (r >> 1)) * 16 + 8 * j + 2 * t + (r & 1)];
    if (mode == 2)
        fm_mma_tf32x3<2, 2>(acc, a, alo, b, blo);
    else
        fm_mma_tf32<2, 2>(acc, a, b);
    for (int i = 0; i < 2; i++)
        for (int j = 0; j < 2; j++)
            for (int r = 0; r < 4; r++) D[(16 * i + g + 8 * (r >> 1)) * 16 + 8 * j + 2 * t + (r & 1)] = acc[i][j][r];
}

// One warp: the A fragments of the two 16 x 8 halves of a 32 x 8 row-major
// matrix (k-contiguous rows of 12 floats in shared memory) by one
// fm_ldmatrix_x4<2>; out[8 l + 4 h + r] is lane l's register r of half h,
// as float bits.
extern "C" __global__ void __launch_bounds__(32) simtest_ldmatrix_kernel(const float* in, float* out) {
    FM_SHARED(__align__(16) float, s, [32 * 12]);
    const int l = (int)threadIdx.x;
    for (int e = l; e < 32 * 8; e += 32) s[(e / 8) * 12 + e % 8] = in[e];
    __syncthreads();
    uint32_t r[2][4];
    const float* rows[2];
    for (int h = 0; h < 2; h++) rows[h] = s + (16 * h + (l & 7) + 8 * ((l >> 3) & 1)) * 12 + 4 * (l >> 4);
    fm_ldmatrix_x4<2>(r, rows);
    for (int h = 0; h < 2; h++)
        for (int i = 0; i < 4; i++) out[8 * l + 4 * h + i] = __uint_as_float(r[h][i]);
}

// cp.async: 64 threads copy in[0, n) (zero-filled to 256 floats) into
// shared memory in two groups of 16 bytes a thread (threads 0..31 the first
// 128 floats, in the group committed first), then out[i] = s[255 - i]:
//   mode 0: wait_group 0, __syncthreads, read (correct);
//   mode 1: no wait_group (the reads see poisoned memory: initcheck);
//   mode 2: wait_group 0 without the __syncthreads (racecheck or initcheck);
//   mode 3: wait_group 1 (the second group may be pending), __syncthreads,
//           read only the first group's floats (correct);
//   mode 4: mode 3 reading everything (initcheck).
extern "C" __global__ void __launch_bounds__(64) simtest_cp_async_kernel(const float* in, int n, float* out, int mode) {
    FM_SHARED(__align__(16) float, s, [256]);
    const int i = (int)threadIdx.x;
    for (int grp = 0; grp < 2; grp++) {
        if ((i < 32) == (grp == 0)) {
            const int e = 4 * i, valid = imax(0, imin(4, n - e));
            fm_cp_async16(s + e, valid > 0 ? in + e : in, 4 * valid);
        }
        fm_cp_async_commit();
    }
    if (mode == 0 || mode == 2) fm_cp_async_wait<0>();
    if (mode == 3 || mode == 4) fm_cp_async_wait<1>();
    if (mode != 2) __syncthreads();
    for (int e = i; e < 256; e += 64) {
        if (mode == 3 && 255 - e >= 128) continue;
        out[e] = s[255 - e];
    }
    if (mode == 3) fm_cp_async_wait<0>();
}

// One warp: D = C + A B by fm_mma_bf16<2, 2> (2 x 2 m16n8k16 products), A
// 32 x 16 and B 16 x 16 row-major, C and D 32 x 16, each lane building its
// packed bf16 fragments by the PTX layouts (mma.cuh) with fm_bf16x2. mode 1
// converts every element; mode 0 swaps the two halves of A's registers (a
// wrong fragment layout, which the results must expose).
extern "C" __global__ void __launch_bounds__(32)
    simtest_mma_bf16_kernel(const float* A, const float* B, const float* C, float* D, int mode) {
    const int l = (int)threadIdx.x, g = l >> 2, t = l & 3;
    uint32_t a[2][4], b[2][2];
    float acc[2][2][4];
    for (int i = 0; i < 2; i++)
        for (int r = 0; r < 4; r++) {
            const float* p = A + (16 * i + g + 8 * (r & 1)) * 16 + 2 * t + 8 * (r >> 1);
            a[i][r] = mode == 0 ? fm_bf16x2(p[1], p[0]) : fm_bf16x2(p[0], p[1]);
        }
    for (int j = 0; j < 2; j++)
        for (int r = 0; r < 2; r++) {
            const int k = 2 * t + 8 * r;
            b[j][r] = fm_bf16x2(B[k * 16 + 8 * j + g], B[(k + 1) * 16 + 8 * j + g]);
        }
    for (int i = 0; i < 2; i++)
        for (int j = 0; j < 2; j++)
            for (int r = 0; r < 4; r++) acc[i][j][r] = C[(16 * i + g + 8 * (r >> 1)) * 16 + 8 * j + 2 * t + (r & 1)];
    fm_mma_bf16<2, 2>(acc, a, b);
    for (int i = 0; i < 2; i++)
        for (int j = 0; j < 2; j++)
            for (int r = 0; r < 4; r++) D[(16 * i + g + 8 * (r >> 1)) * 16 + 8 * j + 2 * t + (r & 1)] = acc[i][j][r];
}

// fm_bf16x2 of in[2 i] (low half) and in[2 i + 1] (high half) into out[i],
// as the bits of a float, for i < n (one thread each).
extern "C" __global__ void __launch_bounds__(32) simtest_bf16x2_kernel(const float* in, float* out, int n) {
    const int i = (int)(blockIdx.x * blockDim.x + threadIdx.x);
    if (i < n) out[i] = __uint_as_float(fm_bf16x2(in[2 * i], in[2 * i + 1]));
}
