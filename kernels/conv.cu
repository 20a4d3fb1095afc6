// 2-D convolution over NCHW images (gpu.ConvShape) as implicit matrix
// products: the three passes are GEMMs whose operands are gathered from the
// images on the fly into the shared-memory tiles of gemm.cuh's layout
// (64 x 64 outputs per block of 16 x 16 threads, k steps of 16, 4 x 4
// outputs per thread read with 128-bit shared loads), so no im2col buffer
// is ever written. With KK = K K, P = OH OW and q = (c, u, v) flattened as
// c KK + u K + v (the filter's own layout):
//   forward        y[b, o, p]  = bias[o] + sum_q w[o, q] col_b[q, p]
//   backward data  dx[b, c, s] = sum_(o,u,v) w[o, c, u, v] dy[b, o, i, j]
//                  over the (i, j) with i S + u - Pad = h, j S + v - Pad = w
//   backward filter dw[o, q]   = sum_(b,p) dy[b, o, p] col_b[q, p]
// where col_b[q, (i, j)] = x[b, c, i S + u - Pad, j S + v - Pad] (zero
// outside the image). Accumulation is float32 as in the tiled GEMM; the
// filter gradient's long sum over batch and positions is split into chunks
// (blockIdx.z) whose float partials bias_grad_reduce_kernel adds in double
// in a fixed order, and the bias gradient is a block reduction in double:
// every result is deterministic.
#include "gemm.cuh"

// conv_igemm_tile accumulates acc[i][j] = sum_{kk in [kBegin, kEnd)}
// A(row0 + 4 ty + i, kk) B(kk, col0 + 4 tx + j) for the block's tile, the
// operands gathered by g (zero outside rows < m, columns < n and the k
// range). Each thread stages the same four rows of A and four columns of B
// at every k step, so the gather splits in two: g.row(r) and g.col(c)
// describe them once (image base, window origin...), and g.a(row, kk),
// g.b(kk, col) read one element. AK (BK) says that consecutive threads
// load consecutive kk of A (of B) rather than consecutive rows (columns):
// the gather's contiguous direction, for coalescing:
//   AK: rows tid / 16 + 16 s, kk offset tid % 16; else rows tid % 64, kk
//   offsets tid / 64 + 4 s (s = 0..3); B likewise with columns.
// The staging tiles t are the kernel's __shared__ conv_tiles (one per
// kernel, whichever instantiations it calls).
// Preconditions: blockDim = (16, 16, 1); every thread of the block calls it
// (it contains __syncthreads).
struct conv_tiles {
    float A[GEMM_BK][GEMM_BM + GEMM_PAD];
    float B[GEMM_BK][GEMM_BN + GEMM_PAD];
};

