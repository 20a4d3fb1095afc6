// The Conv family (gpu/conv.go): 2-D convolution over NCHW images
// (gpu.ConvShape) and its gradients as implicit matrix products: the three
// passes are GEMMs whose operands are gathered from the images on the fly
// into the shared-memory tiles of gemm.cuh's layout (BM x 64 outputs per
// block of 16 x 16 threads, BM = 32, 64 or 128 by the channels (conv_rows),
// k steps of 16, BM / 16 x 4 outputs per thread read with 128-bit shared
// loads (64-bit for BM = 32)), so no im2col buffer is ever written. With KK = K K, P = OH OW
// and q = (c, u, v) flattened as c KK + u K + v (the filter's own layout):
//   forward        y[b, o, p]  = bias[o] + sum_q w[o, q] col_b[q, p]
//   backward data  dx[b, c, s] = sum_(o,u,v) w[o, c, u, v] dy[b, o, i, j]
//                  over the (i, j) with i S + u - Pad = h, j S + v - Pad = w
//   backward filter dw[o, q]   = sum_(b,p) dy[b, o, p] col_b[q, p]
// where col_b[q, (i, j)] = x[b, c, i S + u - Pad, j S + v - Pad] (zero
// outside the image). Accumulation is float32 as in the tiled GEMM; the
// filter gradient's long sum over batch and positions is split into chunks
// (blockIdx.z) whose partials the last block of each tile adds in double in
// a fixed order, and the bias gradient is summed in double beside it:
// every result is deterministic.
#include "gemm.cuh"
#include "gemm_tc.cuh"

// conv_igemm_tile accumulates acc[i][j] = sum_{kk in [kBegin, kEnd)}
// A(row0 + TM ty + i, kk) B(kk, col0 + 4 tx + j) for the block's tile of
// BM = 16 TM rows by 64 columns, the operands gathered by g (zero outside
// rows < m, columns < n and the k range). TM = 4 is gemm.cuh's 64 x 64
// tile; TM = 2 a 32 x 64 tile for products of at most 32 rows (a layer of
// 32 channels), which the 64-row tile would half fill; TM = 8 a 128 x 64
// tile for products of more than 64 rows, where each gathered element of
// B then serves 128 rows rather than 64: the gathers, not the products,
// bound these kernels, so this halves their traffic a product in the
// layers of 128 and 256 channels (the CIFAR-10 network). Each thread stages
// the same rows of A and columns of B at every k step, so the gather
// splits in two: g.row(r) and g.col(c) describe them once (image base,
// window origin...), and g.pa(row, kk), g.pb(kk, col) give one element's
// address (pb: null for a zero outside the image). AK
// (BK) says that consecutive threads load consecutive kk of A (of B)
// rather than consecutive rows (columns): the gather's contiguous
// direction, for coalescing:
//   AK: rows tid / 16 + 16 s, kk offset tid % 16; else rows tid % BM, kk
//   offsets tid / BM + (256 / BM) s (s < TM); B likewise with 64 columns.
// The staging tiles t are the kernel's __shared__ conv_tiles (one per
// kernel, whichever instantiations it calls), of BMX rows for its largest
// tile: 64, or 128 in the rows128 kernels; a smaller tile uses the first
// BM columns of A. With sumA, threads tid < BM also add, in double, the k
// values of A's row row0 + tid into asum (the filter gradient's bias: dy's
// sums; a flag and a reference rather than a pointer, which would put
// asum in local memory). The block's tile is (blockIdx.y BM,
// blockIdx.x 64).
// Preconditions: blockDim = (16, 16, 1); every thread of the block calls it
// (it contains __syncthreads).
template <int BMX>
struct conv_tiles {
    float A[GEMM_BK][BMX + GEMM_PAD];
    float B[GEMM_BK][GEMM_BN + GEMM_PAD];
};

// conv_value is the element a gather's address names: 0 for null.
__device__ __forceinline__ float conv_value(const float* p) { return p ? *p : 0.0f; }

template <int TM, bool AK, bool BK, int BMX, class G>
FM_DEVICE void conv_igemm_tile(conv_tiles<BMX>& t, const G& g, int m, int n, int kBegin, int kEnd, float acc[TM][4],
                               bool sumA, double& asum) {
    constexpr int BM = 16 * TM;
    static_assert(BM <= BMX, "the tile fits the staging tiles");
    const int tx = (int)threadIdx.x, ty = (int)threadIdx.y, tid = ty * 16 + tx;
    const int row0 = (int)blockIdx.y * BM, col0 = (int)blockIdx.x * GEMM_BN;
    FM_UNROLL
    for (int i = 0; i < TM; i++)
        FM_UNROLL
    for (int j = 0; j < 4; j++) acc[i][j] = 0.0f;
    typename G::Row ra[TM];
    typename G::Col cb[4];
    int ai[TM], ap[TM], bj[4], bq[4];
    bool av[TM], bv[4];
    FM_UNROLL
    for (int s = 0; s < TM; s++) {
        ai[s] = AK ? tid / GEMM_BK + 16 * s : tid % BM;
        ap[s] = AK ? tid % GEMM_BK : tid / BM + (256 / BM) * s;
        av[s] = row0 + ai[s] < m;
        ra[s] = g.row(av[s] ? row0 + ai[s] : 0);
    }
    FM_UNROLL
    for (int s = 0; s < 4; s++) {
        bj[s] = BK ? tid / GEMM_BK + 16 * s : tid % GEMM_BN;
        bq[s] = BK ? tid % GEMM_BK : tid / GEMM_BN + 4 * s;
        bv[s] = col0 + bj[s] < n;
        cb[s] = g.col(bv[s] ? col0 + bj[s] : 0);
    }
    // k0 runs over the tiles by count: k0 + GEMM_BK past kEnd may overflow
    const int ktiles = (kEnd - kBegin) / GEMM_BK + ((kEnd - kBegin) % GEMM_BK != 0);
    for (int kt = 0; kt < ktiles; kt++) {
        const int k0 = kBegin + kt * GEMM_BK;
        FM_UNROLL
        for (int s = 0; s < TM; s++) {
            int ka = k0 + ap[s];
            t.A[ap[s]][ai[s]] = (av[s] && ka < kEnd) ? *g.pa(ra[s], ka) : 0.0f;
        }
        FM_UNROLL
        for (int s = 0; s < 4; s++) {
            int kb = k0 + bq[s];
            t.B[bq[s]][bj[s]] = (bv[s] && kb < kEnd) ? conv_value(g.pb(kb, cb[s])) : 0.0f;
        }
        __syncthreads();
        if (sumA && tid < BM) {
            double s = 0.0;
            FM_UNROLL
            for (int p = 0; p < GEMM_BK; p++) s += (double)t.A[p][tid];
            asum += s;
        }
        FM_UNROLL
        for (int p = 0; p < GEMM_BK; p++) {
            float a[TM], b[4];
            if constexpr (TM == 8) {
                lds4(&t.A[p][8 * ty], a);
                lds4(&t.A[p][8 * ty + 4], a + 4);
            } else if constexpr (TM == 4)
                lds4(&t.A[p][4 * ty], a);
            else
                lds2(&t.A[p][2 * ty], a);
            lds4(&t.B[p][4 * tx], b);
            FM_UNROLL
            for (int i = 0; i < TM; i++)
                FM_UNROLL
            for (int j = 0; j < 4; j++) acc[i][j] += a[i] * b[j];
        }
        __syncthreads();
    }
}

