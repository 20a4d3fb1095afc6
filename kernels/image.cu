// The U-Net's elementwise and data-movement ops over NCHW images: the
// activation, the per-image channel bias (time embedding) and its
// gradient's channel sums, nearest-neighbour 2x upsampling and its
// gradient, channel-range copies (skip concatenations), and the class
// labels: one-hot rows and the class-conditional training draw.
#include "philox.cuh"

// gpu.PurposeLabelDrop (gpu/philox.go), part of this ABI: the label
// dropout uniforms of the class-conditional draw.
#define FM_PURPOSE_LABEL_DROP 6u

// activate_forward_kernel: y[i] = act(x[i]) (gpu.Backend.Activate), as
// gpu/cpu.go in float32: silu(z) = z / (1 + exp(-z)); none copies. y may
// alias x.
// Shapes: x, y (n). Launch: 1-D, any grid (grid-stride loop), block <= 256.
extern "C" __global__ void __launch_bounds__(256) activate_forward_kernel(int act, const float* x, float* y, int n) {
    for (int i = global_tid(); i < n; i += grid_stride()) {
        float z = x[i];
        y[i] = act == FM_ACT_SILU ? silu_f(z) : z;
    }
}

// add_channel_bias_forward_kernel: y[r, p] = x[r, p] + bias[r] for the
// rows r = b C + c of batch x C planes of hw positions
// (gpu.Backend.AddChannelBias): one float32 addition, bit-identical to the
// CPU. y may alias x.
// Shapes: x, y (rows, hw); bias (rows). Launch: 1-D, any grid (grid-stride
// loop), block <= 256.
extern "C" __global__ void __launch_bounds__(256)
    add_channel_bias_forward_kernel(int rows, int hw, const float* x, const float* __restrict__ bias, float* y) {
    const int n = rows * hw;
    for (int i = global_tid(); i < n; i += grid_stride()) y[i] = fm_add(x[i], bias[i / hw]);
}

// channel_sum_reduce_kernel: out[r] = sum_p x[r, p] in double, rounded once
// (gpu.Backend.ChannelSum: AddChannelBias's bias gradient), in a fixed
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
    for (int p = lane; p < hw; p += 32) s += (double)xr[p];
    s = warp_sum_d(s);
    if (lane == 0) out[r] = (float)s;
}

// upsample2x_forward_kernel: nearest-neighbour upsampling
// (gpu.Backend.Upsample2x): y[pl, i, j] = x[pl, i / 2, j / 2] over planes
// pl of h x w inputs and 2h x 2w outputs. Output row R = pl 2h + i reads
// input row R / 2 = pl h + i / 2.
// Shapes: x (planes, h, w); y (planes, 2h, 2w); y must not alias x.
// Launch: 1-D, any grid (grid-stride loop over outputs), block <= 256.
extern "C" __global__ void __launch_bounds__(256)
    upsample2x_forward_kernel(int planes, int h, int w, const float* __restrict__ x, float* __restrict__ y) {
    const int w2 = 2 * w, n = planes * 4 * h * w;
    for (int o = global_tid(); o < n; o += grid_stride()) {
        int R = o / w2, j = o - R * w2;
        y[o] = x[(long long)(R >> 1) * w + (j >> 1)];
    }
}

// upsample2x_backward_kernel: dx[pl, i, j] = (dy[pl, 2i, 2j] + dy[pl, 2i,
// 2j+1]) + (dy[pl, 2i+1, 2j] + dy[pl, 2i+1, 2j+1]) in float32, paired as
// gpu/cpu_image.go adds them (gpu.Backend.Upsample2xBackward). Input row
// R = pl h + i owns output rows 2R and 2R + 1.
// Shapes: dy (planes, 2h, 2w); dx (planes, h, w); dx must not alias dy.
// Launch: 1-D, any grid (grid-stride loop over inputs), block <= 256.
extern "C" __global__ void __launch_bounds__(256)
    upsample2x_backward_kernel(int planes, int h, int w, const float* __restrict__ dy, float* __restrict__ dx) {
    const int w2 = 2 * w, n = planes * h * w;
    for (int i = global_tid(); i < n; i += grid_stride()) {
        int R = i / w, j = i - R * w;
        const float* d0 = dy + (long long)(2 * R) * w2 + 2 * j;
        const float* d1 = d0 + w2;
        dx[i] = fm_add(fm_add(d0[0], d0[1]), fm_add(d1[0], d1[1]));
    }
}