template <bool AK, bool BK, class G>
FM_DEVICE void conv_igemm_tile(conv_tiles& t, const G& g, int m, int n, int kBegin, int kEnd, float acc[4][4]) {
    const int tx = (int)threadIdx.x, ty = (int)threadIdx.y, tid = ty * 16 + tx;
    const int row0 = (int)blockIdx.y * GEMM_BM, col0 = (int)blockIdx.x * GEMM_BN;
    FM_UNROLL
    for (int i = 0; i < 4; i++)
        FM_UNROLL
    for (int j = 0; j < 4; j++) acc[i][j] = 0.0f;
    typename G::Row ra[4];
    typename G::Col cb[4];
    int ai[4], ap[4], bj[4], bq[4];
    bool av[4], bv[4];
    FM_UNROLL
    for (int s = 0; s < 4; s++) {
        ai[s] = AK ? tid / GEMM_BK + 16 * s : tid % GEMM_BM;
        ap[s] = AK ? tid % GEMM_BK : tid / GEMM_BM + 4 * s;
        bj[s] = BK ? tid / GEMM_BK + 16 * s : tid % GEMM_BN;
        bq[s] = BK ? tid % GEMM_BK : tid / GEMM_BN + 4 * s;
        av[s] = row0 + ai[s] < m;
        bv[s] = col0 + bj[s] < n;
        ra[s] = g.row(av[s] ? row0 + ai[s] : 0);
        cb[s] = g.col(bv[s] ? col0 + bj[s] : 0);
    }
    for (int k0 = kBegin; k0 < kEnd; k0 += GEMM_BK) {
        FM_UNROLL
        for (int s = 0; s < 4; s++) {
            int ka = k0 + ap[s], kb = k0 + bq[s];
            t.A[ap[s]][ai[s]] = (av[s] && ka < kEnd) ? g.a(ra[s], ka) : 0.0f;
            t.B[bq[s]][bj[s]] = (bv[s] && kb < kEnd) ? g.b(kb, cb[s]) : 0.0f;
        }
        __syncthreads();
        FM_UNROLL
        for (int p = 0; p < GEMM_BK; p++) {
            float a[4], b[4];
            lds4(&t.A[p][4 * ty], a);
            lds4(&t.B[p][4 * tx], b);
            FM_UNROLL
            for (int i = 0; i < 4; i++)
                FM_UNROLL
            for (int j = 0; j < 4; j++) acc[i][j] += a[i] * b[j];
        }
        __syncthreads();
    }
}

// conv_shape: gpu.ConvShape with its output size, as the kernels take it.
struct conv_shape {
    int batch, inC, h, w, outC, k, stride, pad, oh, ow;
};

#define FM_CONV_PARAMS int batch, int inC, int h, int w, int outC, int k, int stride, int pad, int oh, int ow
#define FM_CONV_SHAPE \
    conv_shape { batch, inC, h, w, outC, k, stride, pad, oh, ow }

// conv_kk splits a filter index q = (c K + u) K + v. KC > 0 is K known at
// compile time (the divisions become multiplications); KC = 0 reads s.k.
template <int KC>
__device__ __forceinline__ void conv_kk(const conv_shape& s, int q, int* c, int* u, int* v) {
    const int K = KC > 0 ? KC : s.k;
    int cu = q / K;
    *v = q - cu * K;
    *c = cu / K;
    *u = cu - *c * K;
}

// The forward product: A = w (outC x inC KK, row-major), B = col (inC KK x
// batch P), col[q, (b, i, j)] = x[b, c, i S + u - Pad, j S + v - Pad].
template <int KC>
struct conv_fwd_gather {
    conv_shape s;
    const float* __restrict__ x;
    const float* __restrict__ wt;
    struct Row {
        const float* w;
    };
    struct Col {
        const float* x;  // image b
        int ih0, iw0;    // the window's corner: i S - Pad, j S - Pad
    };
    __device__ __forceinline__ Row row(int o) const { return Row{wt + (long long)o * (s.inC * s.k * s.k)}; }
    __device__ __forceinline__ Col col(int c) const {
        int P = s.oh * s.ow;
        int b = c / P, p = c - b * P;
        int i = p / s.ow, j = p - i * s.ow;
        return Col{x + (long long)b * s.inC * s.h * s.w, i * s.stride - s.pad, j * s.stride - s.pad};
    }
    __device__ __forceinline__ float a(Row r, int q) const { return r.w[q]; }
    __device__ __forceinline__ float b(int q, Col c) const {
        int ch, u, v;
        conv_kk<KC>(s, q, &ch, &u, &v);
        int ih = c.ih0 + u, iw = c.iw0 + v;
        if ((unsigned)ih >= (unsigned)s.h || (unsigned)iw >= (unsigned)s.w) return 0.0f;
        return c.x[((long long)ch * s.h + ih) * s.w + iw];
    }
};

