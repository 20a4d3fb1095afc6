// The tiled matrix product shared by products.cu (C = alpha op(A) op(B) +
// beta C) and dense.cu (the Linear layer with its fused epilogue); conv.cu
// gathers its operands into the same tiles.
//
// Tiling: a block of 16 x 16 threads computes a GEMM_BM x GEMM_BN = 64 x 64
// tile of the output; thread (tx, ty) owns the 4 x 4 outputs at rows
// 4 ty .. 4 ty + 3 and columns 4 tx .. 4 tx + 3 of the tile. The k dimension
// advances by GEMM_BK = 16: the block stages a 64 x 16 slice of op(A) (as
// As[p][i], k-major) and a 16 x 64 slice of op(B) (Bs[p][j]) in shared
// memory, loading along the stored matrix's contiguous dimension for each
// transpose, with zeros outside the matrices (any m, n, k and leading
// dimensions: nothing outside the rows x cols of a strided operand is
// read). Each k step then reads a thread's four op(A) values and four
// op(B) values with two 128-bit shared loads for 16 multiply-adds. Rows of
// the shared tiles are padded by 4 floats: 16-byte aligned for those loads,
// and at most 2-way bank conflicts for the transposing tile stores.
#pragma once
#include "common.cuh"

#define GEMM_BM 64
#define GEMM_BN 64
#define GEMM_BK 16
#define GEMM_THREADS 256
#define GEMM_PAD 4

// lds4 reads four consecutive floats of shared memory (16-byte aligned),
// lds2 two (8-byte aligned).
#ifdef __CUDACC__
FM_DEVICE void lds4(const float* p, float v[4]) {
    float4 q = *reinterpret_cast<const float4*>(p);
    v[0] = q.x, v[1] = q.y, v[2] = q.z, v[3] = q.w;
}
FM_DEVICE void lds2(const float* p, float v[2]) {
    float2 q = *reinterpret_cast<const float2*>(p);
    v[0] = q.x, v[1] = q.y;
}
#else
FM_DEVICE void lds4(const float* p, float v[4]) {
    sim_check_aligned(p, 16);
    memcpy(v, p, 4 * sizeof(float));
}
FM_DEVICE void lds2(const float* p, float v[2]) {
    sim_check_aligned(p, 8);
    memcpy(v, p, 2 * sizeof(float));
}
#endif

// gemm_tile accumulates acc[i][j] = sum_p op(A)[row0 + 4 ty + i, p]
// op(B)[p, col0 + 4 tx + j] for the block's tile.
// Preconditions: blockDim = (16, 16, 1); every thread of the block calls it
// (it contains __syncthreads).
//
// gemm_tile_at is the same for the tile at (row0, col0), for kernels that
// place their tiles themselves; with sumA it also adds, in double, the k
// values of row row0 + tid of op(A) into asum in threads tid < 64 (the
// bias gradient beside a weight-gradient product: column sums of dY; a
// flag and a reference rather than a pointer, which would put asum in
// local memory).
template <bool TA, bool TB>
FM_DEVICE void gemm_tile_at(int m, int n, int k, const float* __restrict__ A, int lda, const float* __restrict__ B,
                            int ldb, int row0, int col0, float acc[4][4], bool sumA, double& asum) {
    FM_SHARED(__align__(16) float, As, [GEMM_BK][GEMM_BM + GEMM_PAD]);
    FM_SHARED(__align__(16) float, Bs, [GEMM_BK][GEMM_BN + GEMM_PAD]);
    const int tx = (int)threadIdx.x, ty = (int)threadIdx.y, tid = ty * 16 + tx;
    FM_UNROLL
    for (int i = 0; i < 4; i++)
        FM_UNROLL
    for (int j = 0; j < 4; j++) acc[i][j] = 0.0f;
    // k0 runs over the tiles by count: k0 + GEMM_BK past k may overflow
    const int ktiles = k / GEMM_BK + (k % GEMM_BK != 0);
    for (int kt = 0; kt < ktiles; kt++) {
        const int k0 = kt * GEMM_BK;
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
        if (sumA && tid < GEMM_BM) {
            double s = 0.0;
            FM_UNROLL
            for (int p = 0; p < GEMM_BK; p++) s += (double)As[p][tid];
            asum += s;
        }
        FM_UNROLL
        for (int p = 0; p < GEMM_BK; p++) {
            float a[4], b[4];
            lds4(&As[p][4 * ty], a);
            lds4(&Bs[p][4 * tx], b);
            FM_UNROLL
            for (int i = 0; i < 4; i++)
                FM_UNROLL
            for (int j = 0; j < 4; j++) acc[i][j] += a[i] * b[j];
        }
        __syncthreads();
    }
}

template <bool TA, bool TB>
FM_DEVICE void gemm_tile(int m, int n, int k, const float* __restrict__ A, int lda, const float* __restrict__ B,
                         int ldb, float acc[4][4]) {
    double unused = 0.0;
    gemm_tile_at<TA, TB>(m, n, k, A, lda, B, ldb, (int)blockIdx.y * GEMM_BM, (int)blockIdx.x * GEMM_BN, acc, false,
                         unused);
}
