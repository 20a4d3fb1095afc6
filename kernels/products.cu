// The Products family (gpu/products.go): general and batched matrix
// products for the networks' forward and backward passes.
#include "gemm.cuh"
#include "gemm_tc.cuh"

// gemm_body: C = alpha op(A) op(B) + beta C over the block's tile; C is not
// read when beta = 0 (it may hold NaN).
template <bool TA, bool TB>
FM_DEVICE void gemm_body(int m, int n, int k, float alpha, const float* __restrict__ A, int lda,
                         const float* __restrict__ B, int ldb, float beta, float* __restrict__ C, int ldc) {
    float acc[4][4];
    gemm_tile<TA, TB>(m, n, k, A, lda, B, ldb, acc);
    const int row0 = (int)blockIdx.y * GEMM_BM + 4 * (int)threadIdx.y, col0 = (int)blockIdx.x * GEMM_BN + 4 * (int)threadIdx.x;
    FM_UNROLL
    for (int i = 0; i < 4; i++) {
        int r = row0 + i;
        if (r >= m) continue;
        FM_UNROLL
        for (int j = 0; j < 4; j++) {
            int c = col0 + j;
            if (c >= n) continue;
            float* cp = C + (long long)r * ldc + c;
            float v = alpha * acc[i][j];
            if (beta != 0.0f) v += beta * *cp;
            *cp = v;
        }
    }
}

// gemm_{nn,nt,tn,tt}_forward_kernel: C = alpha op(A) op(B) + beta C, op(X)
// = X or X^T as the first (A) and second (B) letter say; beta = 0 does not
// read C; k = 0 gives C = beta C.
// Shapes: op(A) m x k (A stored m x k, or k x m when transposed, row stride
// lda); op(B) k x n (B stored k x n or n x k, row stride ldb); C m x n (row
// stride ldc). Row-major throughout.
// Launch: grid (ceil(n / 64), ceil(m / 64)), block (16, 16).
extern "C" __global__ void __launch_bounds__(256)
    gemm_nn_forward_kernel(int m, int n, int k, float alpha, const float* __restrict__ A, int lda,
                           const float* __restrict__ B, int ldb, float beta, float* __restrict__ C, int ldc) {
    gemm_body<false, false>(m, n, k, alpha, A, lda, B, ldb, beta, C, ldc);
}

extern "C" __global__ void __launch_bounds__(256)
    gemm_nt_forward_kernel(int m, int n, int k, float alpha, const float* __restrict__ A, int lda,
                           const float* __restrict__ B, int ldb, float beta, float* __restrict__ C, int ldc) {
    gemm_body<false, true>(m, n, k, alpha, A, lda, B, ldb, beta, C, ldc);
}

extern "C" __global__ void __launch_bounds__(256)
    gemm_tn_forward_kernel(int m, int n, int k, float alpha, const float* __restrict__ A, int lda,
                           const float* __restrict__ B, int ldb, float beta, float* __restrict__ C, int ldc) {
    gemm_body<true, false>(m, n, k, alpha, A, lda, B, ldb, beta, C, ldc);
}

extern "C" __global__ void __launch_bounds__(256)
    gemm_tt_forward_kernel(int m, int n, int k, float alpha, const float* __restrict__ A, int lda,
                           const float* __restrict__ B, int ldb, float beta, float* __restrict__ C, int ldc) {
    gemm_body<true, true>(m, n, k, alpha, A, lda, B, ldb, beta, C, ldc);
}

