package gpu

import (
	"strings"
	"testing"

	"github.com/fmgpu/fmgpu/flow"
)

// The launches of the U-Net's ops as the device backend describes them
// (every build; the kernels themselves run through the conformance suite
// in the kernelsim build): which kernels each op launches, valid grids and
// blocks, nothing for empty operands, no allocation per call, and the
// products split into row blocks past the grid's limit.

// launched runs op on a fresh recording and returns the kernel names.
func launched(r *recLauncher, op func()) []string {
	r.calls = r.calls[:0]
	op()
	var names []string
	for _, c := range r.calls {
		names = append(names, c.name)
	}
	return names
}

func checkShapes(t *testing.T, calls []kernelCall) {
	t.Helper()
	for _, c := range calls {
		g, b := c.grid, c.block
		if g.x == 0 || g.y == 0 || g.z == 0 || g.y > 65535 || g.z > 65535 || b.x*b.y*b.z == 0 || b.x*b.y*b.z > 256 {
			t.Errorf("%s: grid %v block %v", c.name, g, b)
		}
	}
}

func TestDeviceLaunchesPerOp(t *testing.T) {
	d, r := newRec()
	big := d.Alloc(1 << 22)
	views := map[int]Buffer{}
	buf := func(n int) Buffer { // cached: a step's calls allocate no views
		if v, ok := views[n]; ok {
			return v
		}
		views[n] = big.Slice(0, n)
		return views[n]
	}
	conv := ConvShape{Batch: 4, InC: 8, H: 16, W: 16, OutC: 16, K: 3, Stride: 1, Pad: 1}
	tiny := ConvShape{Batch: 1, InC: 1, H: 4, W: 4, OutC: 2, K: 3, Stride: 1, Pad: 1}
	gn := GroupNormShape{Batch: 4, C: 16, HW: 64, Groups: 4, Eps: 1e-5}
	dr := BatchDraw{Path: flow.DefaultSpec(flow.KindOT), Seed: 1, Step: 2}
	cases := []struct {
		op   string
		run  func()
		want string
	}{
		{"Conv2D", func() { d.Conv2D(conv, buf(1<<20), buf(2000), buf(16), buf(1<<20)) }, "conv2d_forward_kernel"},
		{"Conv2D no bias", func() { d.Conv2D(conv, buf(1<<20), buf(2000), nil, buf(1<<20)) }, "conv2d_forward_kernel"},
		{"Conv2DBackwardData", func() { d.Conv2DBackwardData(conv, buf(1<<20), buf(2000), buf(1<<20)) }, "conv2d_data_backward_kernel"},
		{"Conv2DBackwardFilter split", func() { d.Conv2DBackwardFilter(conv, buf(1<<20), buf(1<<20), buf(2000), buf(16)) },
			"conv2d_filter_backward_kernel"},
		{"Conv2DBackwardFilter one chunk", func() { d.Conv2DBackwardFilter(tiny, buf(100), buf(100), buf(100), nil) },
			"conv2d_filter_backward_kernel"},
		{"Conv2DBackwardFilter empty batch", func() {
			d.Conv2DBackwardFilter(ConvShape{InC: 1, H: 4, W: 4, OutC: 2, K: 3, Stride: 1, Pad: 1}, buf(0), buf(0), buf(18), buf(2))
		}, "fill_forward_kernel fill_forward_kernel"},
		{"GroupNorm", func() { d.GroupNorm(gn, buf(4096), buf(16), buf(16), buf(4096), buf(16), buf(16)) }, "group_norm_forward_kernel"},
		{"GroupNormBackward", func() {
			d.GroupNormBackward(gn, buf(4096), buf(4096), buf(16), buf(16), buf(16), buf(4096), buf(16), buf(16))
		}, "group_norm_backward_kernel"},
		{"GroupNormActBackward", func() {
			d.GroupNormActBackward(gn, ActSiLU, buf(4096), buf(4096), buf(4096), buf(16), nil, buf(16), buf(16), buf(4096), buf(4096), buf(16), buf(16), buf(64))
		}, "group_norm_backward_kernel"},
		{"GroupNormAct", func() {
			d.GroupNormAct(gn, ActSiLU, buf(4096), buf(64), buf(16), buf(16), buf(4096), buf(4096), buf(16), buf(16))
		}, "group_norm_forward_kernel"},
		{"GroupNormBackward empty batch", func() {
			d.GroupNormBackward(GroupNormShape{C: 4, HW: 2, Groups: 2, Eps: 1e-5}, buf(0), buf(0), buf(4), buf(0), buf(0), buf(0), buf(4), buf(4))
		}, "fill_forward_kernel fill_forward_kernel"},
		{"Activate", func() { d.Activate(ActSiLU, buf(1000), buf(1000)) }, "activate_forward_kernel"},
		{"AddChannelBias", func() { d.AddChannelBias(2, 3, 5, buf(30), buf(6), buf(30)) }, "add_channel_bias_forward_kernel"},
		{"ChannelSum", func() { d.ChannelSum(2, 3, 5, buf(30), buf(6)) }, "channel_sum_reduce_kernel"},
		{"Upsample2x", func() { d.Upsample2x(2, 3, 4, 5, buf(120), buf(480)) }, "upsample2x_forward_kernel"},
		{"Upsample2xBackward", func() { d.Upsample2xBackward(2, 3, 4, 5, buf(480), buf(120)) }, "upsample2x_backward_kernel"},
		{"CopyChannels", func() { d.CopyChannels(2, 5, 2, buf(30), 3, 1, buf(40), 4, 2) }, "copy_channels_forward_kernel"},
		{"GemmBatched", func() {
			d.GemmBatched(false, true, 70000, 3, 3, 3, 1, buf(9*70000), 3, 9, buf(9*70000), 3, 9, 0, buf(9*70000), 3, 9)
		},
			"gemm_batched_nt_forward_kernel"},
		{"Gemm weight gradient (split-K)", func() {
			d.Gemm(true, false, 256, 256, 4096, 1, buf(4096*256), 256, buf(4096*256), 256, 0, buf(256*256), 256)
		}, "gemm_tn_split_forward_kernel gemm_split_reduce_kernel"},
		{"LinearBackward (split-K reduced in the kernel)", func() {
			d.LinearBackward(4096, 256, 256, buf(4096*256), buf(4096*256), 256, buf(256*256), buf(256*256), buf(256), 256, ActSiLU, buf(4096*256), 0, buf(4096*256))
		}, "linear_backward_kernel"},
		{"LinearBackward first layer, no input gradient", func() {
			d.LinearBackward(256, 34, 256, buf(256*256), buf(256*34), 34, buf(256*34), buf(256*34), buf(256), 0, ActNone, nil, 0, nil)
		}, "linear_backward_kernel"},
		{"MSELossAccumulate", func() { d.MSELossAccumulate(buf(8192), buf(8192), 1.0/4096, buf(8192), buf(1)) }, "mse_loss_backward_kernel"},
		{"SumSquares", func() { d.SumSquares(buf(133000), buf(1)) }, "sum_squares_reduce_kernel"},
		{"BiasActBackward", func() { d.BiasActBackward(ActSiLU, 1000, 64, buf(64000), buf(64000), buf(64000), buf(64)) }, "bias_act_backward_kernel"},
		{"Gemm forward (tiles fill the GPU)", func() {
			d.Gemm(false, true, 4096, 256, 256, 1, buf(4096*256), 256, buf(256*256), 256, 0, buf(4096*256), 256)
		}, "gemm_nt_forward_kernel"},
		{"Softmax", func() { d.Softmax(17, 49, buf(17*49), buf(17*49)) }, "softmax_forward_kernel"},
		{"SoftmaxBackward", func() { d.SoftmaxBackward(17, 49, buf(17*49), buf(17*49), buf(17*49)) }, "softmax_backward_kernel"},
		{"Transpose", func() { d.Transpose(70000, 3, 5, buf(15*70000), buf(15*70000)) }, "transpose_forward_kernel"},
		{"OneHot", func() { d.OneHot(5, 10, buf(5), buf(50)) }, "one_hot_forward_kernel"},
		{"DrawLabels", func() { d.DrawLabels(dr, buf(100), 100, 17, 0.1, 10, buf(17)) }, "draw_labels_forward_kernel"},
	}
	for _, c := range cases {
		if got := strings.Join(launched(r, c.run), " "); got != c.want {
			t.Errorf("%s launches %q, want %q", c.op, got, c.want)
		}
		checkShapes(t, r.calls)
	}
	if err := d.Sync(); err != nil {
		t.Fatal(err)
	}
	// A step's image ops describe their launches without allocating.
	step := func() {
		for _, c := range cases {
			if !strings.Contains(c.op, "empty") {
				c.run()
			}
		}
		r.calls = r.calls[:0]
	}
	if a := testing.AllocsPerRun(10, step); a > 0 {
		t.Errorf("%.0f allocations per call of these ops", a)
	}
}

