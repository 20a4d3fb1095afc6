// The Dense family (gpu/dense.go): the Linear layer (matrix product with
// bias and activation in its epilogue), the bias + activation backward with
// the bias gradient's column sums, the activation alone, the network's input encodings (the time
// embedding, one-hot labels), and the MSE loss with its gradient.
#include "gemm.cuh"
#include "gemm_tc.cuh"

// linear_forward_kernel: pre = x W^T + bias, y = act(pre) (gpu.Dense.Linear).
// The product is gemm_nt's tile; the epilogue adds the bias and applies the
// activation in float32 as the CPU backend (z = acc + bias; silu(z) = z / (1 +
// exp(-z))). pre may be null; y may equal pre only when act is none; bias
// may be null (no bias).
// Shapes: x (rows, in) with row stride ldx; W (out, in) (PyTorch layout);
// bias (out); pre, y (rows, out).
// Launch: grid (ceil(out / 64), ceil(rows / 64)), block (16, 16).
extern "C" __global__ void __launch_bounds__(256)
    linear_forward_kernel(int rows, int in, int out, const float* __restrict__ x, int ldx, const float* __restrict__ W,
                          const float* __restrict__ bias, int act, float* pre, float* y) {
    float acc[4][4];
    gemm_tile<false, true>(rows, out, in, x, ldx, W, in, acc);
    const int row0 = (int)blockIdx.y * GEMM_BM + 4 * (int)threadIdx.y, col0 = (int)blockIdx.x * GEMM_BN + 4 * (int)threadIdx.x;
    FM_UNROLL
    for (int i = 0; i < 4; i++) {
        int r = row0 + i;
        if (r >= rows) continue;
        FM_UNROLL
        for (int j = 0; j < 4; j++) {
            int c = col0 + j;
            if (c >= out) continue;
            long long o = (long long)r * out + c;
            float z = acc[i][j];
            if (bias) z = fm_add(z, bias[c]);
            if (pre) pre[o] = z;
            y[o] = act == FM_ACT_SILU ? silu_f(z) : z;
        }
    }
}