// gemm_{nn,nt,tn,tt}_split_forward_kernel: the first pass of a split-K
// product, for outputs too small to fill the GPU with tiles (the weight
// gradients, k = batch): block (bx, by, s) computes tile (bx, by) of the
// partial product P_s = op(A)[:, K_s] op(B)[K_s, :] over the slice K_s =
// [s kSlice, min(k, (s + 1) kSlice)) and writes it, unscaled, to partial +
// s m n; gemm_split_reduce_kernel adds the slices in order. The split is
// fixed by the shape alone (gpu/device_products.go), so the result is the
// same on every run and device.
// Shapes: as gemm_*_forward_kernel; partial (splits, m, n) row-major with
// splits = gridDim.z = ceil(k / kSlice), kSlice a multiple of 16.
// Launch: grid (ceil(n / 64), ceil(m / 64), splits), block (16, 16).
template <bool TA, bool TB>
FM_DEVICE void gemm_split_body(int m, int n, int k, int kSlice, const float* __restrict__ A, int lda,
                               const float* __restrict__ B, int ldb, float* __restrict__ partial) {
    const long long k0 = (long long)blockIdx.z * kSlice;
    const long long left = (long long)k - k0;
    const int kLen = left < kSlice ? (int)left : kSlice;
    const float* As = TA ? A + k0 * lda : A + k0;
    const float* Bs = TB ? B + k0 : B + k0 * ldb;
    float acc[4][4];
    gemm_tile<TA, TB>(m, n, kLen, As, lda, Bs, ldb, acc);
    float* P = partial + (long long)blockIdx.z * m * n;
    const int row0 = (int)blockIdx.y * GEMM_BM + 4 * (int)threadIdx.y, col0 = (int)blockIdx.x * GEMM_BN + 4 * (int)threadIdx.x;
    FM_UNROLL
    for (int i = 0; i < 4; i++) {
        int r = row0 + i;
        if (r >= m) continue;
        FM_UNROLL
        for (int j = 0; j < 4; j++) {
            int c = col0 + j;
            if (c < n) P[(long long)r * n + c] = acc[i][j];
        }
    }
}

#define FM_GEMM_SPLIT_PARAMS                                                                                 \
    int m, int n, int k, int kSlice, const float *__restrict__ A, int lda, const float *__restrict__ B, int ldb, \
        float *__restrict__ partial
#define FM_GEMM_SPLIT_ARGS m, n, k, kSlice, A, lda, B, ldb, partial

extern "C" __global__ void __launch_bounds__(256) gemm_nn_split_forward_kernel(FM_GEMM_SPLIT_PARAMS) {
    gemm_split_body<false, false>(FM_GEMM_SPLIT_ARGS);
}

extern "C" __global__ void __launch_bounds__(256) gemm_nt_split_forward_kernel(FM_GEMM_SPLIT_PARAMS) {
    gemm_split_body<false, true>(FM_GEMM_SPLIT_ARGS);
}

extern "C" __global__ void __launch_bounds__(256) gemm_tn_split_forward_kernel(FM_GEMM_SPLIT_PARAMS) {
    gemm_split_body<true, false>(FM_GEMM_SPLIT_ARGS);
}

extern "C" __global__ void __launch_bounds__(256) gemm_tt_split_forward_kernel(FM_GEMM_SPLIT_PARAMS) {
    gemm_split_body<true, true>(FM_GEMM_SPLIT_ARGS);
}

// gemm_split_reduce_kernel: C[r, c] = alpha sum_s partial[s, r, c] + beta
// C[r, c], the slices added in order s = 0, 1, ... in double; beta = 0 does
// not read C.
// Shapes: partial (splits, m, n); C m x n, row stride ldc.
// Launch: 1-D, any grid (grid-stride loop over m n), block <= 256.
extern "C" __global__ void __launch_bounds__(256)
    gemm_split_reduce_kernel(int m, int n, int splits, float alpha, const float* __restrict__ partial, float beta,
                             float* __restrict__ C, int ldc) {
    const long long mn = (long long)m * n;
    for (long long e = global_tid(); e < mn; e += grid_stride()) {
        double s = 0.0;
        for (int z = 0; z < splits; z++) s += (double)partial[(long long)z * mn + e];
        float* cp = C + (e / n) * ldc + e % n;
        float v = alpha * (float)s;
        if (beta != 0.0f) v += beta * *cp;
        *cp = v;
    }
}