// Empty operands of the U-Net's ops launch nothing (CUDA rejects an empty
// grid), except where an op must still write.
func TestDeviceEmptyImageOps(t *testing.T) {
	d, r := newRec()
	z, one := d.Alloc(0), d.Alloc(100)
	names := launched(r, func() {
		d.Conv2D(ConvShape{InC: 1, H: 3, W: 3, OutC: 1, K: 3, Stride: 1, Pad: 1}, z, one, nil, z)
		d.Conv2DBackwardData(ConvShape{InC: 1, H: 3, W: 3, OutC: 1, K: 3, Stride: 1, Pad: 1}, z, one, z)
		d.GroupNorm(GroupNormShape{C: 2, HW: 3, Groups: 1, Eps: 1e-5}, z, one, one, z, z, z)
		d.Activate(ActSiLU, z, z)
		d.AddChannelBias(0, 3, 5, z, z, z)
		d.AddChannelBias(2, 3, 0, z, one, z)
		d.ChannelSum(0, 3, 5, z, z)
		d.Upsample2x(2, 3, 0, 5, z, z)
		d.Upsample2xBackward(0, 3, 4, 5, z, z)
		d.CopyChannels(2, 5, 0, z, 0, 0, z, 0, 0)
		d.GemmBatched(false, false, 0, 3, 3, 3, 1, z, 3, 9, z, 3, 9, 0, z, 3, 9)
		d.GemmBatched(false, false, 2, 0, 3, 3, 1, z, 3, 9, z, 3, 9, 0, z, 3, 9)
		d.Softmax(0, 3, z, z)
		d.SoftmaxBackward(3, 0, z, z, z)
		d.Transpose(0, 3, 3, z, z)
		d.Transpose(3, 0, 3, z, z)
		d.OneHot(0, 10, z, z)
		d.DrawLabels(BatchDraw{}, one, 1, 0, 0.1, 10, z)
	})
	if len(names) != 0 {
		t.Errorf("launches for empty operands: %v", names)
	}
	// A sum over no positions is 0.
	if got := strings.Join(launched(r, func() { d.ChannelSum(2, 3, 0, z, one) }), " "); got != "fill_forward_kernel" {
		t.Errorf("ChannelSum over hw = 0 launches %q", got)
	}
}

