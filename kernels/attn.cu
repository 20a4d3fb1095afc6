// The self-attention pieces besides the batched products (gemm.cu's
// gemm_batched_*): row-wise softmax and its gradient, and batched matrix
// transposes (the feature maps between NCHW and tokens x channels).
#include "common.cuh"

// warp_max_f: the maximum over the 32 lanes of a warp, in every lane.
// Precondition: all 32 lanes of the warp call it.
FM_DEVICE float warp_max_f(float v) {
    for (int o = 16; o > 0; o >>= 1) v = fmax32(v, __shfl_xor_sync(0xffffffffu, v, o));
    return v;
}

// softmax_forward_kernel: y[r, c] = exp(x[r, c] - m_r) / s_r with m_r =
// max_c x[r, c] and s_r = sum_c exp(x[r, c] - m_r) (gpu.Backend.Softmax):
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
    for (int c = lane; c < cols; c += 32) m = fmax32(m, xr[c]);
    m = warp_max_f(m);
    double s = 0.0;
    for (int c = lane; c < cols; c += 32) s += (double)expf(fm_sub(xr[c], m));
    const float sf = (float)warp_sum_d(s);
    for (int c = lane; c < cols; c += 32) yr[c] = expf(fm_sub(xr[c], m)) / sf;
}

// softmax_backward_kernel: dx[r, c] = y[r, c] (dy[r, c] - d_r) with d_r =
// sum_c dy[r, c] y[r, c] in double, rounded to float
// (gpu.Backend.SoftmaxBackward). dx may alias dy.
// Shapes: y, dy, dx (rows, cols).
// Launch: 1-D, one warp per row: ceil(rows / 8) blocks of 256 threads.
extern "C" __global__ void __launch_bounds__(256)
    softmax_backward_kernel(int rows, int cols, const float* __restrict__ y, const float* dy, float* dx) {
    int r = (int)blockIdx.x * ((int)blockDim.x / 32) + (int)threadIdx.x / 32;
    int lane = (int)threadIdx.x & 31;
    if (r >= rows) return;  // uniform across the warp
    const long long o = (long long)r * cols;
    double s = 0.0;
    for (int c = lane; c < cols; c += 32) s += (double)dy[o + c] * (double)y[o + c];
    const float d = (float)warp_sum_d(s);
    for (int c = lane; c < cols; c += 32) dx[o + c] = fm_mul(y[o + c], fm_sub(dy[o + c], d));
}

// transpose_forward_kernel: y_z = x_z^T for z < batch, x_z (rows x cols) at
// x + z rows cols and y_z (cols x rows) at y + z rows cols
// (gpu.Backend.Transpose), through a 32 x 33 shared tile so that both the
// reads and the writes are coalesced.
// Shapes: x, y (batch, rows, cols); y must not alias x.
// Launch: grid (ceil(cols / 32), any, any), block (32, 8): block (bx, by,
// bz) takes column tile bx, row tiles by, by + gridDim.y, ... of matrices
// bz, bz + gridDim.z, ...
extern "C" __global__ void __launch_bounds__(256)
    transpose_forward_kernel(int batch, int rows, int cols, const float* __restrict__ x, float* __restrict__ y) {
    FM_SHARED(float, tile, [32][33]);
    const int tx = (int)threadIdx.x, ty = (int)threadIdx.y;
    const int c0 = (int)blockIdx.x * 32;
    const long long mn = (long long)rows * cols;
    for (int z = (int)blockIdx.z; z < batch; z += (int)gridDim.z) {
        const float* xz = x + (long long)z * mn;
        float* yz = y + (long long)z * mn;
        for (int r0 = (int)blockIdx.y * 32; r0 < rows; r0 += (int)gridDim.y * 32) {
            for (int i = ty; i < 32; i += (int)blockDim.y) {
                int r = r0 + i, c = c0 + tx;
                if (r < rows && c < cols) tile[i][tx] = xz[(long long)r * cols + c];
            }
            __syncthreads();
            for (int i = ty; i < 32; i += (int)blockDim.y) {
                int c = c0 + i, r = r0 + tx;
                if (c < cols && r < rows) yz[(long long)c * rows + r] = tile[tx][i];
            }
            __syncthreads();
        }
    }
}