// linear_backward_kernel: the backward of a Linear layer after its
// activation's (gpu.Dense.LinearBackward), the weight and the input
// gradients in one launch:
//   blocks [0, wBlocks): dW = dPre^T x (out x in) by 64 x 64 tiles, tile t
//     of the row-major tile grid over dW in blocks t splits .. t splits +
//     splits - 1, block z of them over the rows [z kSlice, (z + 1) kSlice)
//     (split-K: the weight gradient's k is the batch); the blocks of tile
//     column 0 also sum dPre's columns (dBias) in double. With splits > 1
//     each block writes its partial tile (partial, float) and bias partial
//     (biasPartial, double), and the last block of the tile (last_block_of,
//     counter t) adds them in order z = 0, 1, ... in double and rounds once
//     (as gemm_split_reduce_kernel): the same bits on every run;
//   blocks [wBlocks, gridDim.x): dX = ((dPre W)[:, :cols] + beta dX) *
//     act'(preX) by 64 x 64 tiles of the rows x cols output, row-major
//     tile order; the product in float32 (dX not read for beta = 0), then
//     one float32 multiply by silu'(preX) as bias_act_backward_kernel.
// wBlocks = 0 (dW null) computes dX only; dX null launches wBlocks blocks.
// Shapes: dPre (rows, out); x (rows, in), row stride ldx; W (out, in); dW
// (out, in); dBias (out) or null; partial (splits, out, in) floats,
// biasPartial (splits, out) doubles, counters (tiles of dW), 0 before the
// launch (and after it), when splits > 1; preX, dX (rows, cols), cols <=
// in; preX not read for act none. dX does not overlap dPre, dW or dBias.
// Launch: grid (wBlocks + ceil(rows / 64) ceil(cols / 64)), block (16, 16).
extern "C" __global__ void __launch_bounds__(256)
    linear_backward_kernel(int rows, int in, int out, const float* __restrict__ dPre, const float* __restrict__ x,
                           int ldx, const float* __restrict__ W, float* __restrict__ dW, float* __restrict__ dBias,
                           int splits, int kSlice, float* __restrict__ partial, double* __restrict__ biasPartial,
                           unsigned* __restrict__ counters, int wBlocks, int cols, int act,
                           const float* __restrict__ preX, float beta, float* __restrict__ dX) {
    const int tid = (int)threadIdx.y * 16 + (int)threadIdx.x;
    const int b = (int)blockIdx.x;
    float acc[4][4];
    if (b >= wBlocks) {
        const int bb = b - wBlocks, tilesX = (cols + GEMM_BN - 1) / GEMM_BN;
        const int row0 = (bb / tilesX) * GEMM_BM, col0 = (bb % tilesX) * GEMM_BN;
        double unused = 0.0;
        gemm_tile_at<false, false>(rows, cols, out, dPre, out, W, in, row0, col0, acc, false, unused);
        FM_UNROLL
        for (int i = 0; i < 4; i++) {
            int r = row0 + 4 * (int)threadIdx.y + i;
            if (r >= rows) continue;
            FM_UNROLL
            for (int j = 0; j < 4; j++) {
                int c = col0 + 4 * (int)threadIdx.x + j;
                if (c >= cols) continue;
                long long o = (long long)r * cols + c;
                float g = acc[i][j];
                if (beta != 0.0f) g += beta * dX[o];
                if (act == FM_ACT_SILU) g = fm_mul(g, silu_grad_f(preX[o]));
                dX[o] = g;
            }
        }
        return;
    }
    const int z = b % splits, t = b / splits, tilesX = (in + GEMM_BN - 1) / GEMM_BN;
    const int row0 = (t / tilesX) * GEMM_BM, col0 = (t % tilesX) * GEMM_BN;
    const long long k0 = (long long)z * kSlice;
    const int kLen = rows - k0 < kSlice ? (int)(rows - k0) : kSlice;
    const bool sumBias = dBias != nullptr && col0 == 0;  // uniform across the block
    double asum = 0.0;
    gemm_tile_at<true, false>(out, in, kLen, dPre + k0 * out, out, x + k0 * ldx, ldx, row0, col0, acc, sumBias,
                              asum);
    const int r0 = row0 + 4 * (int)threadIdx.y, c0 = col0 + 4 * (int)threadIdx.x;
    const int br = row0 + tid;  // the bias row of threads tid < 64
    if (splits == 1) {
        FM_UNROLL
        for (int i = 0; i < 4; i++) {
            if (r0 + i >= out) continue;
            FM_UNROLL
            for (int j = 0; j < 4; j++)
                if (c0 + j < in) dW[(long long)(r0 + i) * in + c0 + j] = acc[i][j];
        }
        if (sumBias && tid < GEMM_BM && br < out) dBias[br] = (float)asum;
        return;
    }
    const long long mn = (long long)out * in;
    FM_UNROLL
    for (int i = 0; i < 4; i++) {
        if (r0 + i >= out) continue;
        FM_UNROLL
        for (int j = 0; j < 4; j++)
            if (c0 + j < in) partial[z * mn + (long long)(r0 + i) * in + c0 + j] = acc[i][j];
    }
    if (sumBias && tid < GEMM_BM && br < out) biasPartial[(long long)z * out + br] = asum;
    if (!last_block_of(counters + t, (unsigned)splits)) return;
    FM_UNROLL
    for (int i = 0; i < 4; i++) {
        if (r0 + i >= out) continue;
        FM_UNROLL
        for (int j = 0; j < 4; j++) {
            if (c0 + j >= in) continue;
            const long long e = (long long)(r0 + i) * in + c0 + j;
            double s = 0.0;
            for (int q = 0; q < splits; q++) s += (double)fm_ldcg(partial + q * mn + e);
            dW[e] = (float)s;
        }
    }
    if (sumBias && tid < GEMM_BM && br < out) {
        double s = 0.0;
        for (int q = 0; q < splits; q++) s += fm_ldcg(biasPartial + (long long)q * out + br);
        dBias[br] = (float)s;
    }
}

