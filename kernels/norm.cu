// Group normalization over NCHW images (gpu.GroupNormShape): one block per
// (image, group), whose C/G channels of HW positions are one contiguous
// run of n = (C/G) HW floats. Statistics and gradient sums are accumulated
// in double in a fixed order (block and warp reductions of a fixed shape,
// then the images in order), so every result is deterministic.
#include "common.cuh"

// block_allsum_d: the sum of v over a 1-D block, returned to every thread
// (each adds the warps' sums in the same order: the same bits everywhere).
// Preconditions: blockDim.x is a multiple of 32 and at most 1024; every
// thread calls it; it may be called repeatedly (it ends with a barrier).
FM_DEVICE double block_allsum_d(double v) {
    FM_SHARED(double, part, [32]);
    int lane = (int)threadIdx.x & 31, w = (int)threadIdx.x >> 5, nw = (int)blockDim.x >> 5;
    v = warp_sum_d(v);
    if (lane == 0) part[w] = v;
    __syncthreads();
    double t = 0.0;
    for (int i = 0; i < nw; i++) t += part[i];
    __syncthreads();
    return t;
}

// group_norm_forward_kernel: for image b and group g (block b G + g), over
// its elements x_e, e < n = (C/G) HW:
//   mean = sum x_e / n,  var = sum (x_e - mean)^2 / n (two passes, double),
//   rstd = 1 / sqrt(var + eps) (double, rounded to float),
//   y_e = ((x_e - mean) rstd) gamma[c] + beta[c] in float32, c = e's channel;
// mean[b G + g] and rstd[b G + g] are written (float) for the backward pass.
// y may alias x.
// Shapes: x, y (batch, C, HW); gamma, beta (C); mean, rstd (batch, G);
// C % G == 0; batch C HW < 2^31.
// Launch: grid (batch G), 256 threads (a multiple of 32).
extern "C" __global__ void __launch_bounds__(256)
    group_norm_forward_kernel(int C, int HW, int G, float eps, const float* x, const float* __restrict__ gamma,
                              const float* __restrict__ beta, float* y, float* __restrict__ mean,
                              float* __restrict__ rstd) {
    const int bg = (int)blockIdx.x, cpg = C / G, n = cpg * HW;
    const int c0 = (bg % G) * cpg;
    const long long base = (long long)bg * n;  // (b C + g cpg) HW
    const int step = (int)blockDim.x;
    double s = 0.0;
    for (int e = threadIdx.x; e < n; e += step) s += (double)x[base + e];
    const double mu = block_allsum_d(s) / (double)n;
    double ss = 0.0;
    for (int e = threadIdx.x; e < n; e += step) {
        double d = (double)x[base + e] - mu;
        ss += d * d;
    }
    const double var = block_allsum_d(ss) / (double)n;
    const float mf = (float)mu, rf = (float)(1.0 / sqrt(var + (double)eps));
    if (threadIdx.x == 0) {
        mean[bg] = mf;
        rstd[bg] = rf;
    }
    // Element e = ch HW + p: stepping e by blockDim.x steps (ch, p) by
    // (qc, rp) with a carry.
    const int qc = step / HW, rp = step % HW;
    int ch = (int)threadIdx.x / HW, p = (int)threadIdx.x % HW;
    for (int e = threadIdx.x; e < n; e += step) {
        int c = c0 + ch;
        float xh = fm_mul(fm_sub(x[base + e], mf), rf);
        y[base + e] = fm_add(fm_mul(xh, gamma[c]), beta[c]);
        ch += qc;
        p += rp;
        if (p >= HW) {
            p -= HW;
            ch++;
        }
    }
}

