// The Draw family (gpu/draw.go): x_t and u_t of a conditional probability
// path (flow/path.go, docs/math.md) in one pass over x0, x1 and t, the
// fused training draw that also draws the batch indices, times and noise
// in-kernel with Philox, as the CPU backend does, and the class labels of
// the drawn rows.
#include "philox.cuh"

// Path kinds: flow.Kind (flow/path.go), part of this ABI.
#define FM_PATH_OT 0
#define FM_PATH_LINEAR_VP 1
#define FM_PATH_COSINE 2
#define FM_PATH_VP 3
#define FM_PATH_VE 4

// Time samplers: flow.TimeKind (flow/time.go).
#define FM_TIME_UNIFORM 0
#define FM_TIME_LOGIT_NORMAL 1

// path_coef: the coefficients (sigma_t, alpha_t, sigma'_t, alpha'_t) of
// flow.Path.At, evaluated in double as flow/path.go does and rounded to
// float like flow.TargetRow. p0, p1 are the kind's parameters: ot
// sigma_min; vp beta_min, beta_max; ve sigma_min, sigma_max.
FM_DEVICE void path_coef(int kind, double p0, double p1, double t, float c[4]) {
    const double half_pi = 1.57079632679489661923;
    double alpha, sigma, dalpha, dsigma;
    switch (kind) {
        case FM_PATH_LINEAR_VP: {
            double s = sqrt((1 - t) * (1 + t));
            alpha = t, sigma = s, dalpha = 1, dsigma = -t / s;
            break;
        }
        case FM_PATH_COSINE: {
            double sn, cs;
            sincos(half_pi * t, &sn, &cs);
            alpha = sn, sigma = cs, dalpha = half_pi * cs, dsigma = -half_pi * sn;
            break;
        }
        case FM_PATH_VP: {
            double s = 1 - t;
            double T = p0 * s + 0.5 * (p1 - p0) * s * s;
            double beta = p0 + (p1 - p0) * s;
            double a = exp(-T / 2);
            double da = 0.5 * beta * a;
            double sig = sqrt(-expm1(-T));
            alpha = a, sigma = sig, dalpha = da, dsigma = -a * da / sig;
            break;
        }
        case FM_PATH_VE: {
            double l = log(p1 / p0);
            double sig = p0 * exp(l * (1 - t));
            alpha = 1, sigma = sig, dalpha = 0, dsigma = -l * sig;
            break;
        }
        default: {  // FM_PATH_OT
            double k = 1 - p0;
            alpha = t, sigma = 1 - k * t, dalpha = 1, dsigma = -k;
        }
    }
    c[0] = (float)sigma;
    c[1] = (float)alpha;
    c[2] = (float)dsigma;
    c[3] = (float)dalpha;
}

// path_apply: xt = sigma x0 + alpha x1, ut = sigma' x0 + alpha' x1 in
// float32 without contraction (flow.TargetRow).
FM_DEVICE void path_apply(const float c[4], float z, float y, float* xt, float* ut) {
    *xt = fm_add(fm_mul(c[0], z), fm_mul(c[1], y));
    *ut = fm_add(fm_mul(c[2], z), fm_mul(c[3], y));
}

// path_target_forward_kernel: for rows x d inputs,
//   xt[r, j] = sigma_t x0[r, j] + alpha_t x1[r, j]
//   ut[r, j] = sigma'_t x0[r, j] + alpha'_t x1[r, j],   t = t[r].
// Shapes: x0, x1, xt, ut (rows, d) row-major; t (rows); xt, ut must not
// alias x0 or x1. Launch: 1-D grid of ceil(rows / rpb) blocks of 256
// threads, 1 <= rpb <= 256 rows per block (the block computes each row's
// coefficients once, in shared memory).
extern "C" __global__ void __launch_bounds__(256)
    path_target_forward_kernel(int kind, double p0, double p1, int rows, int d, const float* __restrict__ x0,
                               const float* __restrict__ x1, const float* __restrict__ t, float* __restrict__ xt,
                               float* __restrict__ ut, int rpb) {
    FM_SHARED(float, coef, [256][4]);
    int r0 = (int)blockIdx.x * rpb;
    int nr = imin(rpb, rows - r0);
    if ((int)threadIdx.x < nr) path_coef(kind, p0, p1, (double)t[r0 + threadIdx.x], coef[threadIdx.x]);
    __syncthreads();
    // Element e = rr d + j of the block's rows; stepping e by blockDim.x
    // steps (rr, j) by (q, rem) with a carry, so no division per element.
    const int base = r0 * d, ne = nr * d, step = (int)blockDim.x;
    const int q = step / d, rem = step % d;
    int rr = (int)threadIdx.x / d, j = (int)threadIdx.x % d;
    for (long long e = threadIdx.x; e < ne; e += step) {
        const int i = base + (int)e;
        path_apply(coef[rr], x0[i], x1[i], &xt[i], &ut[i]);
        rr += q;
        j += rem;
        if (j >= d) {
            j -= d;
            rr++;
        }
    }
}

// time_transform: flow.TimeSampler.Transform: u for uniform, sigmoid(mean +
// std n) for logit-normal, then the shift t' = shift t / (1 + (shift-1) t)
// unless shift is 0 or 1.
FM_DEVICE double time_transform(int kind, double mean, double std, double shift, double u, double n) {
    double t = u;
    if (kind == FM_TIME_LOGIT_NORMAL) t = 1 / (1 + exp(-(mean + std * n)));
    if (shift != 0 && shift != 1) t = shift * t / (1 + (shift - 1) * t);
    return t;
}

