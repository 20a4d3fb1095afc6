// The tensor-core tiled product shared by products.cu (Gemm) and dense.cu
// (Linear, LinearBackward): the same C = op(A) op(B) as gemm.cuh's tile,
// on the tensor cores (mma.cuh), in three precisions (the template
// parameter P):
//   tf32   (TC_TF32): one mma per k step of the operands rounded to tf32
//          (cvt.rna: 10 mantissa bits, relative error <= 2^-11 each), so
//          each product a b carries a relative error <= 2^-10 and an element
//          of C an error <= 2^-10 sum |a||b| plus the accumulation's;
//   tf32x3 (TC_TF32X3): the 3xTF32 split a = a_hi + a_lo (fm_tf32_split),
//          acc += a_lo b_hi + a_hi b_lo + a_hi b_hi (the small terms first):
//          the dropped a_lo b_lo and the rounding of the lo parts leave a
//          relative error near 2^-21 of sum |a||b|, float32 accuracy for
//          the conformance suite's bound (1e-4 of sum |a||b|) with three
//          times the tf32 mma count;
//   bf16   (TC_BF16): one m16n8k16 bf16 mma per k step of 16, the operands
//          rounded to bf16 as the fragments are built (cvt.rn.bf16x2:
//          8 significant bits, relative error <= 2^-8 each), so each
//          product a b to within 2^-7 + 2^-16 of |a b| and an element of C
//          to within that of sum |a||b| plus the float32 accumulation's. Only
//          the products are bf16: the tiles stay float32 in global and
//          shared memory (the same copies and fragment loads as tf32's,
//          tc_step), so this saves tensor-core time and instructions, not
//          memory traffic.
//
// Tiling: a block of 256 threads (8 warps) computes a TC_BM x TC_BN = 128 x
// 128 tile of C; warp w owns the 64 x 32 sub-tile at rows 64 (w >> 2),
// columns 32 (w & 3), as TC_MT x TC_NT = 4 x 4 m16n8k8 (bf16: m16n8k16) products (64
// accumulators a thread, in the C fragment layout of mma.cuh). k advances
// by TC_BK = 32 through a TC_STAGES = 3 stage cp.async pipeline in dynamic
// shared memory (TC_SMEM_BYTES = 108 KiB: above 48 KiB, so the launcher
// sets the kernel's maximum dynamic shared memory attribute): while the
// warps multiply the slice of stage s, the copies of the next two slices
// are in flight. Each operand's slice is stored as the matrix is, so that
// 16-byte copies move it unchanged:
//   k-contiguous (op(A) = A, op(B) = B^T): rows of TC_KROW = 36 floats, read
//   by ldmatrix .x4 (16-byte rows 144 bytes apart: the 8 rows of a matrix
//   fall in 8 distinct groups of 4 banks);
//   m- or n-contiguous (op(A) = A^T, op(B) = B): rows of TC_MROW = 136
//   floats, read by 32-bit loads at (k = t, m = g): bank 8 t + g, distinct
//   over the warp.
// Outside the matrices (ragged m, n, k) the copies zero-fill (src-size), so
// any m, n, k >= 1 work; nothing outside the rows x cols of a strided
// operand is read.
//
// Preconditions of the copies (the device backend falls back to gemm.cuh's
// kernels otherwise, gpu/device_products.go): A and B 16-byte aligned, lda
// and ldb multiples of 4 floats; blockDim = (256, 1, 1); dynamic shared
// memory of TC_SMEM_BYTES.
#pragma once
#include "common.cuh"
#include "mma.cuh"

#define TC_BM 128
#define TC_BN 128
#define TC_BK 32
#define TC_STAGES 3
#define TC_THREADS 256
#define TC_KROW (TC_BK + 4)
#define TC_MROW (TC_BM + 8)
#define TC_TILE (TC_BM * TC_KROW)
#define TC_SMEM_BYTES (TC_STAGES * 2 * TC_TILE * 4)
#define TC_MT 4
#define TC_NT 4
// the precisions (P)
#define TC_TF32 0
#define TC_TF32X3 1
#define TC_BF16 2

static_assert(TC_BM == TC_BN && TC_TILE >= TC_BK * TC_MROW, "one tile size holds either layout");

