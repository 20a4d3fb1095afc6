package gpu

import (
	"fmt"
	"math"
)

// The device backend's Conv ops: conv.cu's implicit products, one launch
// per op (the filter gradient's split sum and its bias reduced in the
// kernel), in the backend's precision: fp32 on the SIMT kernels
// (conv2d_<direction>_kernel), the others on the tensor cores
// (conv2d_<precision>_<direction>_kernel, the same shapes and launch: the
// operands are gathered element by element, so unlike the products' 16-byte
// copies they ask nothing of alignment). Products of more than 64 rows run
// the same kernels' 128-row tiles (conv2d_[<precision>_]rows128_<direction>_kernel).

// The Conv ops' directions, convKernels' third index.
const (
	convForward = iota
	convDataBackward
	convFilterBackward
)

// convKernels names the kernel of each precision, tile height (0: 32 or
// 64 rows; 1: 128) and direction (a table: a step's launches allocate
// nothing).
var convKernels = [...][2][3]string{
	PrecisionFP32: {
		{"conv2d_forward_kernel", "conv2d_data_backward_kernel", "conv2d_filter_backward_kernel"},
		{"conv2d_rows128_forward_kernel", "conv2d_rows128_data_backward_kernel", "conv2d_rows128_filter_backward_kernel"},
	},
	PrecisionTF32x3: {
		{"conv2d_tf32x3_forward_kernel", "conv2d_tf32x3_data_backward_kernel", "conv2d_tf32x3_filter_backward_kernel"},
		{"conv2d_tf32x3_rows128_forward_kernel", "conv2d_tf32x3_rows128_data_backward_kernel", "conv2d_tf32x3_rows128_filter_backward_kernel"},
	},
	PrecisionTF32: {
		{"conv2d_tf32_forward_kernel", "conv2d_tf32_data_backward_kernel", "conv2d_tf32_filter_backward_kernel"},
		{"conv2d_tf32_rows128_forward_kernel", "conv2d_tf32_rows128_data_backward_kernel", "conv2d_tf32_rows128_filter_backward_kernel"},
	},
	PrecisionBF16: {
		{"conv2d_bf16_forward_kernel", "conv2d_bf16_data_backward_kernel", "conv2d_bf16_filter_backward_kernel"},
		{"conv2d_bf16_rows128_forward_kernel", "conv2d_bf16_rows128_data_backward_kernel", "conv2d_bf16_rows128_filter_backward_kernel"},
	},
}

// convKernel names the kernel of a Conv op's direction in the backend's
// precision for a product of m rows.
func (d *DeviceBackend) convKernel(direction, m int) string {
	tall := 0
	if convRows(m) == 128 {
		tall = 1
	}
	return convKernels[d.prec][tall][direction]
}

// convArgs appends the kernels' ten shape arguments (FM_CONV_PARAMS).
func convArgs(k *kernelCall, s ConvShape) *kernelCall {
	return k.i32(s.Batch).i32(s.InC).i32(s.H).i32(s.W).i32(s.OutC).i32(s.K).i32(s.Stride).i32(s.Pad).
		i32(s.OutH()).i32(s.OutW())
}

// convRows is the rows of the implicit GEMMs' output tiles for m rows
// (conv.cu's conv_rows): 32 for at most 32, where a 64-row tile would be
// half empty; 64 for at most 64; else 128, where each gathered element
// serves twice the rows of a 64-row tile.
func convRows(m int) int {
	switch {
	case m <= 32:
		return 32
	case m <= 64:
		return 64
	}
	return 128
}

// tileGrid is the implicit GEMM's grid over an m x n output (convRows(m) x
// 64 tiles).
func tileGrid(what string, m, n, z int) dim3 {
	gy := (m + convRows(m) - 1) / convRows(m)
	gx := (n + gemmTile - 1) / gemmTile
	if gy > 65535 || gx > math.MaxInt32 || z > 65535 {
		panic(fmt.Sprintf("gpu: %s: grid (%d, %d, %d) beyond the device's limits", what, gx, gy, z))
	}
	return dim3{uint32(gx), uint32(gy), uint32(z)}
}