// draw_batch_forward_kernel: the fused training draw (gpu.Draw.DrawBatch).
// For each row r, with blk = r / 4 and lane = r % 4 of the Philox streams
// (seed, purpose, step):
//   i    = index_below(word(PurposeIndex), nData)
//   t[r] = clamp(transform(uniform01(word(PurposeTimeU)),
//                          normal(PurposeTimeN)), tLo, tHi) rounded to float
//   x0[r, j] = priorStd * normal e of PurposeNoise, e = r d + j (priorStd 1)
//   x1[r, j] = data[i, j]
// and xt, ut as path_target_forward_kernel.
// Shapes: data (nData, d), 1 <= nData < 2^32; x0, x1, xt, ut (rows, d); t
// (rows). x0 and x1 may be null (not written). stepFrom, when not null,
// holds the step instead of step (its low and high 32 bits: a recorded
// graph draws a new batch at each replay). Launch: as
// path_target_forward_kernel; each thread of phase 2 makes one Philox block
// of four normals.
extern "C" __global__ void __launch_bounds__(256) draw_batch_forward_kernel(
    unsigned long long seed, unsigned long long step, int kind, double p0, double p1, double tLo, double tHi,
    float priorStd, int timeKind, double tMean, double tStd, double tShift, const float* __restrict__ data,
    unsigned nData, int d, int rows, float* __restrict__ x0, float* __restrict__ x1, float* __restrict__ t, float* __restrict__ xt,
    float* __restrict__ ut, int rpb, const unsigned* __restrict__ stepFrom) {
    FM_SHARED(float, coef, [256][4]);
    if (stepFrom) step = (unsigned long long)stepFrom[0] | (unsigned long long)stepFrom[1] << 32;
    FM_SHARED(unsigned, idx, [256]);
    int r0 = (int)blockIdx.x * rpb;
    int nr = imin(rpb, rows - r0);
    if ((int)threadIdx.x < nr) {
        int r = r0 + (int)threadIdx.x;
        unsigned blk = (unsigned)r / 4, lane = (unsigned)r % 4;
        fm_u32x4 wi = philox_block(seed, FM_PURPOSE_INDEX, step, blk);
        float u = uniform01(lane_of(philox_block(seed, FM_PURPOSE_TIME_U, step, blk), lane));
        float nrm = 0.0f;
        if (timeKind == FM_TIME_LOGIT_NORMAL) {
            float z[4];
            normal_block(philox_block(seed, FM_PURPOSE_TIME_N, step, blk), z);
            nrm = lane_of4(z, lane);
        }
        double tt = time_transform(timeKind, tMean, tStd, tShift, (double)u, (double)nrm);
        tt = fmin(fmax(tt, tLo), tHi);
        float tv = (float)tt;
        t[r] = tv;
        idx[threadIdx.x] = index_below(lane_of(wi, lane), nData);
        path_coef(kind, p0, p1, (double)tv, coef[threadIdx.x]);
    }
    __syncthreads();
    if (nr <= 0 || d <= 0) return;
    const int e0 = r0 * d, e1 = (r0 + nr) * d;
    const int b0 = e0 / 4, b1 = (e1 - 1) / 4;
    for (int b = b0 + (int)threadIdx.x; b <= b1; b += blockDim.x) {
        float z[4];
        normal_block(philox_block(seed, FM_PURPOSE_NOISE, step, (unsigned)b), z);
        FM_UNROLL
        for (int l = 0; l < 4; l++) {
            const long long el = 4 * (long long)b + l;  // past e1 < 2^31 by up to 3
            if (el < e0 || el >= e1) continue;
            const int e = (int)el, rr = e / d - r0, j = e % d;
            float zz = fm_mul(priorStd, z[l]);
            float y = data[(long long)idx[rr] * d + j];
            if (x0) x0[e] = zz;
            if (x1) x1[e] = y;
            path_apply(coef[rr], zz, y, &xt[e], &ut[e]);
        }
    }
}

// draw_labels_forward_kernel: the class labels of draw_batch_forward_kernel's
// rows (gpu.Draw.DrawLabels). For row r, with blk = r / 4 and lane =
// r % 4 of the Philox streams (seed, purpose, step):
//   i    = index_below(word(PurposeIndex), nData)    (draw_batch's index)
//   u    = uniform01(word(PurposeLabelDrop))
//   y[r] = u < dropout ? null : labels[i]
// Shapes: labels (nData), 1 <= nData < 2^32; y (rows); stepFrom (2) or
// null, as draw_batch_forward_kernel's.
// Launch: 1-D, one thread per Philox block of four rows, any grid
// (grid-stride loop), block <= 256.
extern "C" __global__ void __launch_bounds__(256)
    draw_labels_forward_kernel(unsigned long long seed, unsigned long long step, const float* __restrict__ labels,
                               unsigned nData, int rows, float dropout, float null_label, float* __restrict__ y,
                               const unsigned* __restrict__ stepFrom) {
    if (stepFrom) step = (unsigned long long)stepFrom[0] | (unsigned long long)stepFrom[1] << 32;
    const long long nb = ((long long)rows + 3) / 4;
    for (long long blk = global_tid(); blk < nb; blk += grid_stride()) {
        fm_u32x4 wi = philox_block(seed, FM_PURPOSE_INDEX, step, (unsigned)blk);
        fm_u32x4 wd = philox_block(seed, FM_PURPOSE_LABEL_DROP, step, (unsigned)blk);
        FM_UNROLL
        for (int l = 0; l < 4; l++) {
            const long long r = 4 * blk + l;
            if (r >= rows) break;
            float u = uniform01(wd.w[l]);
            y[r] = u < dropout ? null_label : labels[index_below(wi.w[l], nData)];
        }
    }
}