// linear_{tf32,tf32x3,bf16}_forward_kernel: linear_forward_kernel on the
// tensor cores (gemm_tc.cuh: tf32, one TF32 product; tf32x3, the 3xTF32
// split; bf16, one product of the operands rounded to bf16), the same
// epilogue.
// Shapes: as linear_forward_kernel.
// Preconditions: in >= 1; x and W 16-byte aligned, ldx and in multiples of 4.
// Launch: grid (ceil(out / 128), ceil(rows / 128)), block (256, 1, 1),
// TC_SMEM_BYTES of dynamic shared memory.
template <int P>
FM_DEVICE void linear_tc_forward(int rows, int in, int out, const float* __restrict__ x, int ldx,
                                 const float* __restrict__ W, const float* __restrict__ bias, int act, float* pre,
                                 float* y) {
    const int row0 = (int)blockIdx.y * TC_BM, col0 = (int)blockIdx.x * TC_BN;
    float acc[TC_MT][TC_NT][4];
    double unused = 0.0;
    tc_tile<false, true, P>(rows, out, in, x, ldx, W, in, row0, col0, acc, false, unused);
    tc_epilogue(acc, rows, out, row0, col0, [&](int r, int c, float v) {
        const long long o = (long long)r * out + c;
        float z = v;
        if (bias) z = fm_add(z, bias[c]);
        if (pre) pre[o] = z;
        y[o] = act == FM_ACT_SILU ? silu_f(z) : z;
    });
}

#define FM_LINEAR_TC_PARAMS                                                                                        \
    int rows, int in, int out, const float *__restrict__ x, int ldx, const float *__restrict__ W,                  \
        const float *__restrict__ bias, int act, float *pre, float *y
#define FM_LINEAR_TC_ARGS rows, in, out, x, ldx, W, bias, act, pre, y

extern "C" __global__ void __launch_bounds__(256) linear_tf32_forward_kernel(FM_LINEAR_TC_PARAMS) {
    linear_tc_forward<TC_TF32>(FM_LINEAR_TC_ARGS);
}

extern "C" __global__ void __launch_bounds__(256) linear_tf32x3_forward_kernel(FM_LINEAR_TC_PARAMS) {
    linear_tc_forward<TC_TF32X3>(FM_LINEAR_TC_ARGS);
}

extern "C" __global__ void __launch_bounds__(256) linear_bf16_forward_kernel(FM_LINEAR_TC_PARAMS) {
    linear_tc_forward<TC_BF16>(FM_LINEAR_TC_ARGS);
}