func (d *DeviceBackend) Conv2D(s ConvShape, x, w, bias, y Buffer) {
	checkConv2D(s, x, w, bias, y)
	if s.Batch == 0 || !d.usable(x, w, bias, y) {
		return
	}
	k := d.call(d.convKernel(convForward, s.OutC), tileGrid("Conv2D", s.OutC, s.Batch*s.OutH()*s.OutW(), 1), gemmBlock)
	d.launch(convArgs(k, s).ptr(d.ptr(x)).ptr(d.ptr(w)).ptr(d.ptr(bias)).ptr(d.ptr(y)))
}

func (d *DeviceBackend) Conv2DBackwardData(s ConvShape, dy, w, dx Buffer) {
	checkConv2DBackwardData(s, dy, w, dx)
	if s.Batch == 0 || !d.usable(dy, w, dx) {
		return
	}
	k := d.call(d.convKernel(convDataBackward, s.InC), tileGrid("Conv2DBackwardData", s.InC, s.Batch*s.H*s.W, 1), gemmBlock)
	d.launch(convArgs(k, s).ptr(d.ptr(dy)).ptr(d.ptr(w)).ptr(d.ptr(dx)))
}

// The filter gradient's sum over batch x positions is split into chunks
// (blockIdx.z) when its output tiles (convRows x 64) alone would leave the
// GPU idle: enough chunks for about filterBlocks blocks (several waves on a
// GPU of 100+ SMs holding 2 or 3 of these blocks each), each of at least
// filterMinChunk and at most filterMaxChunk terms (float32 accumulation
// within a chunk, double across). The split depends on the shape only.
const (
	filterBlocks   = 1024
	filterMinChunk = 256
	filterMaxChunk = 4096
)

// filterSplit returns the chunk length (a multiple of the tile depth 16)
// and the number of chunks for a sum of kdim terms over tiles output tiles.
func filterSplit(kdim, tiles int) (chunk, splits int) {
	splits = min((filterBlocks+tiles-1)/tiles, (kdim+filterMinChunk-1)/filterMinChunk)
	splits = max(splits, (kdim+filterMaxChunk-1)/filterMaxChunk, 1)
	chunk = max((kdim+splits-1)/splits, (kdim+65534)/65535)
	chunk = (chunk + 15) / 16 * 16
	return chunk, (kdim + chunk - 1) / chunk
}

func (d *DeviceBackend) Conv2DBackwardFilter(s ConvShape, x, dy, dw, dbias Buffer) {
	checkConv2DBackwardFilter(s, x, dy, dw, dbias)
	if !d.usable(x, dy, dw, dbias) {
		return
	}
	p := s.OutH() * s.OutW()
	nw := s.OutC * s.InC * s.K * s.K
	if s.Batch == 0 {
		d.Fill(dw.Slice(0, nw), 0)
		if dbias != nil {
			d.Fill(dbias.Slice(0, s.OutC), 0)
		}
		return
	}
	kdim, n := s.Batch*p, s.InC*s.K*s.K
	grid := tileGrid("Conv2DBackwardFilter", s.OutC, n, 1)
	chunk, splits := filterSplit(kdim, int(grid.x*grid.y))
	grid.z = uint32(splits)
	var partial, biasPartial, counters devPtr
	if splits > 1 {
		partial = d.scratchPtr(8*splits*nw + 8*splits*s.OutC)
		biasPartial = partial + devPtr(8*splits*nw)
		counters = d.countersPtr(int(grid.x * grid.y))
	}
	k := d.call(d.convKernel(convFilterBackward, s.OutC), grid, gemmBlock)
	d.launch(convArgs(k, s).ptr(d.ptr(x)).ptr(d.ptr(dy)).i32(chunk).ptr(d.ptr(dw)).ptr(d.ptr(dbias)).
		ptr(partial).ptr(biasPartial).ptr(counters))
}