// The filter gradient's split covers the sum exactly, in chunks of a
// multiple of 16 terms, within the grid's z limit.
func TestFilterSplit(t *testing.T) {
	for _, kdim := range []int{1, 15, 16, 17, 255, 4096, 4097, 100352, 1 << 24, 1<<31 - 1} {
		for _, tiles := range []int{1, 3, 64, 600} {
			chunk, splits := filterSplit(kdim, tiles)
			if chunk%16 != 0 || splits < 1 || splits > 65535 || splits*chunk < kdim || (splits-1)*chunk >= kdim {
				t.Errorf("filterSplit(%d, %d) = %d, %d", kdim, tiles, chunk, splits)
			}
			if 10*tiles*splits < 9*filterBlocks && chunk > filterMinChunk+15 { // rounding chunks to 16 costs a few
				t.Errorf("filterSplit(%d, %d) = %d, %d: too few blocks", kdim, tiles, chunk, splits)
			}
		}
	}
}

// Products and Linear layers longer than a grid's 65535 row tiles run as
// one launch per block of maxGemmRows rows, each with its operands'
// pointers moved to the block's first row: the device takes the calls the
// CPU takes.
func TestDeviceGemmRowBlocks(t *testing.T) {
	d, r := newRec()
	const m, n, k = maxGemmRows + 100, 3, 5
	a, b, c := d.Alloc(m*k), d.Alloc(k*n), d.Alloc(m*n)
	pa, pc := d.buf(a).a.ptr, d.buf(c).a.ptr
	type want struct {
		rows   int
		aOff   int // elements
		cOff   int
		launch string
	}
	check := func(op string, calls []kernelCall, ws []want, rowsArg, aArg, cArg int) {
		t.Helper()
		if len(calls) != len(ws) {
			t.Fatalf("%s: %d launches, want %d", op, len(calls), len(ws))
		}
		for i, w := range ws {
			k := calls[i]
			if k.name != w.launch || int(int32(k.slots[rowsArg])) != w.rows ||
				devPtr(k.slots[aArg]) != pa+devPtr(4*w.aOff) || devPtr(k.slots[cArg]) != pc+devPtr(4*w.cOff) {
				t.Errorf("%s launch %d: %s rows %d A %#x C %#x, want %+v", op, i, k.name, int32(k.slots[rowsArg]),
					k.slots[aArg], k.slots[cArg], w)
			}
			if gy := k.grid.y; gy > 65535 {
				t.Errorf("%s launch %d: grid y %d", op, i, gy)
			}
		}
	}
	r.calls = nil
	d.Gemm(false, false, m, n, k, 1, a, k, b, n, 0, c, n)
	check("Gemm", r.calls, []want{{maxGemmRows, 0, 0, "gemm_nn_forward_kernel"},
		{100, maxGemmRows * k, maxGemmRows * n, "gemm_nn_forward_kernel"}}, 0, 4, 9)
	// A stored transposed (k x m): a block starts at a column of A.
	r.calls = nil
	d.Gemm(true, false, m, n, k, 1, a, m, b, n, 0, c, n)
	check("Gemm transA", r.calls, []want{{maxGemmRows, 0, 0, "gemm_tn_forward_kernel"},
		{100, maxGemmRows, maxGemmRows * n, "gemm_tn_forward_kernel"}}, 0, 4, 9)
	r.calls = nil
	d.GemmBatched(false, true, 1, m, n, k, 1, a, k, 0, b, k, 0, 0, c, n, 0)
	check("GemmBatched", r.calls, []want{{maxGemmRows, 0, 0, "gemm_batched_nt_forward_kernel"},
		{100, maxGemmRows * k, maxGemmRows * n, "gemm_batched_nt_forward_kernel"}}, 1, 5, 12)
	// Linear: x as A (rows x in), y as C (rows x out).
	w := d.Alloc(n * k)
	r.calls = nil
	d.Linear(m, k, n, a, k, w, nil, ActSiLU, nil, c)
	check("Linear", r.calls, []want{{maxGemmRows, 0, 0, "linear_forward_kernel"},
		{100, maxGemmRows * k, maxGemmRows * n, "linear_forward_kernel"}}, 0, 3, 9)
	if err := d.Sync(); err != nil {
		t.Fatal(err)
	}
}

