// The Norm family (gpu/norm.go): group normalization over NCHW images
// (gpu.GroupNormShape) and its gradient, one block per (image, group),
// whose C/G channels of HW positions are one contiguous run of
// n = (C/G) HW floats. Statistics and gradient sums are accumulated
// in double in a fixed order (block and warp reductions of a fixed shape,
// then the images in order, by the last block), so every result is
// deterministic.
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
// mean[b G + g] and rstd[b G + g] are written (float) for the backward pass;
// when a is not null, a_e = act(y_e) as activate_forward_kernel
// (gpu.Norm.GroupNormAct). When xBias is not null, x_e += xBias[b, c]
// first, in place, one float32 addition (as add_channel_bias_forward_
// kernel), and the normalization is of the sum. y may be null (a not
// null): y is then not written. y may alias x; a aliases neither.
// Shapes: x, y, a (batch, C, HW); gamma, beta (C); mean, rstd (batch, G);
// xBias (batch, C); C % G == 0; batch C HW < 2^31.
// Launch: grid (batch G), 256 threads (a multiple of 32).
extern "C" __global__ void __launch_bounds__(256)
    group_norm_forward_kernel(int C, int HW, int G, float eps, float* x, const float* __restrict__ gamma,
                              const float* __restrict__ beta, float* y, float* __restrict__ mean,
                              float* __restrict__ rstd, int act, float* __restrict__ a,
                              const float* __restrict__ xBias) {
    const int bg = (int)blockIdx.x, cpg = C / G, n = cpg * HW;
    const int c0 = (bg % G) * cpg;
    const long long base = (long long)bg * n;  // (b C + g cpg) HW
    const int step = (int)blockDim.x;
    if (xBias) {
        // Each thread adds the bias to the elements it reads below.
        const float* bb = xBias + (long long)(bg / G) * C + c0;
        for (long long e = threadIdx.x; e < n; e += step) x[base + e] = fm_add(x[base + e], bb[(int)e / HW]);
    }
    double s = 0.0;
    for (long long e = threadIdx.x; e < n; e += step) s += (double)x[base + e];
    const double mu = block_allsum_d(s) / (double)n;
    double ss = 0.0;
    for (long long e = threadIdx.x; e < n; e += step) {
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
    for (long long e = threadIdx.x; e < n; e += step) {
        int c = c0 + ch;
        float xh = fm_mul(fm_sub(x[base + e], mf), rf);
        float yv = fm_add(fm_mul(xh, gamma[c]), beta[c]);
        if (y) y[base + e] = yv;
        if (a) a[base + e] = act == FM_ACT_SILU ? silu_f(yv) : yv;
        ch += qc;
        p += rp;
        if (p >= HW) {
            p -= HW;
            ch++;
        }
    }
}

// group_norm_backward_kernel: the input and parameter gradients of
// GroupNorm, of dy = dA act'(yAct) (gpu.Norm.GroupNormActBackward; act none:
// dy = dA, yAct not read; yAct null with act silu: yAct_e recomputed from
// x_e as group_norm_forward_kernel computes y_e, with beta, which is read
// only then). For block b G + g, with xh_e = (x_e - mean) rstd
// (float32, from the forward pass's mean and rstd) and the group's n
// elements:
//   part[b, c]        = sum_p dy[b, c, p] xh        (dgamma's term of image b)
//   part[batch + b, c] = sum_p dy[b, c, p]          (dbeta's)
//   A = sum_c gamma[c] sum_p dy / n,  B = sum_c gamma[c] sum_p dy xh / n,
//   dx_e = rstd (dy_e gamma[c] - A - xh_e B) in float32 (+ add_e after it,
//   one float32 addition, when add is not null),
// the sums in double (one warp per channel, then the warps in order); the
// last block (last_block_of) adds the images' parts in order: dgamma[c] =
// sum_b part[b, c], dbeta[c] = sum_b part[batch + b, c]. dy_e = dA_e
// act'(yAct_e) as bias_act_backward_kernel. When dxSum is not null,
// dxSum[b, c] = sum_p dx[b, c, p] in double (as channel_sum_reduce_kernel).
// dx may alias dA or add (each element is read before it is written), not
// yAct.
// Shapes: dA, yAct, x, add, dx (batch, C, HW); gamma, beta, dgamma, dbeta (C);
// mean, rstd (batch, G); part (2 batch, C) doubles; counter (1), 0 before
// the launch (and after it). Sizes as group_norm_forward_kernel; batch > 0.
// Launch: grid (batch G), 256 threads (a multiple of 32).
extern "C" __global__ void __launch_bounds__(256)
    group_norm_backward_kernel(int batch, int C, int HW, int G, int act, const float* dA, const float* yAct,
                               const float* __restrict__ x, const float* __restrict__ gamma,
                               const float* __restrict__ beta, const float* __restrict__ mean,
                               const float* __restrict__ rstd, const float* add,
                               float* dx, double* __restrict__ part, unsigned* __restrict__ counter,
                               float* __restrict__ dgamma, float* __restrict__ dbeta, float* __restrict__ dxSum) {
    FM_SHARED(double, wsum, [2][32]);
    const int bg = (int)blockIdx.x, b = bg / G, cpg = C / G, n = cpg * HW;
    const int c0 = (bg % G) * cpg;
    const long long base = (long long)bg * n;
    const float mf = mean[bg], rf = rstd[bg];
    const bool silu = act == FM_ACT_SILU;
    const int lane = (int)threadIdx.x & 31, w = (int)threadIdx.x >> 5, nw = (int)blockDim.x >> 5;
    // Pass 1: warp w takes channels w, w + nw, ...
    double ga = 0.0, gb = 0.0;
    for (int ch = w; ch < cpg; ch += nw) {
        const long long cb = base + (long long)ch * HW;
        double sd = 0.0, sdx = 0.0;
        // unsigned, not 64-bit: HW + 32 < 2^32, and a 64-bit counter
        // makes this loop spill registers on sm_90
        for (unsigned p = lane; p < (unsigned)HW; p += 32) {
            float g = dA[cb + p];
            float xh = fm_mul(fm_sub(x[cb + p], mf), rf);
            if (silu) g = fm_mul(g, silu_grad_f(yAct ? yAct[cb + p] : fm_add(fm_mul(xh, gamma[c0 + ch]), beta[c0 + ch])));
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
    for (long long e = threadIdx.x; e < n; e += step) {
        int c = c0 + ch;
        float g = dA[base + e];
        float xh = fm_mul(fm_sub(x[base + e], mf), rf);
        if (silu) g = fm_mul(g, silu_grad_f(yAct ? yAct[base + e] : fm_add(fm_mul(xh, gamma[c]), beta[c])));
        float t = fm_sub(fm_sub(fm_mul(g, gamma[c]), A), fm_mul(xh, B));
        float v = fm_mul(rf, t);
        if (add) v = fm_add(add[base + e], v);
        dx[base + e] = v;
        ch += qc;
        p += rp;
        if (p >= HW) {
            p -= HW;
            ch++;
        }
    }
    if (dxSum) {  // uniform across the block
        __syncthreads();  // the block's dx written
        for (int c = w; c < cpg; c += nw) {
            const float* dc = dx + base + (long long)c * HW;
            double sum = 0.0;
            for (unsigned q = lane; q < (unsigned)HW; q += 32) sum += (double)dc[q];
            sum = warp_sum_d(sum);
            if (lane == 0) dxSum[(long long)b * C + c0 + c] = (float)sum;
        }
    }
    if (!last_block_of(counter, gridDim.x)) return;
    for (int c = (int)threadIdx.x; c < C; c += step) {
        double sg = 0.0, sb = 0.0;
        for (int bb = 0; bb < batch; bb++) {
            sg += fm_ldcg(part + (long long)bb * C + c);
            sb += fm_ldcg(part + (long long)(batch + bb) * C + c);
        }
        dgamma[c] = (float)sg;
        dbeta[c] = (float)sb;
    }
}
