// Buffer initialisation: constant fills and one-hot columns.
#include "common.cuh"

// fill_forward_kernel: dst[i] = v for i in [0, n).
// Shapes: dst (n). Launch: 1-D, any grid (grid-stride loop), block <= 256.
extern "C" __global__ void __launch_bounds__(256) fill_forward_kernel(float* dst, float v, int n) {
    for (int i = global_tid(); i < n; i += grid_stride()) dst[i] = v;
}

// unit_column_forward_kernel: e[r, c] = (c == j) for a rows x cols matrix:
// the probe vectors of the exact divergence.
// Shapes: e (rows, cols) row-major, n = rows * cols, 0 <= j < cols.
// Launch: 1-D, any grid (grid-stride loop), block <= 256.
extern "C" __global__ void __launch_bounds__(256)
    unit_column_forward_kernel(float* e, int n, int cols, int j) {
    for (int i = global_tid(); i < n; i += grid_stride()) e[i] = (i % cols == j) ? 1.0f : 0.0f;
}
