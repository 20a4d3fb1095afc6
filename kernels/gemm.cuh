// The tiled matrix product shared by gemm.cu (C = alpha op(A) op(B) +
// beta C) and mlp.cu (the Linear layer with its fused epilogue).
//
// Tiling: a block of 16 x 16 threads computes a GEMM_BM x GEMM_BN = 64 x 64
// tile of the output; each thread owns the 4 x 4 outputs at rows
// ty + 16 i and columns tx + 16 j (so that a warp's shared-memory reads are
// broadcasts or consecutive and its global writes coalesce). The k
// dimension advances by GEMM_BK = 16: the block stages a 64 x 16 slice of
// op(A) and a 16 x 64 slice of op(B) in shared memory, loading along the
// stored matrix's contiguous dimension for each transpose, with zeros
// outside the matrices (any m, n, k and leading dimensions: nothing outside
// the rows x cols of a strided operand is read).
#pragma once
#include "common.cuh"

#define GEMM_BM 64
#define GEMM_BN 64
#define GEMM_BK 16
#define GEMM_THREADS 256

// gemm_tile accumulates acc[i][j] = sum_p op(A)[row0 + ty + 16 i, p]
// op(B)[p, col0 + tx + 16 j] for the block's tile.
// Preconditions: blockDim = (16, 16, 1); every thread of the block calls it
// (it contains __syncthreads).
template <bool TA, bool TB>
FM_DEVICE void gemm_tile(int m, int n, int k, const float* __restrict__ A, int lda, const float* __restrict__ B,
                         int ldb, float acc[4][4]) {
    __shared__ float As[GEMM_BK][GEMM_BM + 1];
    __shared__ float Bs[GEMM_BK][GEMM_BN + 1];
    const int tx = (int)threadIdx.x, ty = (int)threadIdx.y, tid = ty * 16 + tx;
    const int row0 = (int)blockIdx.y * GEMM_BM, col0 = (int)blockIdx.x * GEMM_BN;
    FM_UNROLL
    for (int i = 0; i < 4; i++)
        FM_UNROLL
    for (int j = 0; j < 4; j++) acc[i][j] = 0.0f;
    for (int k0 = 0; k0 < k; k0 += GEMM_BK) {
        FM_UNROLL
        for (int s = 0; s < (GEMM_BM * GEMM_BK) / GEMM_THREADS; s++) {
            int l = tid + GEMM_THREADS * s;
            // op(A) slice: element (i, p) of the 64 x 16 tile.
            int i = TA ? l % GEMM_BM : l / GEMM_BK;
            int p = TA ? l / GEMM_BM : l % GEMM_BK;
            int gr = row0 + i, gk = k0 + p;
            float a = 0.0f;
            if (gr < m && gk < k) a = TA ? A[(long long)gk * lda + gr] : A[(long long)gr * lda + gk];
            As[p][i] = a;
            // op(B) slice: element (q, j) of the 16 x 64 tile.
            int j = TB ? l / GEMM_BK : l % GEMM_BN;
            int q = TB ? l % GEMM_BK : l / GEMM_BN;
            int gc = col0 + j, gq = k0 + q;
            float b = 0.0f;
            if (gc < n && gq < k) b = TB ? B[(long long)gc * ldb + gq] : B[(long long)gq * ldb + gc];
            Bs[q][j] = b;
        }
        __syncthreads();
        FM_UNROLL
        for (int p = 0; p < GEMM_BK; p++) {
            float a[4], b[4];
            FM_UNROLL
            for (int i = 0; i < 4; i++) a[i] = As[p][ty + 16 * i];
            FM_UNROLL
            for (int j = 0; j < 4; j++) b[j] = Bs[p][tx + 16 * j];
            FM_UNROLL
            for (int i = 0; i < 4; i++)
                FM_UNROLL
            for (int j = 0; j < 4; j++) acc[i][j] += a[i] * b[j];
        }
        __syncthreads();
    }
}
