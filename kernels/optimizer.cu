// The Optimizer family (gpu/optimizer.go): the fused optimizer step, Adam
// or AdamW with gradient clipping by the global norm and the EMA of the
// weights over all parameters in one pass, and the sum of squares the
// norm comes from.
#include "common.cuh"

// adam_ema_update_kernel: one step over n parameters (gpu.Optimizer.AdamEMA).
// With gss = gradSumSq[0] (read from device memory: no host round trip):
//   if gss is not finite: nothing changes, and status[0] = step if it was 0;
//   clip = maxGradNorm / (sqrt(gss) + 1e-6) if maxGradNorm > 0 and
//          sqrt(gss) > maxGradNorm, else 1 (in double, rounded to float);
//   g = clip grad (+ wd p unless decoupled)
//   m = b1 m + (1-b1) g;  v = b2 v + (1-b2) g^2
//   p -= lr (m ib1 / (sqrt(v ib2) + eps) (+ wd p if decoupled))
//   ema = d ema + (1-d) p  when d = emaDecay > 0 (ema may be null otherwise)
// in float32 with the CPU backend's rounding (ib1 = 1/(1-b1^t), ib2
// likewise). When scalars is not null, lr, ib1 = 1/scalars[1], ib2 =
// 1/scalars[2], emaDecay (when the argument is > 0) and step come from it
// (gpu.AdamScalar*: a recorded graph replays with each step's values).
// Shapes: p, grad, m, v, ema (n); gradSumSq, status (1); scalars (5) or
// null.
// Launch: 1-D, at least one block (for the status), any grid (grid-stride
// loop), block <= 256.
extern "C" __global__ void __launch_bounds__(256)
    adam_ema_update_kernel(float* __restrict__ p, const float* __restrict__ grad, float* __restrict__ m,
                           float* __restrict__ v, float* __restrict__ ema, const float* __restrict__ gradSumSq,
                           float* __restrict__ status, float lr, float b1, float b2, float eps, float wd,
                           int decoupled, float ib1, float ib2, float emaDecay, float maxGradNorm, float step, int n,
                           const float* __restrict__ scalars) {
    if (scalars) {
        lr = scalars[0];
        ib1 = fm_rcp(scalars[1]);
        ib2 = fm_rcp(scalars[2]);
        if (emaDecay > 0.0f) emaDecay = scalars[3];
        step = scalars[4];
    }
    double gss = (double)gradSumSq[0];
    if (!isfinite(gss)) {
        if (blockIdx.x == 0 && threadIdx.x == 0 && status[0] == 0.0f) status[0] = step;
        return;
    }
    float clip = 1.0f;
    if (maxGradNorm > 0.0f) {
        double norm = sqrt(gss);
        if (norm > (double)maxGradNorm) clip = (float)((double)maxGradNorm / (norm + 1e-6));
    }
    float omb1 = fm_sub(1.0f, b1), omb2 = fm_sub(1.0f, b2), omd = fm_sub(1.0f, emaDecay);
    for (long long i = global_tid(); i < n; i += grid_stride()) {
        float pi = p[i];
        float gi = fm_mul(clip, grad[i]);
        if (wd != 0.0f && !decoupled) gi = fm_add(gi, fm_mul(wd, pi));
        float mi = fm_add(fm_mul(b1, m[i]), fm_mul(omb1, gi));
        float vi = fm_add(fm_mul(b2, v[i]), fm_mul(fm_mul(omb2, gi), gi));
        m[i] = mi;
        v[i] = vi;
        float upd = fm_mul(mi, ib1) / fm_add(sqrtf(fm_mul(vi, ib2)), eps);
        if (decoupled) upd = fm_add(upd, fm_mul(wd, pi));
        pi = fm_sub(pi, fm_mul(lr, upd));
        p[i] = pi;
        if (emaDecay > 0.0f) ema[i] = fm_add(fm_mul(emaDecay, ema[i]), fm_mul(omd, pi));
    }
}

// sum_squares_reduce_kernel: out[0] = (float) sum x_i^2 (the global
// gradient norm before clipping), in double in one pass: each block's
// partial to partial[b], the last block (last_block_of) adds them as
// sum_final_reduce_kernel does.
// Shapes: x (n); partial (gridDim.x) doubles; counter (1), 0 before the
// launch (and after it); out (1).
// Launch: 1-D grid (fixed by n), 256 threads (a multiple of 32: block_sum_d).
extern "C" __global__ void __launch_bounds__(256)
    sum_squares_reduce_kernel(const float* __restrict__ x, int n, double* __restrict__ partial,
                              unsigned* __restrict__ counter, float* __restrict__ out) {
    double acc = 0.0;
    for (long long i = global_tid(); i < n; i += grid_stride()) {
        double v = (double)x[i];
        acc += v * v;
    }
    acc = block_sum_d(acc);
    if (threadIdx.x == 0) partial[blockIdx.x] = acc;
    if (!last_block_of(counter, gridDim.x)) return;
    acc = final_sum_d(partial, (int)gridDim.x);
    if (threadIdx.x == 0) out[0] = (float)acc;
}