// linear_{tf32,tf32x3,bf16}_backward_kernel: linear_backward_kernel on the
// tensor cores, with 128 x 128 tiles: blocks [0, wBlocks) the weight
// gradient dW = dPre^T x by tiles of dW, tile t in blocks t splits .. t
// splits + splits - 1 over the row slices of kSlice (split-K, the partials
// added by the tile's last block in order, in double), the blocks of tile
// column 0 summing dBias beside; blocks [wBlocks, gridDim.x) the input
// gradient dX = ((dPre W)[:, :cols] + beta dX) * act'(preX) by tiles of
// the rows x cols output. Numbers as linear_backward_kernel but for the
// products' precision.
// Shapes: as linear_backward_kernel, with tiles of 128 x 128 (counters:
// the tiles of dW; kSlice a multiple of 32).
// Preconditions: rows, in, out >= 1; dPre 16-byte aligned and out a
// multiple of 4; with wBlocks > 0, x 16-byte aligned and ldx a multiple of
// 4; with input-gradient blocks, W 16-byte aligned and in a multiple of 4.
// Launch: grid (wBlocks + ceil(rows / 128) ceil(cols / 128)), block (256, 1,
// 1), TC_SMEM_BYTES of dynamic shared memory.
template <int P>
FM_DEVICE void linear_tc_backward(int rows, int in, int out, const float* __restrict__ dPre,
                                  const float* __restrict__ x, int ldx, const float* __restrict__ W,
                                  float* __restrict__ dW, float* __restrict__ dBias, int splits, int kSlice,
                                  float* __restrict__ partial, double* __restrict__ biasPartial,
                                  unsigned* __restrict__ counters, int wBlocks, int cols, int act,
                                  const float* __restrict__ preX, float beta, float* __restrict__ dX) {
    const int tid = (int)threadIdx.x;
    const int b = (int)blockIdx.x;
    float acc[TC_MT][TC_NT][4];
    if (b >= wBlocks) {
        const int bb = b - wBlocks, tilesX = (cols + TC_BN - 1) / TC_BN;
        const int row0 = (bb / tilesX) * TC_BM, col0 = (bb % tilesX) * TC_BN;
        double unused = 0.0;
        tc_tile<false, false, P>(rows, cols, out, dPre, out, W, in, row0, col0, acc, false, unused);
        tc_epilogue(acc, rows, cols, row0, col0, [&](int r, int c, float v) {
            const long long o = (long long)r * cols + c;
            float g = v;
            if (beta != 0.0f) g += beta * dX[o];
            if (act == FM_ACT_SILU) g = fm_mul(g, silu_grad_f(preX[o]));
            dX[o] = g;
        });
        return;
    }
    const int z = b % splits, t = b / splits, tilesX = (in + TC_BN - 1) / TC_BN;
    const int row0 = (t / tilesX) * TC_BM, col0 = (t % tilesX) * TC_BN;
    const long long k0 = (long long)z * kSlice;
    const int kLen = rows - k0 < kSlice ? (int)(rows - k0) : kSlice;
    const bool sumBias = dBias != nullptr && col0 == 0;  // uniform across the block
    double asum = 0.0;
    tc_tile<true, false, P>(out, in, kLen, dPre + k0 * out, out, x + k0 * ldx, ldx, row0, col0, acc, sumBias, asum);
    const int br = row0 + tid;  // the bias row of threads tid < 128
    if (splits == 1) {
        tc_epilogue(acc, out, in, row0, col0, [&](int r, int c, float v) { dW[(long long)r * in + c] = v; });
        if (sumBias && tid < TC_BM && br < out) dBias[br] = (float)asum;
        return;
    }
    const long long mn = (long long)out * in;
    tc_epilogue(acc, out, in, row0, col0, [&](int r, int c, float v) { partial[z * mn + (long long)r * in + c] = v; });
    if (sumBias && tid < TC_BM && br < out) biasPartial[(long long)z * out + br] = asum;
    if (!last_block_of(counters + t, (unsigned)splits)) return;
    tc_epilogue(acc, out, in, row0, col0, [&](int r, int c, float) {
        const long long e = (long long)r * in + c;
        double s = 0.0;
        for (int q = 0; q < splits; q++) s += (double)fm_ldcg(partial + q * mn + e);
        dW[e] = (float)s;
    });
    if (sumBias && tid < TC_BM && br < out) {
        double s = 0.0;
        for (int q = 0; q < splits; q++) s += fm_ldcg(biasPartial + (long long)q * out + br);
        dBias[br] = (float)s;
    }
}

#define FM_LINEAR_BACKWARD_TC_PARAMS                                                                               \
    int rows, int in, int out, const float *__restrict__ dPre, const float *__restrict__ x, int ldx,               \
        const float *__restrict__ W, float *__restrict__ dW, float *__restrict__ dBias, int splits, int kSlice,    \
        float *__restrict__ partial, double *__restrict__ biasPartial, unsigned *__restrict__ counters,            \
        int wBlocks, int cols, int act, const float *__restrict__ preX, float beta, float *__restrict__ dX
#define FM_LINEAR_BACKWARD_TC_ARGS                                                                                 \
    rows, in, out, dPre, x, ldx, W, dW, dBias, splits, kSlice, partial, biasPartial, counters, wBlocks, cols, act, \
        preX, beta, dX

extern "C" __global__ void __launch_bounds__(256) linear_tf32_backward_kernel(FM_LINEAR_BACKWARD_TC_PARAMS) {
    linear_tc_backward<TC_TF32>(FM_LINEAR_BACKWARD_TC_ARGS);
}

extern "C" __global__ void __launch_bounds__(256) linear_tf32x3_backward_kernel(FM_LINEAR_BACKWARD_TC_PARAMS) {
    linear_tc_backward<TC_TF32X3>(FM_LINEAR_BACKWARD_TC_ARGS);
}

extern "C" __global__ void __launch_bounds__(256) linear_bf16_backward_kernel(FM_LINEAR_BACKWARD_TC_PARAMS) {
    linear_tc_backward<TC_BF16>(FM_LINEAR_BACKWARD_TC_ARGS);
}