// tc_load issues the copies of an operand's k slice [k0, k0 + TC_BK) of the
// 128 rows [row0, row0 + 128) of an R x K matrix op(X) (X stored R x K, row
// stride ldx, when KC: k-contiguous; else stored K x R) into the stage s:
// four 16-byte copies a thread, zero-filled outside the matrix.
template <bool KC>
FM_DEVICE void tc_load(float* s, int rows, int k, const float* __restrict__ X, int ldx, int row0, int k0, int tid) {
    FM_UNROLL
    for (int q = 0; q < (TC_BM * TC_BK / 4) / TC_THREADS; q++) {
        const int c = tid + TC_THREADS * q;
        if (KC) {
            const int r = c / (TC_BK / 4), p = 4 * (c % (TC_BK / 4));
            const int gr = row0 + r, gk = k0 + p;
            const int valid = gr < rows ? imax(0, imin(4, k - gk)) : 0;
            fm_cp_async16(s + r * TC_KROW + p, valid > 0 ? X + (long long)gr * ldx + gk : X, 4 * valid);
        } else {
            const int p = c / (TC_BM / 4), r = 4 * (c % (TC_BM / 4));
            const int gk = k0 + p, gr = row0 + r;
            const int valid = gk < k ? imax(0, imin(4, rows - gr)) : 0;
            fm_cp_async16(s + p * TC_MROW + r, valid > 0 ? X + (long long)gk * ldx + gr : X, 4 * valid);
        }
    }
}

// tc_frags loads the warp's float32 fragments of the k step [kk, kk + 8)
// in m16n8k8's layouts (mma.cuh): af[i] of m-tile i (a0..a3: (g, t), (g + 8,
// t), (g, t + 4), (g + 8, t + 4)), bf[j] of n-tile j (b0, b1: (k = t, n =
// g), (k = t + 4, n = g)).
template <bool TA, bool TB>
FM_DEVICE void tc_frags(const float* sA, const float* sB, int kk, int wm0, int wn0, int lane, float af[TC_MT][4],
                        float bf[TC_NT][2]) {
    const int g = lane >> 2, t = lane & 3;
    if (!TA) {
        // matrix lane >> 3 of m-tile i: rows + 8 (its bit 0), k + 4 (its bit 1)
        uint32_t r[TC_MT][4];
        const float* rows[TC_MT];
        FM_UNROLL
        for (int i = 0; i < TC_MT; i++)
            rows[i] = sA + (wm0 + 16 * i + (lane & 7) + 8 * ((lane >> 3) & 1)) * TC_KROW + kk + 4 * (lane >> 4);
        fm_ldmatrix_x4<TC_MT>(r, rows);
        FM_UNROLL
        for (int i = 0; i < TC_MT; i++)
            FM_UNROLL
        for (int q = 0; q < 4; q++) af[i][q] = __uint_as_float(r[i][q]);
    } else {
        FM_UNROLL
        for (int i = 0; i < TC_MT; i++) {
            const float* p = sA + (kk + t) * TC_MROW + wm0 + 16 * i + g;
            af[i][0] = p[0], af[i][1] = p[8], af[i][2] = p[4 * TC_MROW], af[i][3] = p[4 * TC_MROW + 8];
        }
    }
    if (TB) {
        // matrix lane >> 3 of n-tiles (2 h, 2 h + 1): k + 4 (its bit 0),
        // the second tile (its bit 1)
        uint32_t r[TC_NT / 2][4];
        const float* rows[TC_NT / 2];
        FM_UNROLL
        for (int h = 0; h < TC_NT / 2; h++)
            rows[h] = sB + (wn0 + 16 * h + (lane & 7) + 8 * (lane >> 4)) * TC_KROW + kk + 4 * ((lane >> 3) & 1);
        fm_ldmatrix_x4<TC_NT / 2>(r, rows);
        FM_UNROLL
        for (int h = 0; h < TC_NT / 2; h++) {
            bf[2 * h][0] = __uint_as_float(r[h][0]), bf[2 * h][1] = __uint_as_float(r[h][1]);
            bf[2 * h + 1][0] = __uint_as_float(r[h][2]), bf[2 * h + 1][1] = __uint_as_float(r[h][3]);
        }
    } else {
        FM_UNROLL
        for (int j = 0; j < TC_NT; j++) {
            const float* p = sB + (kk + t) * TC_MROW + wn0 + 8 * j + g;
            bf[j][0] = p[0], bf[j][1] = p[4 * TC_MROW];
        }
    }
}

