// The second passes of the deterministic reductions, shared by several
// families: a first kernel writes one double partial sum per block (or per
// chunk of rows) over a split fixed by the sizes only, never by the device,
// and these add the partials in a fixed order. No float atomics, so the
// result is the same bits on every run and every device; the double
// accumulation keeps it within float32 rounding of the exact sum.
#include "common.cuh"

// sum_final_reduce_kernel: out[0] = (float)(scale * sum_i partial[i]): the
// second pass of every reduction to one number (MSELoss, SumSquares,
// ErrorNorm).
// Shapes: partial (count) doubles, count >= 0; out (1).
// Launch: one block of 256 threads (a multiple of 32: block_sum_d).
extern "C" __global__ void __launch_bounds__(256)
    sum_final_reduce_kernel(const double* __restrict__ partial, int count, double scale, float* __restrict__ out) {
    double acc = 0.0;
    for (int i = threadIdx.x; i < count; i += blockDim.x) acc += partial[i];
    acc = block_sum_d(acc);
    if (threadIdx.x == 0) out[0] = (float)(scale * acc);
}

// bias_grad_reduce_kernel: dBias[c] = (float) sum_k partial[k, c], the chunks
// in order: the second pass of column sums (BiasActBackward's bias
// gradient, Conv2DBackwardFilter's split product).
// Shapes: partial (chunks, cols) doubles; dBias (cols).
// Launch: 1-D, any grid (grid-stride loop over columns), block <= 256.
extern "C" __global__ void __launch_bounds__(256)
    bias_grad_reduce_kernel(const double* __restrict__ partial, int chunks, int cols, float* __restrict__ dBias) {
    for (long long c = global_tid(); c < cols; c += grid_stride()) {
        double s = 0.0;
        for (int k = 0; k < chunks; k++) s += partial[(long long)k * cols + c];
        dBias[c] = (float)s;
    }
}