// The tensor-core variant (P = TC_TF32, TC_TF32X3 or TC_BF16: gemm_tc.cuh's
// precisions; CONV_SIMT is the float32 tile above): the same tile of BM x
// 64 outputs, the same gathers and the same thread-to-element staging, but
// the elements copied by 4-byte cp.async (zero-filled outside the image)
// through CONV_TC_STAGES stages of shared memory, so that the gathers of
// the next slices are in flight while the warps multiply the current one,
// and the products on the tensor cores: warp w owns rows BM / 2 (w >> 2)
// .. + BM / 2 and columns 16 (w & 3) .. + 16 as MT = TM / 2 by 2 m16n8
// tiles (m16n8k8 in tf32 and tf32x3,
// m16n8k16 in bf16, from the fragments of two k steps of 8 as tc_step
// builds them). The tiles are stored [k][row] as conv_tiles, padded by 8
// rather than 4: the fragment loads at (k = t, row = g) then fall in bank
// 8 t + g, distinct over the warp. The operands are rounded as the
// fragments are built, so the shared tiles (and sumA's sums) hold them
// unrounded.
#define CONV_SIMT (-1)
#define CONV_TC_PAD 8
#define CONV_TC_STAGES 3
template <int BMX>
struct conv_tc_tiles {
    float A[CONV_TC_STAGES][GEMM_BK][BMX + CONV_TC_PAD];
    float B[CONV_TC_STAGES][GEMM_BK][GEMM_BN + CONV_TC_PAD];
};

// conv_tc_frags loads the warp's float32 fragments of the k step [kk, kk +
// 8) from a stage in m16n8k8's layouts (mma.cuh): af[i] of the m-tile at
// row wm0 + 16 i, bf[j] of the n-tile at column wn0 + 8 j.
template <int MT, int BMX>
FM_DEVICE void conv_tc_frags(const float (*A)[BMX + CONV_TC_PAD], const float (*B)[GEMM_BN + CONV_TC_PAD], int kk,
                             int wm0, int wn0, int lane, float af[MT][4], float bf[2][2]) {
    const int g = lane >> 2, t = lane & 3;
    FM_UNROLL
    for (int i = 0; i < MT; i++) {
        const int r = wm0 + 16 * i + g;
        af[i][0] = A[kk + t][r], af[i][1] = A[kk + t][r + 8], af[i][2] = A[kk + t + 4][r], af[i][3] = A[kk + t + 4][r + 8];
    }
    FM_UNROLL
    for (int j = 0; j < 2; j++) {
        const int c = wn0 + 8 * j + g;
        bf[j][0] = B[kk + t][c], bf[j][1] = B[kk + t + 4][c];
    }
}

// conv_acc is a thread's share of the block's output tile, by precision:
// each(m, n, f) calls f(row, column, value) for those of its elements
// inside the m x n output.
template <int TM, int P>
struct conv_acc {
    float v[TM / 2][2][4];  // acc[i][j][q] of mma.cuh's C layout
    template <class F>
    __device__ __forceinline__ void each(int m, int n, F f) const {
        const int tid = (int)threadIdx.y * 16 + (int)threadIdx.x, warp = tid >> 5, lane = tid & 31;
        const int r0 = (int)blockIdx.y * 16 * TM + (warp >> 2) * 8 * TM + (lane >> 2);
        const int c0 = (int)blockIdx.x * GEMM_BN + (warp & 3) * 16 + 2 * (lane & 3);
        FM_UNROLL
        for (int i = 0; i < TM / 2; i++)
            FM_UNROLL
        for (int j = 0; j < 2; j++)
            FM_UNROLL
        for (int q = 0; q < 4; q++) {
            const int r = r0 + 16 * i + 8 * (q >> 1), c = c0 + 8 * j + (q & 1);
            if (r < m && c < n) f(r, c, v[i][j][q]);
        }
    }
};

