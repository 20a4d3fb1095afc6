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