// gemm_batched_{nn,nt,tn,tt}_forward_kernel: for z < batch, C_z = alpha
// op(A_z) op(B_z) + beta C_z with A_z = A + z strideA, B_z = B + z strideB,
// C_z = C + z strideC (gpu.Products.GemmBatched: attention's per-image
// products), each as gemm_*_forward_kernel; block (bx, by, bz) computes
// tile (bx, by) of products bz, bz + gridDim.z, ....
// Shapes: as gemm_*_forward_kernel for each z; strides >= 0; the C_z do not
// overlap one another.
// Launch: grid (ceil(n / 64), ceil(m / 64), min(batch, 65535)), block
// (16, 16).
template <bool TA, bool TB>
FM_DEVICE void gemm_batched_body(int batch, int m, int n, int k, float alpha, const float* __restrict__ A, int lda,
                                 int strideA, const float* __restrict__ B, int ldb, int strideB, float beta,
                                 float* __restrict__ C, int ldc, int strideC) {
    // unsigned: batch + gridDim.z < 2^32
    for (unsigned z = blockIdx.z; z < (unsigned)batch; z += gridDim.z)
        gemm_body<TA, TB>(m, n, k, alpha, A + (long long)z * strideA, lda, B + (long long)z * strideB, ldb, beta,
                          C + (long long)z * strideC, ldc);
}

#define FM_GEMM_BATCHED_PARAMS                                                                                    \
    int batch, int m, int n, int k, float alpha, const float *__restrict__ A, int lda, int strideA,               \
        const float *__restrict__ B, int ldb, int strideB, float beta, float *__restrict__ C, int ldc, int strideC
#define FM_GEMM_BATCHED_ARGS batch, m, n, k, alpha, A, lda, strideA, B, ldb, strideB, beta, C, ldc, strideC

extern "C" __global__ void __launch_bounds__(256) gemm_batched_nn_forward_kernel(FM_GEMM_BATCHED_PARAMS) {
    gemm_batched_body<false, false>(FM_GEMM_BATCHED_ARGS);
}

extern "C" __global__ void __launch_bounds__(256) gemm_batched_nt_forward_kernel(FM_GEMM_BATCHED_PARAMS) {
    gemm_batched_body<false, true>(FM_GEMM_BATCHED_ARGS);
}

extern "C" __global__ void __launch_bounds__(256) gemm_batched_tn_forward_kernel(FM_GEMM_BATCHED_PARAMS) {
    gemm_batched_body<true, false>(FM_GEMM_BATCHED_ARGS);
}

extern "C" __global__ void __launch_bounds__(256) gemm_batched_tt_forward_kernel(FM_GEMM_BATCHED_PARAMS) {
    gemm_batched_body<true, true>(FM_GEMM_BATCHED_ARGS);
}

// gemm_{tf32,tf32x3,bf16}_{nn,nt,tn,tt}_forward_kernel: C = alpha op(A)
// op(B) + beta C as gemm_*_forward_kernel, on the tensor cores
// (gemm_tc.cuh: tf32, one TF32 product; tf32x3, the 3xTF32 split, float32
// accuracy; bf16, one product of the operands rounded to bf16); with
// gridDim.z > 1, block (bx, by, z) instead writes the unscaled partial
// product over the k slice [z kSlice, min(k, (z + 1) kSlice)) to partial +
// z m n, and gemm_split_reduce_kernel adds the slices in order, as
// gemm_*_split_forward_kernel (kSlice is read only then).
// Shapes: as gemm_*_forward_kernel; partial (gridDim.z, m, n) when
// gridDim.z > 1.
// Preconditions: k >= 1; A and B 16-byte aligned, lda and ldb multiples of
// 4; kSlice a multiple of 32 (TC_BK).
// Launch: grid (ceil(n / 128), ceil(m / 128), splits), block (256, 1, 1),
// TC_SMEM_BYTES of dynamic shared memory.
template <bool TA, bool TB, int PREC>
FM_DEVICE void gemm_tc_body(int m, int n, int k, int kSlice, float alpha, const float* __restrict__ A, int lda,
                            const float* __restrict__ B, int ldb, float beta, float* __restrict__ C, int ldc,
                            float* __restrict__ partial) {
    const bool split = gridDim.z > 1;
    const long long k0 = split ? (long long)blockIdx.z * kSlice : 0;
    const int kLen = !split ? k : (k - k0 < kSlice ? (int)(k - k0) : kSlice);
    const int row0 = (int)blockIdx.y * TC_BM, col0 = (int)blockIdx.x * TC_BN;
    float acc[TC_MT][TC_NT][4];
    double unused = 0.0;
    tc_tile<TA, TB, PREC>(m, n, kLen, TA ? A + k0 * lda : A + k0, lda, TB ? B + k0 : B + k0 * ldb, ldb, row0, col0,
                          acc, false, unused);
    if (split) {
        float* P = partial + (long long)blockIdx.z * m * n;
        tc_epilogue(acc, m, n, row0, col0, [&](int r, int c, float v) { P[(long long)r * n + c] = v; });
        return;
    }
    tc_epilogue(acc, m, n, row0, col0, [&](int r, int c, float v) {
        float* cp = C + (long long)r * ldc + c;
        float o = alpha * v;
        if (beta != 0.0f) o += beta * *cp;
        *cp = o;
    });
}

