// The Random family (gpu/random.go): fills from the shared Philox streams
// (philox.cuh). Element i of a fill is lane i % 4 of block i / 4 of the
// stream, whatever the launch shape, so the fills equal the CPU backend's.
#include "philox.cuh"

// rand_normal_forward_kernel: dst[i] = std * z_i, z_i the i-th standard
// normal of stream (seed, PurposeGeneric, stream) (gpu.NormalBlock).
// Shapes: dst (n). Launch: 1-D, one thread per Philox block of four
// elements, any grid (grid-stride loop), block <= 256.
extern "C" __global__ void __launch_bounds__(256)
    rand_normal_forward_kernel(float* dst, int n, unsigned long long seed, unsigned long long stream, float std) {
    const long long nb = ((long long)n + 3) / 4;
    for (long long b = global_tid(); b < nb; b += grid_stride()) {
        float z[4];
        normal_block(philox_block(seed, FM_PURPOSE_GENERIC, stream, (unsigned)b), z);
        FM_UNROLL
        for (int l = 0; l < 4; l++) {
            long long i = 4 * b + l;
            if (i < n) dst[i] = fm_mul(std, z[l]);
        }
    }
}

// rand_rademacher_forward_kernel: dst[i] = -1 if the top bit of word i of
// stream (seed, PurposeGeneric, stream) is set, else +1 (Hutchinson probes).
// Shapes: dst (n). Launch: as rand_normal_forward_kernel.
extern "C" __global__ void __launch_bounds__(256)
    rand_rademacher_forward_kernel(float* dst, int n, unsigned long long seed, unsigned long long stream) {
    const long long nb = ((long long)n + 3) / 4;
    for (long long b = global_tid(); b < nb; b += grid_stride()) {
        fm_u32x4 w = philox_block(seed, FM_PURPOSE_GENERIC, stream, (unsigned)b);
        FM_UNROLL
        for (int l = 0; l < 4; l++) {
            long long i = 4 * b + l;
            if (i < n) dst[i] = (w.w[l] >> 31) ? -1.0f : 1.0f;
        }
    }
}

// dropout_forward_kernel: y[i] = 0 where u_i < p, else x[i] * scale, u_i =
// uniform01 of word i of stream (seed, purpose, step) (gpu.Random.Dropout;
// purpose is PurposeDropout | layer << 8, scale gpu.DropoutScale(p)).
// Shapes: x, y (n), which may be the same buffer; stepFrom (2) or null: the
// step's low and high words, read instead of step (a recorded graph).
// Launch: 1-D, one thread per Philox block of four elements, any grid
// (grid-stride loop), block <= 256.
extern "C" __global__ void __launch_bounds__(256)
    dropout_forward_kernel(const float* x, float* y, int n, float p, float scale, unsigned long long seed,
                           unsigned purpose, unsigned long long step, const unsigned* __restrict__ stepFrom) {
    if (stepFrom) step = (unsigned long long)stepFrom[0] | (unsigned long long)stepFrom[1] << 32;
    const long long nb = ((long long)n + 3) / 4;
    for (long long b = global_tid(); b < nb; b += grid_stride()) {
        fm_u32x4 w = philox_block(seed, purpose, step, (unsigned)b);
        FM_UNROLL
        for (int l = 0; l < 4; l++) {
            long long i = 4 * b + l;
            if (i < n) y[i] = uniform01(w.w[l]) < p ? 0.0f : fm_mul(x[i], scale);
        }
    }
}