template <int KC>
FM_DEVICE void conv2d_forward_body(conv_tiles& t, const conv_shape& s, const float* __restrict__ x, const float* __restrict__ wt,
                                   const float* __restrict__ bias, float* __restrict__ y) {
    const int P = s.oh * s.ow, n = s.batch * P, kdim = s.inC * s.k * s.k;
    conv_fwd_gather<KC> g{s, x, wt};
    float acc[4][4];
    conv_igemm_tile<true, false>(t, g, s.outC, n, 0, kdim, acc);
    const int row0 = (int)blockIdx.y * GEMM_BM + 4 * (int)threadIdx.y, col0 = (int)blockIdx.x * GEMM_BN + 4 * (int)threadIdx.x;
    FM_UNROLL
    for (int j = 0; j < 4; j++) {
        int col = col0 + j;
        if (col >= n) continue;
        int b = col / P, p = col - b * P;
        FM_UNROLL
        for (int i = 0; i < 4; i++) {
            int o = row0 + i;
            if (o >= s.outC) continue;
            float v = acc[i][j];
            if (bias) v = fm_add(v, bias[o]);
            y[(long long)(b * s.outC + o) * P + p] = v;
        }
    }
}

// conv2d_forward_kernel: y[b, o, p] = bias[o] + sum_q w[o, q] col_b[q, p]
// (gpu.Backend.Conv2D); bias may be null (no bias), added in float32 after
// the product.
// Shapes: x (batch, inC, h, w); w (outC, inC, k, k); bias (outC); y (batch,
// outC, oh, ow) with oh = (h + 2 pad - k) / stride + 1, ow likewise; y must
// not alias x. batch inC h w, batch outC oh ow and outC inC k k < 2^31.
// Launch: grid (ceil(batch oh ow / 64), ceil(outC / 64)), block (16, 16).
extern "C" __global__ void __launch_bounds__(256)
    conv2d_forward_kernel(FM_CONV_PARAMS, const float* __restrict__ x, const float* __restrict__ wt,
                          const float* __restrict__ bias, float* __restrict__ y) {
    FM_SHARED(__align__(16) conv_tiles, t);
    const conv_shape s = FM_CONV_SHAPE;
    if (k == 3)
        conv2d_forward_body<3>(t, s, x, wt, bias, y);
    else if (k == 1)
        conv2d_forward_body<1>(t, s, x, wt, bias, y);
    else
        conv2d_forward_body<0>(t, s, x, wt, bias, y);
}

// The data gradient's product: A(c, (o,u,v)) = w[o, c, u, v] (inC x outC KK),
// B((o,u,v), (b,h,w)) = dy[b, o, i, j] where i S + u - Pad = h and
// j S + v - Pad = w have solutions inside dy (zero otherwise).
template <int KC>
struct conv_bwd_data_gather {
    conv_shape s;
    const float* __restrict__ dy;
    const float* __restrict__ wt;
    struct Row {
        const float* w;  // w[0, c, 0, 0]
    };
    struct Col {
        const float* dy;  // image b
        int th, tw;       // h + Pad, w + Pad
    };
    __device__ __forceinline__ Row row(int c) const { return Row{wt + (long long)c * s.k * s.k}; }
    __device__ __forceinline__ Col col(int c) const {
        int HW = s.h * s.w;
        int b = c / HW, hw = c - b * HW;
        int ih = hw / s.w, iw = hw - ih * s.w;
        return Col{dy + (long long)b * s.outC * s.oh * s.ow, ih + s.pad, iw + s.pad};
    }
    __device__ __forceinline__ float a(Row r, int kk) const {
        const int K = KC > 0 ? KC : s.k, KK = K * K;
        int o = kk / KK, uv = kk - o * KK;
        return r.w[(long long)o * s.inC * KK + uv];
    }
    __device__ __forceinline__ float b(int kk, Col c) const {
        int o, u, v;
        conv_kk<KC>(s, kk, &o, &u, &v);
        int ti = c.th - u, tj = c.tw - v;
        if (ti < 0 || tj < 0) return 0.0f;
        int i = ti / s.stride, j = tj / s.stride;
        if (i * s.stride != ti || j * s.stride != tj || i >= s.oh || j >= s.ow) return 0.0f;
        return c.dy[((long long)o * s.oh + i) * s.ow + j];
    }
};