#define FM_GEMM_TC_PARAMS                                                                                        \
    int m, int n, int k, int kSlice, float alpha, const float *__restrict__ A, int lda, const float *__restrict__ B, \
        int ldb, float beta, float *__restrict__ C, int ldc, float *__restrict__ partial
#define FM_GEMM_TC_ARGS m, n, k, kSlice, alpha, A, lda, B, ldb, beta, C, ldc, partial

extern "C" __global__ void __launch_bounds__(256) gemm_tf32_nn_forward_kernel(FM_GEMM_TC_PARAMS) {
    gemm_tc_body<false, false, TC_TF32>(FM_GEMM_TC_ARGS);
}

extern "C" __global__ void __launch_bounds__(256) gemm_tf32_nt_forward_kernel(FM_GEMM_TC_PARAMS) {
    gemm_tc_body<false, true, TC_TF32>(FM_GEMM_TC_ARGS);
}

extern "C" __global__ void __launch_bounds__(256) gemm_tf32_tn_forward_kernel(FM_GEMM_TC_PARAMS) {
    gemm_tc_body<true, false, TC_TF32>(FM_GEMM_TC_ARGS);
}

extern "C" __global__ void __launch_bounds__(256) gemm_tf32_tt_forward_kernel(FM_GEMM_TC_PARAMS) {
    gemm_tc_body<true, true, TC_TF32>(FM_GEMM_TC_ARGS);
}

extern "C" __global__ void __launch_bounds__(256) gemm_tf32x3_nn_forward_kernel(FM_GEMM_TC_PARAMS) {
    gemm_tc_body<false, false, TC_TF32X3>(FM_GEMM_TC_ARGS);
}

extern "C" __global__ void __launch_bounds__(256) gemm_tf32x3_nt_forward_kernel(FM_GEMM_TC_PARAMS) {
    gemm_tc_body<false, true, TC_TF32X3>(FM_GEMM_TC_ARGS);
}

extern "C" __global__ void __launch_bounds__(256) gemm_tf32x3_tn_forward_kernel(FM_GEMM_TC_PARAMS) {
    gemm_tc_body<true, false, TC_TF32X3>(FM_GEMM_TC_ARGS);
}

extern "C" __global__ void __launch_bounds__(256) gemm_tf32x3_tt_forward_kernel(FM_GEMM_TC_PARAMS) {
    gemm_tc_body<true, true, TC_TF32X3>(FM_GEMM_TC_ARGS);
}

extern "C" __global__ void __launch_bounds__(256) gemm_bf16_nn_forward_kernel(FM_GEMM_TC_PARAMS) {
    gemm_tc_body<false, false, TC_BF16>(FM_GEMM_TC_ARGS);
}

extern "C" __global__ void __launch_bounds__(256) gemm_bf16_nt_forward_kernel(FM_GEMM_TC_PARAMS) {
    gemm_tc_body<false, true, TC_BF16>(FM_GEMM_TC_ARGS);
}

extern "C" __global__ void __launch_bounds__(256) gemm_bf16_tn_forward_kernel(FM_GEMM_TC_PARAMS) {
    gemm_tc_body<true, false, TC_BF16>(FM_GEMM_TC_ARGS);
}

extern "C" __global__ void __launch_bounds__(256) gemm_bf16_tt_forward_kernel(FM_GEMM_TC_PARAMS) {
    gemm_tc_body<true, true, TC_BF16>(FM_GEMM_TC_ARGS);
}
