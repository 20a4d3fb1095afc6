// The Memory family (gpu/memory.go): constant fills.
#include "common.cuh"

// fill_forward_kernel: dst[i] = v for i in [0, n).
// Shapes: dst (n). Launch: 1-D, any grid (grid-stride loop), block <= 256.
extern "C" __global__ void __launch_bounds__(256) fill_forward_kernel(float* dst, float v, int n) {
    for (long long i = global_tid(); i < n; i += grid_stride()) dst[i] = v;
}