template <int KC>
FM_DEVICE void conv2d_data_backward_body(conv_tiles& t, const conv_shape& s, const float* __restrict__ dy,
                                         const float* __restrict__ wt, float* __restrict__ dx) {
    const int HW = s.h * s.w, n = s.batch * HW, kdim = s.outC * s.k * s.k;
    conv_bwd_data_gather<KC> g{s, dy, wt};
    float acc[4][4];
    conv_igemm_tile<true, false>(t, g, s.inC, n, 0, kdim, acc);
    const int row0 = (int)blockIdx.y * GEMM_BM + 4 * (int)threadIdx.y, col0 = (int)blockIdx.x * GEMM_BN + 4 * (int)threadIdx.x;
    FM_UNROLL
    for (int j = 0; j < 4; j++) {
        int col = col0 + j;
        if (col >= n) continue;
        int b = col / HW, hw = col - b * HW;
        FM_UNROLL
        for (int i = 0; i < 4; i++) {
            int c = row0 + i;
            if (c < s.inC) dx[(long long)(b * s.inC + c) * HW + hw] = acc[i][j];
        }
    }
}

// conv2d_data_backward_kernel: dx = the gradient of sum(dy * y) with
// respect to x (gpu.Backend.Conv2DBackwardData), overwritten:
// dx[b, c, h, w] = sum over (o, u, v) with h = i S + u - Pad and
// w = j S + v - Pad for some output (i, j) of w[o, c, u, v] dy[b, o, i, j].
// Shapes: dy (batch, outC, oh, ow); w (outC, inC, k, k); dx (batch, inC, h,
// w), not aliasing dy. Sizes as conv2d_forward_kernel.
// Launch: grid (ceil(batch h w / 64), ceil(inC / 64)), block (16, 16).
extern "C" __global__ void __launch_bounds__(256)
    conv2d_data_backward_kernel(FM_CONV_PARAMS, const float* __restrict__ dy, const float* __restrict__ wt,
                                float* __restrict__ dx) {
    FM_SHARED(__align__(16) conv_tiles, t);
    const conv_shape s = FM_CONV_SHAPE;
    if (k == 3)
        conv2d_data_backward_body<3>(t, s, dy, wt, dx);
    else if (k == 1)
        conv2d_data_backward_body<1>(t, s, dy, wt, dx);
    else
        conv2d_data_backward_body<0>(t, s, dy, wt, dx);
}

// The filter gradient's product: A(o, (b,p)) = dy[b, o, p] (outC x batch P),
// B((b,p), q) = col_b[q, p] (batch P x inC KK). A thread's k offset is the
// same for its four loads of A and of B, so the split of (b, p) is shared.
struct conv_bwd_filter_gather {
    conv_shape s;
    const float* __restrict__ x;
    const float* __restrict__ dy;
    struct Row {
        const float* dy;  // dy[0, o, 0]
    };
    struct Col {
        int choff;  // c H W
        int u, v;
    };
    __device__ __forceinline__ Row row(int o) const { return Row{dy + (long long)o * s.oh * s.ow}; }
    __device__ __forceinline__ Col col(int q) const {
        int c, u, v;
        conv_kk<0>(s, q, &c, &u, &v);
        return Col{c * s.h * s.w, u, v};
    }
    __device__ __forceinline__ float a(Row r, int kk) const {
        int P = s.oh * s.ow;
        int b = kk / P, p = kk - b * P;
        return r.dy[(long long)b * s.outC * P + p];
    }
    __device__ __forceinline__ float b(int kk, Col c) const {
        int P = s.oh * s.ow;
        int b = kk / P, p = kk - b * P;
        int i = p / s.ow, j = p - i * s.ow;
        int ih = i * s.stride + c.u - s.pad, iw = j * s.stride + c.v - s.pad;
        if ((unsigned)ih >= (unsigned)s.h || (unsigned)iw >= (unsigned)s.w) return 0.0f;
        return x[(long long)b * s.inC * s.h * s.w + c.choff + ih * s.w + iw];
    }
};