// bias_act_backward_kernel: dPre = dY * act'(pre) elementwise, and when
// dBias is not null, dBias = column sums of dPre in one pass: block (bx,
// by) writes partial[by, c] = sum over its rows of dPre[r, c] in double,
// and the last block of column block bx (last_block_of, counter bx) adds
// the chunks in order and rounds once, as bias_grad_reduce_kernel does.
// dPre may alias dY.
// Shapes: dY, pre, dPre (rows, cols); partial (gridDim.y, cols) doubles;
// counters (gridDim.x), 0 before the launch (and after it); dBias (cols).
// Launch: grid (ceil(cols / 32), ceil(rows / chunk)), block (32, 8): block
// (bx, by) covers columns 32 bx.. and rows chunk by .. chunk (by + 1).
extern "C" __global__ void __launch_bounds__(256)
    bias_act_backward_kernel(int act, int rows, int cols, const float* dY, const float* pre, float* dPre,
                             double* __restrict__ partial, int chunk, unsigned* __restrict__ counters,
                             float* __restrict__ dBias) {
    FM_SHARED(double, colsum, [8][32]);
    int tx = (int)threadIdx.x, ty = (int)threadIdx.y;
    int c = (int)blockIdx.x * 32 + tx;
    const long long r0 = (long long)blockIdx.y * chunk, r1 = r0 + chunk < rows ? r0 + chunk : rows;
    double acc = 0.0;
    if (c < cols) {
        for (long long r = r0 + ty; r < r1; r += blockDim.y) {
            long long i = r * cols + c;
            float g = dY[i];
            if (act == FM_ACT_SILU) g = fm_mul(g, silu_grad_f(pre[i]));
            dPre[i] = g;
            acc += (double)g;
        }
    }
    if (!dBias) return;  // uniform across the block
    colsum[ty][tx] = acc;
    __syncthreads();
    if (ty == 0 && c < cols) {
        double s = 0.0;
        for (int k = 0; k < (int)blockDim.y; k++) s += colsum[k][tx];
        partial[(long long)blockIdx.y * cols + c] = s;
    }
    if (!last_block_of(counters + blockIdx.x, gridDim.y)) return;
    if (ty == 0 && c < cols) {
        double s = 0.0;
        for (int k = 0; k < (int)gridDim.y; k++) s += fm_ldcg(partial + (long long)k * cols + c);
        dBias[c] = (float)s;
    }
}

// embed_input_forward_kernel: out = [x | emb(t)] row by row
// (gpu.Dense.EmbedInput): out[r, 0:d] = x[r]; with freqs = 0,
// out[r, d] = t[r]; otherwise out[r, d + j] = sin(scale t w_j) and
// out[r, d + freqs + j] = cos(scale t w_j), w_j = maxPeriod^(-j / freqs),
// in double as the CPU backend (the argument reaches scale, about 1e3).
// Shapes: x (rows, d); t (rows); out (rows, d + max(1, 2 freqs)).
// Launch: 1-D, any grid (grid-stride loop), block <= 256.
extern "C" __global__ void __launch_bounds__(256)
    embed_input_forward_kernel(int rows, int d, const float* __restrict__ x, const float* __restrict__ t, int freqs,
                               double scale, double maxPeriod, float* __restrict__ out) {
    const int w = d + (freqs == 0 ? 1 : 2 * freqs);
    const int n = rows * w;
    for (long long i = global_tid(); i < n; i += grid_stride()) {
        const int e = (int)i, r = e / w, c = e % w;
        if (c < d) {
            out[i] = x[(long long)r * d + c];
        } else if (freqs == 0) {
            out[i] = t[r];
        } else {
            int j = c - d;
            bool is_cos = j >= freqs;
            if (is_cos) j -= freqs;
            double f = exp(-log(maxPeriod) * (double)j / (double)freqs);
            double arg = scale * (double)t[r] * f;
            out[i] = (float)(is_cos ? cos(arg) : sin(arg));
        }
    }
}