template <int TM>
struct conv_acc<TM, CONV_SIMT> {
    float v[TM][4];
    template <class F>
    __device__ __forceinline__ void each(int m, int n, F f) const {
        const int r0 = (int)blockIdx.y * 16 * TM + TM * (int)threadIdx.y, c0 = (int)blockIdx.x * GEMM_BN + 4 * (int)threadIdx.x;
        FM_UNROLL
        for (int i = 0; i < TM; i++)
            FM_UNROLL
        for (int j = 0; j < 4; j++)
            if (r0 + i < m && c0 + j < n) f(r0 + i, c0 + j, v[i][j]);
    }
};

// conv_smem is the shared memory of a precision's tiles of at most BMX
// rows: a kernel's static shared memory is sized for the largest tile it
// runs.
template <int P, int BMX>
struct conv_smem {
    using type = conv_tc_tiles<BMX>;
};
template <int BMX>
struct conv_smem<CONV_SIMT, BMX> {
    using type = conv_tiles<BMX>;
};

// conv_tc_tile is conv_igemm_tile on the tensor cores (see above), with the
// same arguments and preconditions but for its tiles and accumulators.
template <int TM, bool AK, bool BK, int P, int BMX, class G>
FM_DEVICE void conv_tc_tile(conv_tc_tiles<BMX>& t, const G& g, int m, int n, int kBegin, int kEnd, float acc[TM / 2][2][4],
                            bool sumA, double& asum) {
    constexpr int BM = 16 * TM, MT = TM / 2;
    static_assert(BM <= BMX, "the tile fits the staging tiles");
    const int tx = (int)threadIdx.x, ty = (int)threadIdx.y, tid = ty * 16 + tx, warp = tid >> 5, lane = tid & 31;
    const int row0 = (int)blockIdx.y * BM, col0 = (int)blockIdx.x * GEMM_BN;
    const int wm0 = (warp >> 2) * 8 * TM, wn0 = (warp & 3) * 16;
    FM_UNROLL
    for (int i = 0; i < MT; i++)
        FM_UNROLL
    for (int j = 0; j < 2; j++)
        FM_UNROLL
    for (int q = 0; q < 4; q++) acc[i][j][q] = 0.0f;
    typename G::Row ra[TM];
    typename G::Col cb[4];
    int ai[TM], ap[TM], bj[4], bq[4];
    bool av[TM], bv[4];
    FM_UNROLL
    for (int s = 0; s < TM; s++) {
        ai[s] = AK ? tid / GEMM_BK + 16 * s : tid % BM;
        ap[s] = AK ? tid % GEMM_BK : tid / BM + (256 / BM) * s;
        av[s] = row0 + ai[s] < m;
        ra[s] = g.row(av[s] ? row0 + ai[s] : 0);
    }
    FM_UNROLL
    for (int s = 0; s < 4; s++) {
        bj[s] = BK ? tid / GEMM_BK + 16 * s : tid % GEMM_BN;
        bq[s] = BK ? tid % GEMM_BK : tid / GEMM_BN + 4 * s;
        bv[s] = col0 + bj[s] < n;
        cb[s] = g.col(bv[s] ? col0 + bj[s] : 0);
    }
    // a valid global address for the zero-filling copies, which read nothing
    const float* zsrc = g.pa(g.row(0), 0);
    // k0 runs over the tiles by count: k0 + GEMM_BK past kEnd may overflow
    const int ktiles = (kEnd - kBegin) / GEMM_BK + ((kEnd - kBegin) % GEMM_BK != 0);
    // issue(kt) starts the copies of slice kt into stage kt % CONV_TC_STAGES,
    // one group a slice (empty past the last: the waits' counts stay right)
    auto issue = [&](int kt) {
        if (kt < ktiles) {
            const int st = kt % CONV_TC_STAGES, k0 = kBegin + kt * GEMM_BK;
            FM_UNROLL
            for (int s = 0; s < TM; s++) {
                const int ka = k0 + ap[s];
                const float* p = (av[s] && ka < kEnd) ? g.pa(ra[s], ka) : nullptr;
                fm_cp_async4(&t.A[st][ap[s]][ai[s]], p ? p : zsrc, p ? 4 : 0);
            }
            FM_UNROLL
            for (int s = 0; s < 4; s++) {
                const int kb = k0 + bq[s];
                const float* p = (bv[s] && kb < kEnd) ? g.pb(kb, cb[s]) : nullptr;
                fm_cp_async4(&t.B[st][bq[s]][bj[s]], p ? p : zsrc, p ? 4 : 0);
            }
        }
        fm_cp_async_commit();
    };
    FM_UNROLL
    for (int kt = 0; kt < CONV_TC_STAGES - 1; kt++) issue(kt);
    for (int kt = 0; kt < ktiles; kt++) {
        // slice kt's copies, this thread's then (the barrier) everyone's,
        // have landed; and every warp has finished with slice kt - 1, whose
        // stage the copies of slice kt + CONV_TC_STAGES - 1 overwrite
        fm_cp_async_wait<CONV_TC_STAGES - 2>();
        __syncthreads();
        issue(kt + CONV_TC_STAGES - 1);
        const int st = kt % CONV_TC_STAGES;
        if (sumA && tid < BM) {
            double s = 0.0;
            FM_UNROLL
            for (int p = 0; p < GEMM_BK; p++) s += (double)t.A[st][p][tid];
            asum += s;
        }
        if constexpr (P == TC_BF16) {
            uint32_t a[MT][4], b[2][2];
            FM_UNROLL
            for (int step = 0; step < 2; step++) {
                float af[MT][4], bf[2][2];
                conv_tc_frags<MT, BMX>(t.A[st], t.B[st], 8 * step, wm0, wn0, lane, af, bf);
                tc_pack_bf16<MT, 2>(step, af, bf, a, b);
            }
            fm_mma_bf16<MT, 2>(acc, a, b);
        } else {
            FM_UNROLL
            for (int kk = 0; kk < GEMM_BK; kk += 8) {
                float af[MT][4], bf[2][2];
                conv_tc_frags<MT, BMX>(t.A[st], t.B[st], kk, wm0, wn0, lane, af, bf);
                // an m-tile at a time: tf32x3's hi and lo parts of all
                // of them at once pushed the filter gradient into spills
                FM_UNROLL
                for (int i = 0; i < MT; i++) tc_mma8<P, 1, 2>(acc + i, af + i, bf);
            }
        }
    }
}