// tc_pack_bf16 packs the float32 fragments of the k step [kk + 8 step, kk
// + 8 step + 8) (tc_frags' layouts) into the bf16 registers of the m16n8k16
// products over [kk, kk + 16), k permuted alike in A and B: an mma sums
// over its 16 k, so the order in which their pairs sit in the registers is
// free as long as A and B agree. Its k slot s (mma.cuh's m16n8k16 layout:
// A register r of lane (g, t) holds the slots 2t + 8 (r >> 1) + h, B
// register r the slots 2t + 8 r + h) holds the k = kk + 8 (s >> 3) + (s >>
// 1 & 3) + 4 (s & 1): for A, register r = (af of step r >> 1)[r & 1] (low
// half) and [2 + (r & 1)] (high half), that is (row g + 8 (r & 1), k t)
// and (k t + 4); for B, register r = (bf of step r)[0] and [1], (k t) and
// (k t + 4). So bf16 reads shared memory exactly as tf32 does.
template <int MT, int NT>
FM_DEVICE void tc_pack_bf16(int step, const float af[MT][4], const float bf[NT][2], uint32_t a[MT][4], uint32_t b[NT][2]) {
    FM_UNROLL
    for (int i = 0; i < MT; i++) {
        a[i][2 * step] = fm_bf16x2(af[i][0], af[i][2]);
        a[i][2 * step + 1] = fm_bf16x2(af[i][1], af[i][3]);
    }
    FM_UNROLL
    for (int j = 0; j < NT; j++) b[j][step] = fm_bf16x2(bf[j][0], bf[j][1]);
}

// tc_mma8 issues the MT x NT m16n8k8 products of one k step of 8 from its
// float32 fragments, in tf32 (P = TC_TF32) or tf32x3 (TC_TF32X3).
template <int P, int MT, int NT>
FM_DEVICE void tc_mma8(float acc[MT][NT][4], const float af[MT][4], const float bf[NT][2]) {
    if constexpr (P == TC_TF32X3) {
        uint32_t ahi[MT][4], alo[MT][4], bhi[NT][2], blo[NT][2];
        FM_UNROLL
        for (int i = 0; i < MT; i++)
            FM_UNROLL
        for (int q = 0; q < 4; q++) fm_tf32_split(af[i][q], ahi[i][q], alo[i][q]);
        FM_UNROLL
        for (int j = 0; j < NT; j++)
            FM_UNROLL
        for (int q = 0; q < 2; q++) fm_tf32_split(bf[j][q], bhi[j][q], blo[j][q]);
        fm_mma_tf32x3<MT, NT>(acc, ahi, alo, bhi, blo);
    } else {
        uint32_t a[MT][4], b[NT][2];
        FM_UNROLL
        for (int i = 0; i < MT; i++)
            FM_UNROLL
        for (int q = 0; q < 4; q++) a[i][q] = fm_tf32(af[i][q]);
        FM_UNROLL
        for (int j = 0; j < NT; j++)
            FM_UNROLL
        for (int q = 0; q < 2; q++) b[j][q] = fm_tf32(bf[j][q]);
        fm_mma_tf32<MT, NT>(acc, a, b);
    }
}

// tc_step multiplies one stage: four k steps of 8 (tc_frags), each issuing
// the TC_MT x TC_NT m16n8k8 products (three times for tf32x3); or, in
// bf16, two k steps of 16, each issuing TC_MT x TC_NT m16n8k16 products
// from the fragments of two k steps of 8 (tc_pack_bf16).
template <bool TA, bool TB, int P>
FM_DEVICE void tc_step(const float* sA, const float* sB, float acc[TC_MT][TC_NT][4], int wm0, int wn0, int lane) {
    if constexpr (P == TC_BF16) {
        // not unrolled: the next k step's loads hoisted above this one's
        // mma would push linear_bf16_forward past 128 registers, where
        // ptxas spills
        FM_NO_UNROLL
        for (int kk = 0; kk < TC_BK; kk += 16) {
            uint32_t a[TC_MT][4], b[TC_NT][2];
            FM_UNROLL
            for (int step = 0; step < 2; step++) {
                float af[TC_MT][4], bf[TC_NT][2];
                tc_frags<TA, TB>(sA, sB, kk + 8 * step, wm0, wn0, lane, af, bf);
                tc_pack_bf16<TC_MT, TC_NT>(step, af, bf, a, b);
            }
            fm_mma_bf16<TC_MT, TC_NT>(acc, a, b);
        }
    } else {
        FM_UNROLL
        for (int kk = 0; kk < TC_BK; kk += 8) {
            float af[TC_MT][4], bf[TC_NT][2];
            tc_frags<TA, TB>(sA, sB, kk, wm0, wn0, lane, af, bf);
            tc_mma8<P, TC_MT, TC_NT>(acc, af, bf);
        }
    }
}

