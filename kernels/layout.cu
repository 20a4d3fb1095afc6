// The Layout family (gpu/layout.go): ops over the axes of NCHW feature
// maps and matrices, the per-image channel bias (time embedding) and its
// gradient's channel sums, nearest-neighbour 2x upsampling and its
// gradient, channel-range copies (skip concatenations), and batched
// matrix transposes.
#include "common.cuh"

// add_channel_bias_forward_kernel: y[r, p] = x[r, p] + bias[r] for the
// rows r = b C + c of batch x C planes of hw positions
// (gpu.Layout.AddChannelBias): one float32 addition, bit-identical to the
// CPU. y may alias x.
// Shapes: x, y (rows, hw); bias (rows). Launch: 1-D, any grid (grid-stride
// loop), block <= 256.
extern "C" __global__ void __launch_bounds__(256)
    add_channel_bias_forward_kernel(int rows, int hw, const float* x, const float* __restrict__ bias, float* y) {
    const int n = rows * hw;
    for (long long i = global_tid(); i < n; i += grid_stride()) y[i] = fm_add(x[i], bias[(int)i / hw]);
}

// channel_sum_reduce_kernel: out[r] = sum_p x[r, p] in double, rounded once
// (gpu.Layout.ChannelSum: AddChannelBias's bias gradient), in a fixed
// order (lanes, then the warp's butterfly).
// Shapes: x (rows, hw); out (rows).
// Launch: 1-D, one warp per row: ceil(rows / 8) blocks of 256 threads.
extern "C" __global__ void __launch_bounds__(256)
    channel_sum_reduce_kernel(int rows, int hw, const float* __restrict__ x, float* __restrict__ out) {
    int r = (int)blockIdx.x * ((int)blockDim.x / 32) + (int)threadIdx.x / 32;
    int lane = (int)threadIdx.x & 31;
    if (r >= rows) return;  // uniform across the warp
    const float* xr = x + (long long)r * hw;
    double s = 0.0;
    for (long long p = lane; p < hw; p += 32) s += (double)xr[p];
    s = warp_sum_d(s);
    if (lane == 0) out[r] = (float)s;
}

// upsample2x_forward_kernel: nearest-neighbour upsampling
// (gpu.Layout.Upsample2x): y[pl, i, j] = x[pl, i / 2, j / 2] over planes
// pl of h x w inputs and 2h x 2w outputs. Output row R = pl 2h + i reads
// input row R / 2 = pl h + i / 2.
// Shapes: x (planes, h, w); y (planes, 2h, 2w); y must not alias x.
// Launch: 1-D, any grid (grid-stride loop over outputs), block <= 256.
extern "C" __global__ void __launch_bounds__(256)
    upsample2x_forward_kernel(int planes, int h, int w, const float* __restrict__ x, float* __restrict__ y) {
    const int w2 = 2 * w, n = planes * 4 * h * w;
    for (long long i = global_tid(); i < n; i += grid_stride()) {
        const int o = (int)i, R = o / w2, j = o - R * w2;
        y[o] = x[(long long)(R >> 1) * w + (j >> 1)];
    }
}

// upsample2x_backward_kernel: dx[pl, i, j] = (dy[pl, 2i, 2j] + dy[pl, 2i,
// 2j+1]) + (dy[pl, 2i+1, 2j] + dy[pl, 2i+1, 2j+1]) in float32, paired as
// the CPU backend adds them (gpu.Layout.Upsample2xBackward). Input row
// R = pl h + i owns output rows 2R and 2R + 1.
// Shapes: dy (planes, 2h, 2w); dx (planes, h, w); dx must not alias dy.
// Launch: 1-D, any grid (grid-stride loop over inputs), block <= 256.
extern "C" __global__ void __launch_bounds__(256)
    upsample2x_backward_kernel(int planes, int h, int w, const float* __restrict__ dy, float* __restrict__ dx) {
    const int w2 = 2 * w, n = planes * h * w;
    for (long long e = global_tid(); e < n; e += grid_stride()) {
        const int i = (int)e, R = i / w, j = i - R * w;
        const float* d0 = dy + 2 * (long long)R * w2 + 2 * j;
        const float* d1 = d0 + w2;
        dx[i] = fm_add(fm_add(d0[0], d0[1]), fm_add(d1[0], d1[1]));
    }
}

// copy_channels_forward_kernel: dst[b, dstOff + k, p] = src[b, srcOff + k, p]
// for k < nCh, p < hw (gpu.Layout.CopyChannels). In elements: image b's
// run of len = nCh hw floats starts at b srcStride + srcOff in src and
// b dstStride + dstOff in dst (srcStride = srcC hw, srcOff = srcOff hw, dst
// likewise).
// Shapes: src (batch, srcC, hw); dst (batch, dstC, hw); the runs must not
// overlap. Launch: 1-D, any grid (grid-stride loop), block <= 256.
extern "C" __global__ void __launch_bounds__(256)
    copy_channels_forward_kernel(int batch, int len, const float* src, int srcStride, int srcOff, float* dst,
                                 int dstStride, int dstOff) {
    const int n = batch * len;
    for (long long i = global_tid(); i < n; i += grid_stride()) {
        const int e = (int)i, b = e / len, r = e - b * len;
        dst[(long long)b * dstStride + dstOff + r] = src[(long long)b * srcStride + srcOff + r];
    }
}

// transpose_forward_kernel: y_z = x_z^T for z < batch, x_z (rows x cols) at
// x + z rows cols and y_z (cols x rows) at y + z rows cols
// (gpu.Layout.Transpose), through a 32 x 33 shared tile so that both the
// reads and the writes are coalesced.
// Shapes: x, y (batch, rows, cols); y must not alias x.
// Launch: grid (ceil(cols / 32), any, any), block (32, 8): block (bx, by,
// bz) takes column tile bx, row tiles by, by + gridDim.y, ... of matrices
// bz, bz + gridDim.z, ...
extern "C" __global__ void __launch_bounds__(256)
    transpose_forward_kernel(int batch, int rows, int cols, const float* __restrict__ x, float* __restrict__ y) {
    FM_SHARED(float, tile, [32][33]);
    const int tx = (int)threadIdx.x, ty = (int)threadIdx.y;
    const long long c0 = (long long)blockIdx.x * 32;
    const long long mn = (long long)rows * cols;
    for (long long z = blockIdx.z; z < batch; z += gridDim.z) {
        const float* xz = x + z * mn;
        float* yz = y + z * mn;
        for (long long r0 = (long long)blockIdx.y * 32; r0 < rows; r0 += (long long)gridDim.y * 32) {
            for (int i = ty; i < 32; i += (int)blockDim.y) {
                long long r = r0 + i, c = c0 + tx;
                if (r < rows && c < cols) tile[i][tx] = xz[r * cols + c];
            }
            __syncthreads();
            for (int i = ty; i < 32; i += (int)blockDim.y) {
                long long c = c0 + i, r = r0 + tx;
                if (c < cols && r < rows) yz[c * rows + r] = tile[tx][i];
            }
            __syncthreads();
        }
    }
}