// conv_product computes the block's tile of the implicit product in
// precision P into acc: conv_igemm_tile or conv_tc_tile.
template <int TM, bool AK, bool BK, int P, class T, class G>
FM_DEVICE void conv_product(T& t, const G& g, int m, int n, int kBegin, int kEnd,
                            conv_acc<TM, P>& acc, bool sumA, double& asum) {
    if constexpr (P == CONV_SIMT)
        conv_igemm_tile<TM, AK, BK>(t, g, m, n, kBegin, kEnd, acc.v, sumA, asum);
    else
        conv_tc_tile<TM, AK, BK, P>(t, g, m, n, kBegin, kEnd, acc.v, sumA, asum);
}

// conv_shape: gpu.ConvShape with its output size, as the kernels take it.
struct conv_shape {
    int batch, inC, h, w, outC, k, stride, pad, oh, ow;
};

// conv_rows is the rows of a product's output tile for m output rows
// (channels): 32 for m <= 32 (TM = 2: a 32-channel layer fills it), 64 for
// m <= 64 (TM = 4), else 128 (TM = 8). gpu/device_conv.go's convRows is the
// same rule.
FM_DEVICE int conv_rows(int m) { return m <= 32 ? 32 : m <= 64 ? 64 : 128; }

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
    __device__ __forceinline__ const float* pa(Row r, int q) const { return r.w + q; }
    __device__ __forceinline__ const float* pb(int q, Col c) const {
        int ch, u, v;
        conv_kk<KC>(s, q, &ch, &u, &v);
        int ih = c.ih0 + u, iw = c.iw0 + v;
        if ((unsigned)ih >= (unsigned)s.h || (unsigned)iw >= (unsigned)s.w) return nullptr;
        return c.x + ((long long)ch * s.h + ih) * s.w + iw;
    }
};

template <int KC, int TM, int PR, class T>
FM_DEVICE void conv2d_forward_body(T& t, const conv_shape& s, const float* __restrict__ x,
                                   const float* __restrict__ wt, const float* __restrict__ bias, float* __restrict__ y) {
    const int P = s.oh * s.ow, n = s.batch * P, kdim = s.inC * s.k * s.k;
    conv_fwd_gather<KC> g{s, x, wt};
    conv_acc<TM, PR> acc;
    double unused = 0.0;
    conv_product<TM, true, false, PR>(t, g, s.outC, n, 0, kdim, acc, false, unused);
    acc.each(s.outC, n, [&](int o, int col, float v) {
        int b = col / P, p = col - b * P;
        if (bias) v = fm_add(v, bias[o]);
        y[(long long)(b * s.outC + o) * P + p] = v;
    });
}

// conv2d_forward_tm: the forward kernels' dispatch over the filter size,
// for a tile of 16 TM rows.
template <int TM, int PR, class T>
FM_DEVICE void conv2d_forward_tm(T& t, const conv_shape& s, const float* __restrict__ x,
                                 const float* __restrict__ wt, const float* __restrict__ bias, float* __restrict__ y) {
    if (s.k == 3)
        conv2d_forward_body<3, TM, PR>(t, s, x, wt, bias, y);
    else if (s.k == 1)
        conv2d_forward_body<1, TM, PR>(t, s, x, wt, bias, y);
    else
        conv2d_forward_body<0, TM, PR>(t, s, x, wt, bias, y);
}

// conv2d_forward: the forward kernels' dispatch over the tile height: the
// 128-row tile (R128) or the 32- and 64-row tiles, in kernels of their own
// so that the smaller tiles keep their registers and shared memory.
template <int PR, bool R128>
FM_DEVICE void conv2d_forward(const conv_shape& s, const float* __restrict__ x, const float* __restrict__ wt,
                              const float* __restrict__ bias, float* __restrict__ y) {
    using tiles = typename conv_smem<PR, R128 ? 128 : 64>::type;
    FM_SHARED(__align__(16) tiles, t);
    if constexpr (R128)
        conv2d_forward_tm<8, PR>(t, s, x, wt, bias, y);
    else if (conv_rows(s.outC) == 32)
        conv2d_forward_tm<2, PR>(t, s, x, wt, bias, y);
    else
        conv2d_forward_tm<4, PR>(t, s, x, wt, bias, y);
}

// conv2d_forward_kernel: y[b, o, p] = bias[o] + sum_q w[o, q] col_b[q, p]
// (gpu.Conv.Conv2D); bias may be null (no bias), added in float32 after
// the product.
// Shapes: x (batch, inC, h, w); w (outC, inC, k, k); bias (outC); y (batch,
// outC, oh, ow) with oh = (h + 2 pad - k) / stride + 1, ow likewise; y must
// not alias x. batch inC h w, batch outC oh ow and outC inC k k < 2^31.
// Launch: grid (ceil(batch oh ow / 64), ceil(outC / BM)), block (16, 16),
// BM = conv_rows(outC), for outC <= 64 (more: the rows128 kernels below).
extern "C" __global__ void __launch_bounds__(256)
    conv2d_forward_kernel(FM_CONV_PARAMS, const float* __restrict__ x, const float* __restrict__ wt,
                          const float* __restrict__ bias, float* __restrict__ y) {
    conv2d_forward<CONV_SIMT, false>(FM_CONV_SHAPE, x, wt, bias, y);
}