// mse_loss_backward_kernel: grad[i] = g2 (pred[i] - target[i]) with g2 =
// 2 scale (float32, as the CPU backend), and the loss scale sum (pred -
// target)^2, summed in double in one pass (last_block_of): each block's
// partial to partial[b], and the last block adds them as
// sum_final_reduce_kernel does and writes loss[0] = (float)(scale sum), or
// with accumulate loss[0] += that (rounded as the CPU backend: the float
// loss, then one float addition; gpu.Dense.MSELossAccumulate). grad may
// alias pred.
// Shapes: pred, target, grad (n); partial (gridDim.x) doubles; counter (1),
// 0 before the launch (and after it); loss (1).
// Launch: 1-D grid (fixed by n), 256 threads (a multiple of 32).
extern "C" __global__ void __launch_bounds__(256)
    mse_loss_backward_kernel(const float* pred, const float* __restrict__ target, float g2, float* grad, int n,
                             double* __restrict__ partial, unsigned* __restrict__ counter, double scale,
                             float* __restrict__ loss, int accumulate) {
    double acc = 0.0;
    for (long long i = global_tid(); i < n; i += grid_stride()) {
        float e = fm_sub(pred[i], target[i]);
        grad[i] = fm_mul(g2, e);
        acc += (double)e * (double)e;
    }
    acc = block_sum_d(acc);
    if (threadIdx.x == 0) partial[blockIdx.x] = acc;
    if (!last_block_of(counter, gridDim.x)) return;
    acc = final_sum_d(partial, (int)gridDim.x);
    if (threadIdx.x == 0) {
        float l = (float)(scale * acc);
        loss[0] = accumulate ? fm_add(loss[0], l) : l;
    }
}

// activate_forward_kernel: y[i] = act(x[i]) (gpu.Dense.Activate), as the
// CPU backend in float32: silu(z) = z / (1 + exp(-z)); none copies. y may
// alias x.
// Shapes: x, y (n). Launch: 1-D, any grid (FM_VEC elements a thread per
// pass of a grid-stride loop), block <= 256.
extern "C" __global__ void __launch_bounds__(256) activate_forward_kernel(int act, const float* x, float* y, int n) {
    const long long stride = grid_stride();
    for (long long i0 = global_tid(); i0 < n; i0 += FM_VEC * stride) {
        float v[FM_VEC];
        FM_UNROLL
        for (int u = 0; u < FM_VEC; u++) {
            long long i = i0 + u * stride;
            if (i < n) v[u] = x[i];
        }
        FM_UNROLL
        for (int u = 0; u < FM_VEC; u++) {
            long long i = i0 + u * stride;
            if (i < n) y[i] = act == FM_ACT_SILU ? silu_f(v[u]) : v[u];
        }
    }
}

// act_backward_kernel: dPre = dY * act'(pre) elementwise (gpu.Dense.
// BiasActBackward without a bias gradient: any rows x cols as one run of
// n elements, every thread busy), rounded as bias_act_backward_kernel.
// dPre may alias dY.
// Shapes: dY, pre, dPre (n). Launch: 1-D, any grid (FM_VEC elements a
// thread per pass of a grid-stride loop), block <= 256.
extern "C" __global__ void __launch_bounds__(256)
    act_backward_kernel(int act, int n, const float* dY, const float* pre, float* dPre) {
    const long long stride = grid_stride();
    for (long long i0 = global_tid(); i0 < n; i0 += FM_VEC * stride) {
        float v[FM_VEC];
        FM_UNROLL
        for (int u = 0; u < FM_VEC; u++) {
            long long i = i0 + u * stride;
            if (i < n) v[u] = act == FM_ACT_SILU ? fm_mul(dY[i], silu_grad_f(pre[i])) : dY[i];
        }
        FM_UNROLL
        for (int u = 0; u < FM_VEC; u++) {
            long long i = i0 + u * stride;
            if (i < n) dPre[i] = v[u];
        }
    }
}

// one_hot_forward_kernel: out[r, c] = 1 if labels[r] == c else 0
// (gpu.Dense.OneHot): a label that is not one of 0 .. classes-1 exactly
// (negative, too large, fractional, NaN) gives a zero row.
// Shapes: labels (rows); out (rows, classes).
// Launch: 1-D, any grid (grid-stride loop), block <= 256.
extern "C" __global__ void __launch_bounds__(256)
    one_hot_forward_kernel(int rows, int classes, const float* __restrict__ labels, float* __restrict__ out) {
    const int n = rows * classes;
    for (long long i = global_tid(); i < n; i += grid_stride()) {
        const int e = (int)i, r = e / classes, c = e - r * classes;
        out[i] = labels[r] == (float)c ? 1.0f : 0.0f;
    }
}