// Calls no backend can run are programming errors on every backend: each
// op's one argument check (args_test.go runs the same calls on the CPU).
// These are the device-side ones beyond it: a device buffer holds at most
// maxDeviceElems elements, and a larger Alloc fails like one beyond the
// device's memory: a sticky error, not a panic, and no op touches the
// buffer.
func TestDeviceAllocBeyondItsLimit(t *testing.T) {
	d, r := newRec()
	big := d.Alloc(maxDeviceElems + 1)
	if big.Len() != maxDeviceElems+1 {
		t.Fatalf("Len %d", big.Len())
	}
	d.Fill(big, 1)
	if len(r.calls) != 0 {
		t.Errorf("%d launches on a buffer that was never allocated", len(r.calls))
	}
	if err := d.Sync(); err == nil || !strings.Contains(err.Error(), "at most") {
		t.Errorf("Sync() = %v, want the allocation's limit", err)
	}
	d.Fill(big, 1)
	if err := d.Sync(); err == nil || !strings.Contains(err.Error(), "allocation failed") {
		t.Errorf("Sync() after using the buffer = %v", err)
	}
}

// The split-K choice depends on the shape alone, fills about
// gemmSplitTarget blocks, keeps slices of at least gemmMinSlice on k-tile
// boundaries, and covers k exactly.
func TestGemmSplit(t *testing.T) {
	cases := []struct{ m, n, k, splits int }{
		{256, 256, 4096, 16},  // mlp256's weight gradient at batch 4096: 16 tiles
		{512, 512, 4096, 5},   // mlp512's: 64 tiles
		{256, 34, 4096, 16},   // the first layer's (2 inputs + 32 embedding columns)
		{4096, 256, 256, 1},   // forward: 256 tiles already
		{2048, 2048, 2048, 1}, // square
		{256, 256, 256, 1},    // k too short to split
		{5, 3, 4097, 16},      // the conformance suite's long-k shape
	}
	for _, c := range cases {
		splits, slice := gemmSplit(c.m, c.n, c.k)
		if splits != c.splits {
			t.Errorf("gemmSplit(%d, %d, %d) = %d splits, want %d", c.m, c.n, c.k, splits, c.splits)
		}
		if splits == 1 {
			if slice != c.k {
				t.Errorf("gemmSplit(%d, %d, %d): one split of %d", c.m, c.n, c.k, slice)
			}
			continue
		}
		if slice%gemmSliceAlign != 0 || slice < gemmMinSlice || (splits-1)*slice >= c.k || splits*slice < c.k {
			t.Errorf("gemmSplit(%d, %d, %d) = %d slices of %d", c.m, c.n, c.k, splits, slice)
		}
	}
}