// conv2d_{tf32,tf32x3,bf16}_forward_kernel: conv2d_forward_kernel with the
// products on the tensor cores in that precision (conv_tc_tile); the same
// shapes and launch.
extern "C" __global__ void __launch_bounds__(256)
    conv2d_tf32_forward_kernel(FM_CONV_PARAMS, const float* __restrict__ x, const float* __restrict__ wt,
                             const float* __restrict__ bias, float* __restrict__ y) {
    conv2d_forward<TC_TF32, false>(FM_CONV_SHAPE, x, wt, bias, y);
}
extern "C" __global__ void __launch_bounds__(256)
    conv2d_tf32x3_forward_kernel(FM_CONV_PARAMS, const float* __restrict__ x, const float* __restrict__ wt,
                             const float* __restrict__ bias, float* __restrict__ y) {
    conv2d_forward<TC_TF32X3, false>(FM_CONV_SHAPE, x, wt, bias, y);
}
extern "C" __global__ void __launch_bounds__(256)
    conv2d_bf16_forward_kernel(FM_CONV_PARAMS, const float* __restrict__ x, const float* __restrict__ wt,
                             const float* __restrict__ bias, float* __restrict__ y) {
    conv2d_forward<TC_BF16, false>(FM_CONV_SHAPE, x, wt, bias, y);
}

// conv2d_rows128_forward_kernel and conv2d_{tf32,tf32x3,bf16}_rows128_forward_kernel:
// the forward kernels above for outC > 64, on tiles of 128 rows (TM = 8):
// the same shapes; grid (ceil(batch oh ow / 64), ceil(outC / 128)), block
// (16, 16). The tensor-core ones are bounded to two blocks an SM (128
// registers: their 64 accumulators a warp's row of m-tiles, and the
// gathers' row state, take most of them).
extern "C" __global__ void __launch_bounds__(256)
    conv2d_rows128_forward_kernel(FM_CONV_PARAMS, const float* __restrict__ x, const float* __restrict__ wt,
                                  const float* __restrict__ bias, float* __restrict__ y) {
    conv2d_forward<CONV_SIMT, true>(FM_CONV_SHAPE, x, wt, bias, y);
}
extern "C" __global__ void __launch_bounds__(256, 2)
    conv2d_tf32_rows128_forward_kernel(FM_CONV_PARAMS, const float* __restrict__ x, const float* __restrict__ wt,
                                       const float* __restrict__ bias, float* __restrict__ y) {
    conv2d_forward<TC_TF32, true>(FM_CONV_SHAPE, x, wt, bias, y);
}
extern "C" __global__ void __launch_bounds__(256, 2)
    conv2d_tf32x3_rows128_forward_kernel(FM_CONV_PARAMS, const float* __restrict__ x, const float* __restrict__ wt,
                                         const float* __restrict__ bias, float* __restrict__ y) {
    conv2d_forward<TC_TF32X3, true>(FM_CONV_SHAPE, x, wt, bias, y);
}
extern "C" __global__ void __launch_bounds__(256, 2)
    conv2d_bf16_rows128_forward_kernel(FM_CONV_PARAMS, const float* __restrict__ x, const float* __restrict__ wt,
                                       const float* __restrict__ bias, float* __restrict__ y) {
    conv2d_forward<TC_BF16, true>(FM_CONV_SHAPE, x, wt, bias, y);
}

// The data gradient's product: A(c, (o,u,v)) = w[o, c, u, v] (inC x outC KK),
// B((o,u,v), (b,h,w)) = dy[b, o, i, j] where i S + u - Pad = h and
// j S + v - Pad = w have solutions inside dy (zero otherwise). SC > 0 is
// the stride S known at compile time (1 and 2: no division per element);
// SC = 0 reads s.stride.
template <int KC, int SC>
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
    __device__ __forceinline__ const float* pa(Row r, int kk) const {
        const int K = KC > 0 ? KC : s.k, KK = K * K;
        int o = kk / KK, uv = kk - o * KK;
        return r.w + (long long)o * s.inC * KK + uv;
    }
    __device__ __forceinline__ const float* pb(int kk, Col c) const {
        int o, u, v;
        conv_kk<KC>(s, kk, &o, &u, &v);
        int ti = c.th - u, tj = c.tw - v;
        if (ti < 0 || tj < 0) return nullptr;
        int i, j;
        if (SC == 1) {
            i = ti, j = tj;
        } else if (SC == 2) {
            if ((ti | tj) & 1) return nullptr;
            i = ti >> 1, j = tj >> 1;
        } else {
            i = ti / s.stride, j = tj / s.stride;
            if (i * s.stride != ti || j * s.stride != tj) return nullptr;
        }
        if (i >= s.oh || j >= s.ow) return nullptr;
        return c.dy + ((long long)o * s.oh + i) * s.ow + j;
    }
};

template <int KC, int SC, int TM, int PR, class T>
FM_DEVICE void conv2d_data_backward_body(T& t, const conv_shape& s, const float* __restrict__ dy,
                                         const float* __restrict__ wt, float* __restrict__ dx) {
    const int HW = s.h * s.w, n = s.batch * HW, kdim = s.outC * s.k * s.k;
    conv_bwd_data_gather<KC, SC> g{s, dy, wt};
    conv_acc<TM, PR> acc;
    double unused = 0.0;
    conv_product<TM, true, false, PR>(t, g, s.inC, n, 0, kdim, acc, false, unused);
    acc.each(s.inC, n, [&](int c, int col, float v) {
        int b = col / HW, hw = col - b * HW;
        dx[(long long)(b * s.inC + c) * HW + hw] = v;
    });
}

