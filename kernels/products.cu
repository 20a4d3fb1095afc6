// The Products family (gpu/products.go): general and batched matrix
// products for the networks' forward and backward passes.
#include "gemm.cuh"

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
