// The Attention family (gpu/attention.go): the self-attention pieces besides
// the batched products (products.cu's gemm_batched_*), the row-wise softmax
// and its gradient.
#include "common.cuh"

// warp_max_f: the maximum over the 32 lanes of a warp, in every lane.
// Precondition: all 32 lanes of the warp call it.
FM_DEVICE float warp_max_f(float v) {
    for (int o = 16; o > 0; o >>= 1) v = fmax32(v, __shfl_xor_sync(0xffffffffu, v, o));
    return v;
}

// softmax_forward_kernel: y[r, c] = exp(x[r, c] - m_r) / s_r with m_r =
// max_c x[r, c] and s_r = sum_c exp(x[r, c] - m_r) (gpu.Attention.Softmax):
// the exponentials in float32 (expf), their sum in double in a fixed order
// (lanes, then the warp's butterfly), rounded to float before the division.
// y may alias x.
// Shapes: x, y (rows, cols), cols >= 1.
// Launch: 1-D, one warp per row: ceil(rows / 8) blocks of 256 threads.
extern "C" __global__ void __launch_bounds__(256) softmax_forward_kernel(int rows, int cols, const float* x, float* y) {
    int r = (int)blockIdx.x * ((int)blockDim.x / 32) + (int)threadIdx.x / 32;
    int lane = (int)threadIdx.x & 31;
    if (r >= rows) return;  // uniform across the warp
    const float* xr = x + (long long)r * cols;
    float* yr = y + (long long)r * cols;
    float m = __int_as_float((int)0xff800000u);  // -inf
    for (long long c = lane; c < cols; c += 32) m = fmax32(m, xr[c]);
    m = warp_max_f(m);
    double s = 0.0;
    for (long long c = lane; c < cols; c += 32) s += (double)expf(fm_sub(xr[c], m));
    const float sf = (float)warp_sum_d(s);
    for (long long c = lane; c < cols; c += 32) yr[c] = expf(fm_sub(xr[c], m)) / sf;
}

// softmax_backward_kernel: dx[r, c] = y[r, c] (dy[r, c] - d_r) with d_r =
// sum_c dy[r, c] y[r, c] in double, rounded to float
// (gpu.Attention.SoftmaxBackward). dx may alias dy.
// Shapes: y, dy, dx (rows, cols).
// Launch: 1-D, one warp per row: ceil(rows / 8) blocks of 256 threads.
extern "C" __global__ void __launch_bounds__(256)
    softmax_backward_kernel(int rows, int cols, const float* __restrict__ y, const float* dy, float* dx) {
    int r = (int)blockIdx.x * ((int)blockDim.x / 32) + (int)threadIdx.x / 32;
    int lane = (int)threadIdx.x & 31;
    if (r >= rows) return;  // uniform across the warp
    const long long o = (long long)r * cols;
    double s = 0.0;
    for (long long c = lane; c < cols; c += 32) s += (double)dy[o + c] * (double)y[o + c];
    const float d = (float)warp_sum_d(s);
    for (long long c = lane; c < cols; c += 32) dx[o + c] = fm_mul(y[o + c], fm_sub(dy[o + c], d));
}