// conv2d_data_backward_tm: the data-gradient kernels' dispatch over the
// filter size and the stride, for a tile of 16 TM rows.
template <int TM, int PR, class T>
FM_DEVICE void conv2d_data_backward_tm(T& t, const conv_shape& s, const float* __restrict__ dy,
                                       const float* __restrict__ wt, float* __restrict__ dx) {
    if (s.k == 3 && s.stride == 1)
        conv2d_data_backward_body<3, 1, TM, PR>(t, s, dy, wt, dx);
    else if (s.k == 3 && s.stride == 2)
        conv2d_data_backward_body<3, 2, TM, PR>(t, s, dy, wt, dx);
    else if (s.k == 1 && s.stride == 1)
        conv2d_data_backward_body<1, 1, TM, PR>(t, s, dy, wt, dx);
    else
        conv2d_data_backward_body<0, 0, TM, PR>(t, s, dy, wt, dx);
}

// conv2d_data_backward: the data-gradient kernels' dispatch over the tile
// height (as conv2d_forward).
template <int PR, bool R128>
FM_DEVICE void conv2d_data_backward(const conv_shape& s, const float* __restrict__ dy, const float* __restrict__ wt,
                                    float* __restrict__ dx) {
    using tiles = typename conv_smem<PR, R128 ? 128 : 64>::type;
    FM_SHARED(__align__(16) tiles, t);
    if constexpr (R128)
        conv2d_data_backward_tm<8, PR>(t, s, dy, wt, dx);
    else if (conv_rows(s.inC) == 32)
        conv2d_data_backward_tm<2, PR>(t, s, dy, wt, dx);
    else
        conv2d_data_backward_tm<4, PR>(t, s, dy, wt, dx);
}

// conv2d_data_backward_kernel: dx = the gradient of sum(dy * y) with
// respect to x (gpu.Conv.Conv2DBackwardData), overwritten:
// dx[b, c, h, w] = sum over (o, u, v) with h = i S + u - Pad and
// w = j S + v - Pad for some output (i, j) of w[o, c, u, v] dy[b, o, i, j].
// Shapes: dy (batch, outC, oh, ow); w (outC, inC, k, k); dx (batch, inC, h,
// w), not aliasing dy. Sizes as conv2d_forward_kernel.
// Launch: grid (ceil(batch h w / 64), ceil(inC / BM)), block (16, 16), BM =
// conv_rows(inC), for inC <= 64 (more: the rows128 kernels below).
extern "C" __global__ void __launch_bounds__(256)
    conv2d_data_backward_kernel(FM_CONV_PARAMS, const float* __restrict__ dy, const float* __restrict__ wt,
                                float* __restrict__ dx) {
    conv2d_data_backward<CONV_SIMT, false>(FM_CONV_SHAPE, dy, wt, dx);
}

// conv2d_{tf32,tf32x3,bf16}_data_backward_kernel: conv2d_data_backward_kernel
// on the tensor cores in that precision; the same shapes and launch.
// tf32x3's is bounded to two blocks an SM: without that bound ptxas held it
// to 80 registers and spilled.
extern "C" __global__ void __launch_bounds__(256)
    conv2d_tf32_data_backward_kernel(FM_CONV_PARAMS, const float* __restrict__ dy, const float* __restrict__ wt,
                                   float* __restrict__ dx) {
    conv2d_data_backward<TC_TF32, false>(FM_CONV_SHAPE, dy, wt, dx);
}
extern "C" __global__ void __launch_bounds__(256, 2)
    conv2d_tf32x3_data_backward_kernel(FM_CONV_PARAMS, const float* __restrict__ dy, const float* __restrict__ wt,
                                   float* __restrict__ dx) {
    conv2d_data_backward<TC_TF32X3, false>(FM_CONV_SHAPE, dy, wt, dx);
}
extern "C" __global__ void __launch_bounds__(256)
    conv2d_bf16_data_backward_kernel(FM_CONV_PARAMS, const float* __restrict__ dy, const float* __restrict__ wt,
                                   float* __restrict__ dx) {
    conv2d_data_backward<TC_BF16, false>(FM_CONV_SHAPE, dy, wt, dx);
}

// conv2d_rows128_data_backward_kernel and
// conv2d_{tf32,tf32x3,bf16}_rows128_data_backward_kernel: the data-gradient
// kernels above for inC > 64, on tiles of 128 rows (TM = 8): the same
// shapes; grid (ceil(batch h w / 64), ceil(inC / 128)), block (16, 16); the
// tensor-core ones bounded to two blocks an SM, as the forward ones.
extern "C" __global__ void __launch_bounds__(256)
    conv2d_rows128_data_backward_kernel(FM_CONV_PARAMS, const float* __restrict__ dy, const float* __restrict__ wt,
                                        float* __restrict__ dx) {
    conv2d_data_backward<CONV_SIMT, true>(FM_CONV_SHAPE, dy, wt, dx);
}
extern "C" __global__ void __launch_bounds__(256, 2)
    conv2d_tf32_rows128_data_backward_kernel(FM_CONV_PARAMS, const float* __restrict__ dy, const float* __restrict__ wt,
                                             float* __restrict__ dx) {
    conv2d_data_backward<TC_TF32, true>(FM_CONV_SHAPE, dy, wt, dx);
}
extern "C" __global__ void __launch_bounds__(256, 2)
    conv2d_tf32x3_rows128_data_backward_kernel(FM_CONV_PARAMS, const float* __restrict__ dy, const float* __restrict__ wt,
                                               float* __restrict__ dx) {
    conv2d_data_backward<TC_TF32X3, true>(FM_CONV_SHAPE, dy, wt, dx);
}
extern "C" __global__ void __launch_bounds__(256, 2)
    conv2d_bf16_rows128_data_backward_kernel(FM_CONV_PARAMS, const float* __restrict__ dy, const float* __restrict__ wt,
                                             float* __restrict__ dx) {
    conv2d_data_backward<TC_BF16, true>(FM_CONV_SHAPE, dy, wt, dx);
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
    __device__ __forceinline__ const float* pa(Row r, int kk) const {
        int P = s.oh * s.ow;
        int b = kk / P, p = kk - b * P;
        return r.dy + (long long)b * s.outC * P + p;
    }
    __device__ __forceinline__ const float* pb(int kk, Col c) const {
        int P = s.oh * s.ow;
        int b = kk / P, p = kk - b * P;
        int i = p / s.ow, j = p - i * s.ow;
        int ih = i * s.stride + c.u - s.pad, iw = j * s.stride + c.v - s.pad;
        if ((unsigned)ih >= (unsigned)s.h || (unsigned)iw >= (unsigned)s.w) return nullptr;
        return x + (long long)b * s.inC * s.h * s.w + c.choff + ih * s.w + iw;
    }
};