// group_norm_backward_kernel: the input gradient of GroupNorm, and per image
// the parameter gradients' partial sums (group_norm_param_backward_reduce_
// kernel adds the images). For block b G + g, with xh_e = (x_e - mean) rstd
// (float32, from the forward pass's mean and rstd) and the group's n
// elements:
//   part[b, c]        = sum_p dy[b, c, p] xh        (dgamma's term of image b)
//   part[batch + b, c] = sum_p dy[b, c, p]          (dbeta's)
//   A = sum_c gamma[c] sum_p dy / n,  B = sum_c gamma[c] sum_p dy xh / n,
//   dx_e = rstd (dy_e gamma[c] - A - xh_e B) in float32,
// the sums in double (one warp per channel, then the warps in order).
// dx may alias dy.
// Shapes: dy, x, dx (batch, C, HW); gamma (C); mean, rstd (batch, G); part
// (2 batch, C) doubles. Sizes as group_norm_forward_kernel.
// Launch: grid (batch G), 256 threads (a multiple of 32).
extern "C" __global__ void __launch_bounds__(256)
    group_norm_backward_kernel(int batch, int C, int HW, int G, const float* dy, const float* __restrict__ x,
                               const float* __restrict__ gamma, const float* __restrict__ mean,
                               const float* __restrict__ rstd, float* dx, double* __restrict__ part) {
    FM_SHARED(double, wsum, [2][32]);
    const int bg = (int)blockIdx.x, b = bg / G, cpg = C / G, n = cpg * HW;
    const int c0 = (bg % G) * cpg;
    const long long base = (long long)bg * n;
    const float mf = mean[bg], rf = rstd[bg];
    const int lane = (int)threadIdx.x & 31, w = (int)threadIdx.x >> 5, nw = (int)blockDim.x >> 5;
    // Pass 1: warp w takes channels w, w + nw, ...
    double ga = 0.0, gb = 0.0;
    for (int ch = w; ch < cpg; ch += nw) {
        const long long cb = base + (long long)ch * HW;
        double sd = 0.0, sdx = 0.0;
        for (int p = lane; p < HW; p += 32) {
            float g = dy[cb + p];
            float xh = fm_mul(fm_sub(x[cb + p], mf), rf);
            sd += (double)g;
            sdx += (double)g * (double)xh;
        }
        sd = warp_sum_d(sd);
        sdx = warp_sum_d(sdx);
        int c = c0 + ch;
        if (lane == 0) {
            part[(long long)b * C + c] = sdx;
            part[(long long)(batch + b) * C + c] = sd;
        }
        ga += (double)gamma[c] * sd;
        gb += (double)gamma[c] * sdx;
    }
    if (lane == 0) {
        wsum[0][w] = ga;
        wsum[1][w] = gb;
    }
    __syncthreads();
    double ta = 0.0, tb = 0.0;
    for (int i = 0; i < nw; i++) {
        ta += wsum[0][i];
        tb += wsum[1][i];
    }
    const float A = (float)(ta / (double)n), B = (float)(tb / (double)n);
    // Pass 2, with the (ch, p) walk of group_norm_forward_kernel.
    const int step = (int)blockDim.x;
    const int qc = step / HW, rp = step % HW;
    int ch = (int)threadIdx.x / HW, p = (int)threadIdx.x % HW;
    for (int e = threadIdx.x; e < n; e += step) {
        int c = c0 + ch;
        float xh = fm_mul(fm_sub(x[base + e], mf), rf);
        float t = fm_sub(fm_sub(fm_mul(dy[base + e], gamma[c]), A), fm_mul(xh, B));
        dx[base + e] = fm_mul(rf, t);
        ch += qc;
        p += rp;
        if (p >= HW) {
            p -= HW;
            ch++;
        }
    }
}

// group_norm_param_backward_reduce_kernel: dgamma[c] = sum_b part[b, c] and
// dbeta[c] = sum_b part[batch + b, c], the images in order, in double
// (zero for batch = 0).
// Shapes: part (2 batch, C) doubles; dgamma, dbeta (C).
// Launch: 1-D, any grid (grid-stride loop over channels), block <= 256.
extern "C" __global__ void __launch_bounds__(256)
    group_norm_param_backward_reduce_kernel(int batch, int C, const double* __restrict__ part,
                                            float* __restrict__ dgamma, float* __restrict__ dbeta) {
    for (int c = global_tid(); c < C; c += grid_stride()) {
        double sg = 0.0, sb = 0.0;
        for (int b = 0; b < batch; b++) {
            sg += part[(long long)b * C + c];
            sb += part[(long long)(batch + b) * C + c];
        }
        dgamma[c] = (float)sg;
        dbeta[c] = (float)sb;
    }
}
