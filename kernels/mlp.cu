// The network's fused ops: the Linear layer (matrix product with bias and
// activation in its epilogue), the bias + activation backward with the
// bias gradient's column sums, the time embedding of the input, and the
// MSE loss with its gradient.
#include "gemm.cuh"

// linear_forward_kernel: pre = x W^T + bias, y = act(pre) (gpu.Backend.Linear).
// The product is gemm_nt's tile; the epilogue adds the bias and applies the
// activation in float32 as gpu/cpu.go (z = acc + bias; silu(z) = z / (1 +
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

// bias_act_backward_kernel: dPre = dY * act'(pre) elementwise, and when
// partial is not null, partial[chunk, c] = sum over the block's rows of
// dPre[r, c] in double (bias_grad_reduce_kernel adds the chunks: dBias).
// dPre may alias dY.
// Shapes: dY, pre, dPre (rows, cols); partial (gridDim.y, cols) doubles.
// Launch: grid (ceil(cols / 32), ceil(rows / chunk)), block (32, 8): block
// (bx, by) covers columns 32 bx.. and rows chunk by .. chunk (by + 1).
extern "C" __global__ void __launch_bounds__(256)
    bias_act_backward_kernel(int act, int rows, int cols, const float* dY, const float* pre, float* dPre,
                             double* __restrict__ partial, int chunk) {
    FM_SHARED(double, colsum, [8][32]);
    int tx = (int)threadIdx.x, ty = (int)threadIdx.y;
    int c = (int)blockIdx.x * 32 + tx;
    int r0 = (int)blockIdx.y * chunk, r1 = imin(rows, r0 + chunk);
    double acc = 0.0;
    if (c < cols) {
        for (int r = r0 + ty; r < r1; r += (int)blockDim.y) {
            long long i = (long long)r * cols + c;
            float g = dY[i];
            if (act == FM_ACT_SILU) g = fm_mul(g, silu_grad_f(pre[i]));
            dPre[i] = g;
            acc += (double)g;
        }
    }
    if (!partial) return;  // uniform across the block
    colsum[ty][tx] = acc;
    __syncthreads();
    if (ty == 0 && c < cols) {
        double s = 0.0;
        for (int k = 0; k < (int)blockDim.y; k++) s += colsum[k][tx];
        partial[(long long)blockIdx.y * cols + c] = s;
    }
}

// bias_grad_reduce_kernel: dBias[c] = (float) sum_k partial[k, c], the chunks
// in order.
// Shapes: partial (chunks, cols) doubles; dBias (cols).
// Launch: 1-D, any grid (grid-stride loop over columns), block <= 256.
extern "C" __global__ void __launch_bounds__(256)
    bias_grad_reduce_kernel(const double* __restrict__ partial, int chunks, int cols, float* __restrict__ dBias) {
    for (int c = global_tid(); c < cols; c += grid_stride()) {
        double s = 0.0;
        for (int k = 0; k < chunks; k++) s += partial[(long long)k * cols + c];
        dBias[c] = (float)s;
    }
}

// embed_input_forward_kernel: out = [x | emb(t)] row by row
// (gpu.Backend.EmbedInput): out[r, 0:d] = x[r]; with freqs = 0,
// out[r, d] = t[r]; otherwise out[r, d + j] = sin(scale t w_j) and
// out[r, d + freqs + j] = cos(scale t w_j), w_j = maxPeriod^(-j / freqs),
// in double as gpu/cpu.go (the argument reaches scale, about 1e3).
// Shapes: x (rows, d); t (rows); out (rows, d + max(1, 2 freqs)).
// Launch: 1-D, any grid (grid-stride loop), block <= 256.
extern "C" __global__ void __launch_bounds__(256)
    embed_input_forward_kernel(int rows, int d, const float* __restrict__ x, const float* __restrict__ t, int freqs,
                               double scale, double maxPeriod, float* __restrict__ out) {
    int w = d + (freqs == 0 ? 1 : 2 * freqs);
    int n = rows * w;
    for (int i = global_tid(); i < n; i += grid_stride()) {
        int r = i / w, c = i % w;
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
// 2 scale (float32, as gpu/cpu.go), and partial[b] = sum over block b's
// elements of (pred - target)^2 in double; sum_final_reduce_kernel(scale)
// turns the partials into the loss. grad may alias pred.
// Shapes: pred, target, grad (n); partial (gridDim.x) doubles.
// Launch: 1-D grid (fixed by n), 256 threads (a multiple of 32).
extern "C" __global__ void __launch_bounds__(256)
    mse_loss_backward_kernel(const float* pred, const float* __restrict__ target, float g2, float* grad, int n,
                             double* __restrict__ partial) {
    double acc = 0.0;
    for (int i = global_tid(); i < n; i += grid_stride()) {
        float e = fm_sub(pred[i], target[i]);
        grad[i] = fm_mul(g2, e);
        acc += (double)e * (double)e;
    }
    acc = block_sum_d(acc);
    if (threadIdx.x == 0) partial[blockIdx.x] = acc;
}