// conv2d_filter_backward_body: conv2d_filter_backward_kernel with TM rows a
// thread (conv_igemm_tile) in precision PR.
template <int TM, int PR, class T>
FM_DEVICE void conv2d_filter_backward_body(T& t, const conv_shape& s, const float* __restrict__ x,
                                           const float* __restrict__ dy, int chunk, float* __restrict__ dw,
                                           float* __restrict__ dbias, double* __restrict__ partial,
                                           double* __restrict__ biasPartial, unsigned* __restrict__ counters) {
    constexpr int BM = 16 * TM;
    const int outC = s.outC;
    const int kdim = s.batch * s.oh * s.ow, n = s.inC * s.k * s.k;
    const int k0 = (int)blockIdx.z * chunk, k1 = imin(kdim, k0 + chunk);
    const int tid = (int)threadIdx.y * 16 + (int)threadIdx.x;
    const bool sumBias = dbias != nullptr && blockIdx.x == 0;  // uniform across the block
    conv_bwd_filter_gather g{s, x, dy};
    conv_acc<TM, PR> acc;
    double asum = 0.0;
    conv_product<TM, true, true, PR>(t, g, outC, n, k0, k1, acc, sumBias, asum);
    const int bo = (int)blockIdx.y * BM + tid;  // the bias row of threads tid < BM
    if (gridDim.z == 1) {
        acc.each(outC, n, [&](int o, int q, float v) { dw[(long long)o * n + q] = v; });
        if (sumBias && tid < BM && bo < outC) dbias[bo] = (float)asum;
        return;
    }
    const long long nw = (long long)outC * n;
    acc.each(outC, n, [&](int o, int q, float v) { partial[blockIdx.z * nw + (long long)o * n + q] = (double)v; });
    if (sumBias && tid < BM && bo < outC) biasPartial[(long long)blockIdx.z * outC + bo] = asum;
    if (!last_block_of(counters + blockIdx.y * gridDim.x + blockIdx.x, gridDim.z)) return;
    // The tile's elements, a thread each in turn (whatever the precision's
    // layout of acc), their chunks added in order z = 0, 1, ...
    for (int e = tid; e < BM * GEMM_BN; e += 256) {
        const int o = (int)blockIdx.y * BM + e / GEMM_BN, q = (int)blockIdx.x * GEMM_BN + e % GEMM_BN;
        if (o >= outC || q >= n) continue;
        const long long w = (long long)o * n + q;
        double sum = 0.0;
        for (unsigned z = 0; z < gridDim.z; z++) sum += fm_ldcg(partial + z * nw + w);
        dw[w] = (float)sum;
    }
    if (sumBias && tid < BM && bo < outC) {
        double sum = 0.0;
        for (unsigned z = 0; z < gridDim.z; z++) sum += fm_ldcg(biasPartial + (long long)z * outC + bo);
        dbias[bo] = (float)sum;
    }
}

// conv2d_filter_backward: the filter-gradient kernels' dispatch over the
// tile height (as conv2d_forward).
template <int PR, bool R128>
FM_DEVICE void conv2d_filter_backward(const conv_shape& s, const float* __restrict__ x, const float* __restrict__ dy,
                                      int chunk, float* __restrict__ dw, float* __restrict__ dbias,
                                      double* __restrict__ partial, double* __restrict__ biasPartial,
                                      unsigned* __restrict__ counters) {
    using tiles = typename conv_smem<PR, R128 ? 128 : 64>::type;
    FM_SHARED(__align__(16) tiles, t);
    if constexpr (R128)
        conv2d_filter_backward_body<8, PR>(t, s, x, dy, chunk, dw, dbias, partial, biasPartial, counters);
    else if (conv_rows(s.outC) == 32)
        conv2d_filter_backward_body<2, PR>(t, s, x, dy, chunk, dw, dbias, partial, biasPartial, counters);
    else
        conv2d_filter_backward_body<4, PR>(t, s, x, dy, chunk, dw, dbias, partial, biasPartial, counters);
}

// conv2d_filter_backward_kernel: the gradients of sum(dy * y) with respect
// to w and the bias (gpu.Conv.Conv2DBackwardFilter), the sum over batch P
// terms split into gridDim.z chunks of `chunk`: chunk z covers terms
// [z chunk, (z + 1) chunk). The blocks of tile column 0 also sum dy's rows
// (the bias gradient, in double, when dbias is not null). With one chunk
// the block writes dw[o, q] = sum_(b,p) dy[b, o, p] col_b[q, p] and
// dbias[o] = sum_(b,p) dy[b, o, p]; otherwise each block writes its
// chunk's sums, in double, to partial[z, o, q] and biasPartial[z, o], and
// the last block of the tile (last_block_of, counter by gridDim.x + bx)
// adds the chunks in order z = 0, 1, ... and rounds once (as
// bias_grad_reduce_kernel): the same bits on every run.
// Shapes: x (batch, inC, h, w); dy (batch, outC, oh, ow); dw (outC, inC, k,
// k); dbias (outC) or null; partial (gridDim.z, outC, inC k k) and
// biasPartial (gridDim.z, outC) doubles and counters (gridDim.x gridDim.y),
// 0 before the launch (and after it), when gridDim.z > 1. Sizes as
// conv2d_forward_kernel; chunk a positive multiple of 16.
// Launch: grid (ceil(inC k k / 64), ceil(outC / BM), ceil(batch oh ow /
// chunk)), block (16, 16), BM = conv_rows(outC), for outC <= 64 (more: the
// rows128 kernels below).
extern "C" __global__ void __launch_bounds__(256)
    conv2d_filter_backward_kernel(FM_CONV_PARAMS, const float* __restrict__ x, const float* __restrict__ dy,
                                  int chunk, float* __restrict__ dw, float* __restrict__ dbias,
                                  double* __restrict__ partial, double* __restrict__ biasPartial,
                                  unsigned* __restrict__ counters) {
    conv2d_filter_backward<CONV_SIMT, false>(FM_CONV_SHAPE, x, dy, chunk, dw, dbias, partial, biasPartial, counters);
}

