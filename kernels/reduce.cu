// Reductions, deterministic: a first kernel writes one double partial sum
// per block over a fixed split of the input (its grid depends on the length
// only), and sum_final_reduce_kernel adds the partials in one block in a
// fixed order. No float atomics, so the result is the same bits on every
// run and every device; the double accumulation keeps it within float32
// rounding of the exact sum.
#include "common.cuh"

// sum_squares_reduce_kernel: partial[b] = sum over block b's elements of
// x_i^2 (the global gradient norm before clipping).
// Shapes: x (n); partial (gridDim.x) doubles.
// Launch: 1-D grid, 256 threads (a multiple of 32: block_sum_d).
extern "C" __global__ void __launch_bounds__(256)
    sum_squares_reduce_kernel(const float* __restrict__ x, int n, double* __restrict__ partial) {
    double acc = 0.0;
    for (int i = global_tid(); i < n; i += grid_stride()) {
        double v = (double)x[i];
        acc += v * v;
    }
    acc = block_sum_d(acc);
    if (threadIdx.x == 0) partial[blockIdx.x] = acc;
}

// sum_final_reduce_kernel: out[0] = (float)(scale * sum_i partial[i]): the
// second pass of every reduction.
// Shapes: partial (count) doubles, count >= 0; out (1).
// Launch: one block of 256 threads (a multiple of 32: block_sum_d).
extern "C" __global__ void __launch_bounds__(256)
    sum_final_reduce_kernel(const double* __restrict__ partial, int count, double scale, float* __restrict__ out) {
    double acc = 0.0;
    for (int i = threadIdx.x; i < count; i += blockDim.x) acc += partial[i];
    acc = block_sum_d(acc);
    if (threadIdx.x == 0) out[0] = (float)(scale * acc);
}