// tc_tile accumulates acc = op(A) op(B) over the tile at (row0, col0) of
// an m x n x k product (k >= 1): acc[i][j][q] is element (row0 + 64 (w >> 2)
// + 16 i + g + 8 (q >> 1), col0 + 32 (w & 3) + 8 j + 2 t + (q & 1)) for warp
// w, lane 4 g + t (tc_epilogue walks them). With sumA it also adds, in
// double, the k values of row row0 + tid of op(A) into asum in threads tid
// < 128 (LinearBackward's bias gradient, as gemm.cuh's gemm_tile_at).
// Preconditions: those of the file comment; every thread of the block
// calls it (it contains __syncthreads); the block's shared memory is not in
// use by the caller.
template <bool TA, bool TB, int P>
FM_DEVICE void tc_tile(int m, int n, int k, const float* __restrict__ A, int lda, const float* __restrict__ B, int ldb,
                       int row0, int col0, float acc[TC_MT][TC_NT][4], bool sumA, double& asum) {
    FM_DYNAMIC_SMEM(float, tc_smem);
    const int tid = (int)threadIdx.x, warp = tid >> 5, lane = tid & 31;
    const int wm0 = (warp >> 2) * 64, wn0 = (warp & 3) * 32;
    FM_UNROLL
    for (int i = 0; i < TC_MT; i++)
        FM_UNROLL
    for (int j = 0; j < TC_NT; j++)
        FM_UNROLL
    for (int q = 0; q < 4; q++) acc[i][j][q] = 0.0f;
    // counted by tiles: k0 + TC_BK past k may overflow
    const int ktiles = k / TC_BK + (k % TC_BK != 0);
    FM_UNROLL
    for (int s = 0; s < TC_STAGES - 1; s++) {
        if (s < ktiles) {
            float* st = tc_smem + s * 2 * TC_TILE;
            tc_load<!TA>(st, m, k, A, lda, row0, s * TC_BK, tid);
            tc_load<TB>(st + TC_TILE, n, k, B, ldb, col0, s * TC_BK, tid);
        }
        fm_cp_async_commit();
    }
    for (int kt = 0; kt < ktiles; kt++) {
        // Slice kt has landed (at most the newest group, slice kt + 1, is
        // in flight), and every warp is done with the stage the next copies
        // overwrite (it held slice kt - 1).
        fm_cp_async_wait<TC_STAGES - 2>();
        __syncthreads();
        const int nk = kt + TC_STAGES - 1;
        if (nk < ktiles) {
            float* st = tc_smem + (nk % TC_STAGES) * 2 * TC_TILE;
            tc_load<!TA>(st, m, k, A, lda, row0, nk * TC_BK, tid);
            tc_load<TB>(st + TC_TILE, n, k, B, ldb, col0, nk * TC_BK, tid);
        }
        fm_cp_async_commit();  // empty past the last slice: the wait's count stays right
        const float* st = tc_smem + (kt % TC_STAGES) * 2 * TC_TILE;
        if (sumA && tid < TC_BM) {
            double s = 0.0;
            FM_UNROLL
            for (int p = 0; p < TC_BK; p++) s += (double)(TA ? st[p * TC_MROW + tid] : st[tid * TC_KROW + p]);
            asum += s;
        }
        tc_step<TA, TB, P>(st, st + TC_TILE, acc, wm0, wn0, lane);
    }
}

// tc_epilogue calls f(r, c, v) for each of the thread's accumulators v =
// acc[i][j][q] at element (r, c) of the m x n output, skipping those outside.
template <class F>
FM_DEVICE void tc_epilogue(float acc[TC_MT][TC_NT][4], int m, int n, int row0, int col0, F f) {
    const int tid = (int)threadIdx.x, warp = tid >> 5, lane = tid & 31;
    const int r0 = row0 + (warp >> 2) * 64 + (lane >> 2), c0 = col0 + (warp & 3) * 32 + 2 * (lane & 3);
    FM_UNROLL
    for (int i = 0; i < TC_MT; i++)
        FM_UNROLL
    for (int j = 0; j < TC_NT; j++)
        FM_UNROLL
    for (int q = 0; q < 4; q++) {
        const int r = r0 + 16 * i + 8 * (q >> 1), c = c0 + 8 * j + (q & 1);
        if (r < m && c < n) f(r, c, acc[i][j][q]);
    }
}