// copy_channels_forward_kernel: dst[b, dstOff + k, p] = src[b, srcOff + k, p]
// for k < nCh, p < hw (gpu.Backend.CopyChannels). In elements: image b's
// run of len = nCh hw floats starts at b srcStride + srcOff in src and
// b dstStride + dstOff in dst (srcStride = srcC hw, srcOff = srcOff hw, dst
// likewise).
// Shapes: src (batch, srcC, hw); dst (batch, dstC, hw); the runs must not
// overlap. Launch: 1-D, any grid (grid-stride loop), block <= 256.
extern "C" __global__ void __launch_bounds__(256)
    copy_channels_forward_kernel(int batch, int len, const float* src, int srcStride, int srcOff, float* dst,
                                 int dstStride, int dstOff) {
    const int n = batch * len;
    for (int e = global_tid(); e < n; e += grid_stride()) {
        int b = e / len, r = e - b * len;
        dst[(long long)b * dstStride + dstOff + r] = src[(long long)b * srcStride + srcOff + r];
    }
}

// one_hot_forward_kernel: out[r, c] = 1 if labels[r] == c else 0
// (gpu.Backend.OneHot): a label that is not one of 0 .. classes-1 exactly
// (negative, too large, fractional, NaN) gives a zero row.
// Shapes: labels (rows); out (rows, classes).
// Launch: 1-D, any grid (grid-stride loop), block <= 256.
extern "C" __global__ void __launch_bounds__(256)
    one_hot_forward_kernel(int rows, int classes, const float* __restrict__ labels, float* __restrict__ out) {
    const int n = rows * classes;
    for (int i = global_tid(); i < n; i += grid_stride()) {
        int r = i / classes, c = i - r * classes;
        out[i] = labels[r] == (float)c ? 1.0f : 0.0f;
    }
}

// draw_labels_forward_kernel: the class labels of draw_batch_forward_kernel's
// rows (gpu.Backend.DrawLabels). For row r, with blk = r / 4 and lane =
// r % 4 of the Philox streams (seed, purpose, step):
//   i    = index_below(word(PurposeIndex), nData)    (draw_batch's index)
//   u    = uniform01(word(PurposeLabelDrop))
//   y[r] = u < dropout ? null : labels[i]
// Shapes: labels (nData), nData >= 1; y (rows).
// Launch: 1-D, one thread per Philox block of four rows, any grid
// (grid-stride loop), block <= 256.
extern "C" __global__ void __launch_bounds__(256)
    draw_labels_forward_kernel(unsigned long long seed, unsigned long long step, const float* __restrict__ labels,
                               int nData, int rows, float dropout, float null_label, float* __restrict__ y) {
    const int nb = (rows + 3) / 4;
    for (int blk = global_tid(); blk < nb; blk += grid_stride()) {
        fm_u32x4 wi = philox_block(seed, FM_PURPOSE_INDEX, step, (unsigned)blk);
        fm_u32x4 wd = philox_block(seed, FM_PURPOSE_LABEL_DROP, step, (unsigned)blk);
        FM_UNROLL
        for (int l = 0; l < 4; l++) {
            int r = 4 * blk + l;
            if (r >= rows) break;
            float u = uniform01(wd.w[l]);
            y[r] = u < dropout ? null_label : labels[index_below(wi.w[l], (unsigned)nData)];
        }
    }
}
