// The ODE family (gpu/ode.go): the batched updates of the samplers, the
// Euler step, the Runge-Kutta and Dopri5 stage combinations, Dopri5's error
// norm, and the likelihood's divergence accumulation and probe vectors.
#include "common.cuh"

// axpy_update_kernel: y[i] += alpha x[i] (the Euler step x <- x + h v),
// rounded as the CPU backend: y + fl(alpha x), no fused multiply-add. x may
// equal y.
// Shapes: x, y (n). Launch: 1-D, any grid (FM_VEC elements a thread per
// pass of a grid-stride loop), block <= 256.
extern "C" __global__ void __launch_bounds__(256)
    axpy_update_kernel(float alpha, const float* x, float* y, int n) {
    const long long stride = grid_stride();
    for (long long i0 = global_tid(); i0 < n; i0 += FM_VEC * stride) {
        float v[FM_VEC];
        FM_UNROLL
        for (int u = 0; u < FM_VEC; u++) {
            long long i = i0 + u * stride;
            if (i < n) v[u] = fm_add(y[i], fm_mul(alpha, x[i]));
        }
        FM_UNROLL
        for (int u = 0; u < FM_VEC; u++) {
            long long i = i0 + u * stride;
            if (i < n) y[i] = v[u];
        }
    }
}

// The stage operands of lin_comb_update_kernel and error_norm_reduce_kernel:
// up to gpu.MaxStages = 7 stage buffers and their coefficients, passed as
// scalars; a null pointer (coefficient 0) skips its stage.
#define FM_STAGE_PARAMS                                                                                      \
    const float *__restrict__ k0, const float *__restrict__ k1, const float *__restrict__ k2,                \
        const float *__restrict__ k3, const float *__restrict__ k4, const float *__restrict__ k5,             \
        const float *__restrict__ k6, float c0, float c1, float c2, float c3, float c4, float c5, float c6

// stage_sum: sum_j c_j k_j[i] over the present stages, in stage order and
// float32 rounding as the CPU backend.
FM_DEVICE float stage_sum(long long i, const float* const ks[7], const float cs[7]) {
    float s = 0.0f;
    FM_UNROLL
    for (int j = 0; j < 7; j++)
        if (ks[j]) s = fm_add(s, fm_mul(cs[j], ks[j][i]));
    return s;
}

// lin_comb_update_kernel: dst[i] = x[i] + h sum_j c_j k_j[i] (the Runge-Kutta
// and Dopri5 stage combinations). dst may alias x.
// Shapes: dst, x, k_j (n). Launch: 1-D, any grid (FM_VEC elements a thread
// per pass of a grid-stride loop), block <= 256.
extern "C" __global__ void __launch_bounds__(256)
    lin_comb_update_kernel(float* dst, const float* x, float h, FM_STAGE_PARAMS, int n) {
    const float* const ks[7] = {k0, k1, k2, k3, k4, k5, k6};
    const float cs[7] = {c0, c1, c2, c3, c4, c5, c6};
    const long long stride = grid_stride();
    for (long long i0 = global_tid(); i0 < n; i0 += FM_VEC * stride) {
        float v[FM_VEC];
        FM_UNROLL
        for (int u = 0; u < FM_VEC; u++) {
            long long i = i0 + u * stride;
            if (i < n) v[u] = fm_add(x[i], fm_mul(h, stage_sum(i, ks, cs)));
        }
        FM_UNROLL
        for (int u = 0; u < FM_VEC; u++) {
            long long i = i0 + u * stride;
            if (i < n) dst[i] = v[u];
        }
    }
}

// error_norm_reduce_kernel: Dopri5's error norm in one pass:
//   partial[b] = sum over block b's elements of (e_i / sc_i)^2 in double,
//   e_i = h sum_j c_j k_j[i],  sc_i = atol + rtol max(|x_i|, |xNew_i|).
// the last block (last_block_of) adds the partials as
// sum_final_reduce_kernel does and writes out[0] = (float) sum.
// Shapes: x, xNew, k_j (n); partial (gridDim.x) doubles; counter (1), 0
// before the launch (and after it); out (1).
// Launch: 1-D grid (fixed by n, not the device), 256 threads (a multiple of
// 32: block_sum_d).
extern "C" __global__ void __launch_bounds__(256)
    error_norm_reduce_kernel(const float* __restrict__ x, const float* __restrict__ xNew, float h, FM_STAGE_PARAMS,
                             float rtol, float atol, int n, double* __restrict__ partial,
                             unsigned* __restrict__ counter, float* __restrict__ out) {
    const float* const ks[7] = {k0, k1, k2, k3, k4, k5, k6};
    const float cs[7] = {c0, c1, c2, c3, c4, c5, c6};
    double acc = 0.0;
    for (long long i = global_tid(); i < n; i += grid_stride()) {
        float e = fm_mul(stage_sum(i, ks, cs), h);
        float sc = fm_add(atol, fm_mul(rtol, fmax32(fabs32(x[i]), fabs32(xNew[i]))));
        double q = (double)e / (double)sc;
        acc += q * q;
    }
    acc = block_sum_d(acc);
    if (threadIdx.x == 0) partial[blockIdx.x] = acc;
    if (!last_block_of(counter, gridDim.x)) return;
    acc = final_sum_d(partial, (int)gridDim.x);
    if (threadIdx.x == 0) out[0] = (float)acc;
}

// row_dot_forward_kernel: out[r] = alpha sum_c a[r, c] b[r, c] (+ beta out[r]
// when beta != 0; out is not read when beta = 0): the divergence
// accumulation of the likelihood ODE. The dot product is accumulated in
// double, then rounded and combined in float32 as the CPU backend.
// Shapes: a, b (rows, cols) row-major; out (rows).
// Launch: 1-D, one warp per row: ceil(rows / 8) blocks of 256 threads.
extern "C" __global__ void __launch_bounds__(256)
    row_dot_forward_kernel(int rows, int cols, float alpha, const float* __restrict__ a, const float* __restrict__ b,
                           float beta, float* __restrict__ out) {
    int r = (int)blockIdx.x * ((int)blockDim.x / 32) + (int)threadIdx.x / 32;
    int lane = (int)threadIdx.x & 31;
    if (r >= rows) return;  // uniform across the warp
    const float* ar = a + (long long)r * cols;
    const float* br = b + (long long)r * cols;
    double s = 0.0;
    for (long long c = lane; c < cols; c += 32) s += (double)ar[c] * (double)br[c];
    s = warp_sum_d(s);
    if (lane == 0) {
        float v = fm_mul(alpha, (float)s);
        if (beta != 0.0f) v = fm_add(v, fm_mul(beta, out[r]));
        out[r] = v;
    }
}

// unit_column_forward_kernel: e[r, c] = (c == j) for a rows x cols matrix:
// the probe vectors of the exact divergence.
// Shapes: e (rows, cols) row-major, n = rows * cols, 0 <= j < cols.
// Launch: 1-D, any grid (grid-stride loop), block <= 256.
extern "C" __global__ void __launch_bounds__(256)
    unit_column_forward_kernel(float* e, int n, int cols, int j) {
    for (long long i = global_tid(); i < n; i += grid_stride()) e[i] = ((int)i % cols == j) ? 1.0f : 0.0f;
}