// conv2d_{tf32,tf32x3,bf16}_filter_backward_kernel:
// conv2d_filter_backward_kernel with the products on the tensor cores in
// that precision (the chunks' partials and the bias still summed in
// double); the same shapes and launch. At least two blocks an SM: without
// that bound ptxas held tf32x3's to 80 registers and spilled.
extern "C" __global__ void __launch_bounds__(256, 2)
    conv2d_tf32_filter_backward_kernel(FM_CONV_PARAMS, const float* __restrict__ x, const float* __restrict__ dy,
                                     int chunk, float* __restrict__ dw, float* __restrict__ dbias,
                                     double* __restrict__ partial, double* __restrict__ biasPartial,
                                     unsigned* __restrict__ counters) {
    conv2d_filter_backward<TC_TF32, false>(FM_CONV_SHAPE, x, dy, chunk, dw, dbias, partial, biasPartial, counters);
}
extern "C" __global__ void __launch_bounds__(256, 2)
    conv2d_tf32x3_filter_backward_kernel(FM_CONV_PARAMS, const float* __restrict__ x, const float* __restrict__ dy,
                                     int chunk, float* __restrict__ dw, float* __restrict__ dbias,
                                     double* __restrict__ partial, double* __restrict__ biasPartial,
                                     unsigned* __restrict__ counters) {
    conv2d_filter_backward<TC_TF32X3, false>(FM_CONV_SHAPE, x, dy, chunk, dw, dbias, partial, biasPartial, counters);
}
extern "C" __global__ void __launch_bounds__(256, 2)
    conv2d_bf16_filter_backward_kernel(FM_CONV_PARAMS, const float* __restrict__ x, const float* __restrict__ dy,
                                     int chunk, float* __restrict__ dw, float* __restrict__ dbias,
                                     double* __restrict__ partial, double* __restrict__ biasPartial,
                                     unsigned* __restrict__ counters) {
    conv2d_filter_backward<TC_BF16, false>(FM_CONV_SHAPE, x, dy, chunk, dw, dbias, partial, biasPartial, counters);
}

// conv2d_rows128_filter_backward_kernel and
// conv2d_{tf32,tf32x3,bf16}_rows128_filter_backward_kernel: the
// filter-gradient kernels above for outC > 64, on tiles of 128 rows (TM =
// 8): the same shapes and split; grid (ceil(inC k k / 64), ceil(outC /
// 128), ceil(batch oh ow / chunk)), block (16, 16); the tensor-core ones
// bounded to two blocks an SM, as the forward ones.
extern "C" __global__ void __launch_bounds__(256)
    conv2d_rows128_filter_backward_kernel(FM_CONV_PARAMS, const float* __restrict__ x, const float* __restrict__ dy,
                                  int chunk, float* __restrict__ dw, float* __restrict__ dbias,
                                  double* __restrict__ partial, double* __restrict__ biasPartial,
                                  unsigned* __restrict__ counters) {
    conv2d_filter_backward<CONV_SIMT, true>(FM_CONV_SHAPE, x, dy, chunk, dw, dbias, partial, biasPartial, counters);
}
extern "C" __global__ void __launch_bounds__(256, 2)
    conv2d_tf32_rows128_filter_backward_kernel(FM_CONV_PARAMS, const float* __restrict__ x, const float* __restrict__ dy,
                                  int chunk, float* __restrict__ dw, float* __restrict__ dbias,
                                  double* __restrict__ partial, double* __restrict__ biasPartial,
                                  unsigned* __restrict__ counters) {
    conv2d_filter_backward<TC_TF32, true>(FM_CONV_SHAPE, x, dy, chunk, dw, dbias, partial, biasPartial, counters);
}
extern "C" __global__ void __launch_bounds__(256, 2)
    conv2d_tf32x3_rows128_filter_backward_kernel(FM_CONV_PARAMS, const float* __restrict__ x, const float* __restrict__ dy,
                                  int chunk, float* __restrict__ dw, float* __restrict__ dbias,
                                  double* __restrict__ partial, double* __restrict__ biasPartial,
                                  unsigned* __restrict__ counters) {
    conv2d_filter_backward<TC_TF32X3, true>(FM_CONV_SHAPE, x, dy, chunk, dw, dbias, partial, biasPartial, counters);
}
extern "C" __global__ void __launch_bounds__(256, 2)
    conv2d_bf16_rows128_filter_backward_kernel(FM_CONV_PARAMS, const float* __restrict__ x, const float* __restrict__ dy,
                                  int chunk, float* __restrict__ dw, float* __restrict__ dbias,
                                  double* __restrict__ partial, double* __restrict__ biasPartial,
                                  unsigned* __restrict__ counters) {
    conv2d_filter_backward<TC_BF16, true>(FM_CONV_SHAPE, x, dy, chunk, dw, dbias, partial, biasPartial, counters);
}