// conv2d_filter_backward_kernel: the gradient of sum(dy * y) with respect
// to w (gpu.Backend.Conv2DBackwardFilter), its sum over batch P terms split
// into gridDim.z chunks of `chunk`: chunk z covers terms [z chunk,
// (z + 1) chunk). With partial null (one chunk) it writes
// dw[o, q] = sum_(b,p) dy[b, o, p] col_b[q, p]; otherwise
// partial[z, o, q] = the chunk's sum, in double, for
// bias_grad_reduce_kernel(partial, gridDim.z, outC inC k k, dw).
// Shapes: x (batch, inC, h, w); dy (batch, outC, oh, ow); dw (outC, inC, k,
// k); partial (gridDim.z, outC, inC k k) doubles. Sizes as
// conv2d_forward_kernel; chunk a positive multiple of 16.
// Launch: grid (ceil(inC k k / 64), ceil(outC / 64), ceil(batch oh ow /
// chunk)), block (16, 16).
extern "C" __global__ void __launch_bounds__(256)
    conv2d_filter_backward_kernel(FM_CONV_PARAMS, const float* __restrict__ x, const float* __restrict__ dy,
                                  int chunk, float* __restrict__ dw, double* __restrict__ partial) {
    FM_SHARED(__align__(16) conv_tiles, t);
    const conv_shape s = FM_CONV_SHAPE;
    const int kdim = batch * oh * ow, n = inC * k * k;
    const int k0 = (int)blockIdx.z * chunk, k1 = imin(kdim, k0 + chunk);
    conv_bwd_filter_gather g{s, x, dy};
    float acc[4][4];
    conv_igemm_tile<true, true>(t, g, outC, n, k0, k1, acc);
    const int row0 = (int)blockIdx.y * GEMM_BM + 4 * (int)threadIdx.y, col0 = (int)blockIdx.x * GEMM_BN + 4 * (int)threadIdx.x;
    FM_UNROLL
    for (int i = 0; i < 4; i++) {
        int o = row0 + i;
        if (o >= outC) continue;
        FM_UNROLL
        for (int j = 0; j < 4; j++) {
            int q = col0 + j;
            if (q >= n) continue;
            long long e = (long long)o * n + q;
            if (partial)
                partial[(long long)blockIdx.z * outC * n + e] = (double)acc[i][j];
            else
                dw[e] = acc[i][j];
        }
    }
}

// conv2d_bias_backward_kernel: dbias[o] = sum_(b,p) dy[b, o, p] in double,
// rounded once (the bias gradient of Conv2DBackwardFilter), in a fixed
// order.
// Shapes: dy (batch, outC, P); dbias (outC).
// Launch: grid (outC), 256 threads (a multiple of 32: block_sum_d); block o
// reduces channel o.
extern "C" __global__ void __launch_bounds__(256)
    conv2d_bias_backward_kernel(int batch, int outC, int P, const float* __restrict__ dy, float* __restrict__ dbias) {
    const int o = (int)blockIdx.x, step = (int)blockDim.x;
    const int ne = batch * P;
    // Element e = b P + p of the channel; stepping e by blockDim.x steps
    // (b, p) by (qb, rp) with a carry, so no division per element.
    const int qb = step / P, rp = step % P;
    int b = (int)threadIdx.x / P, p = (int)threadIdx.x % P;
    double acc = 0.0;
    for (int e = threadIdx.x; e < ne; e += step) {
        acc += (double)dy[(long long)(b * outC + o) * P + p];
        b += qb;
        p += rp;
        if (p >= P) {
            p -= P;
            b++;
        }
    }
    acc = block_sum_d(acc);
    if (threadIdx.x == 0) dbias[o] = (float)acc;
}
