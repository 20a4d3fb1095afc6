package gpu

import (
	"strings"
	"testing"
)

// Which kernels the products launch in each precision (every build: the
// recording launcher): the tensor-core kernels where their operands suit
// the 16-byte copies, with their dynamic shared memory and split-K; the
// SIMT kernels otherwise, visibly. A training whose operands never suit
// them would silently compute in fp32: these say when that happens.
func TestDevicePrecisionDispatch(t *testing.T) {
	// a 3 x 3 convolution of the MNIST U-Net: 32 channels at 14 x 14, batch 2
	convCase := ConvShape{Batch: 2, InC: 32, H: 14, W: 14, OutC: 32, K: 3, Stride: 1, Pad: 1}
	// a 3 x 3 convolution of the CIFAR-10 U-Net, 128 to 256 channels at 8 x
	// 8: more than 64 rows in all three passes, the 128-row kernels
	wide := ConvShape{Batch: 2, InC: 128, H: 8, W: 8, OutC: 256, K: 3, Stride: 1, Pad: 1}
	// 64 channels in, 72 out: the data gradient's 64 rows stay on the
	// 64-row kernel
	mixed := ConvShape{Batch: 1, InC: 64, H: 8, W: 8, OutC: 72, K: 3, Stride: 2, Pad: 1}
	d, r := newRec()
	big := d.Alloc(1 << 22) // its views at offsets of 4 elements are 16-byte aligned
	buf := func(n int) Buffer { return big.Slice(0, n) }
	odd := func(n int) Buffer { return big.Slice(1, n) } // 4 bytes past an aligned address
	cases := []struct {
		prec Precision
		op   string
		run  func()
		want string
	}{
		{PrecisionFP32, "Gemm", func() { d.Gemm(false, true, 4096, 256, 256, 1, buf(1<<20), 256, buf(1<<16), 256, 0, buf(1<<20), 256) },
			"gemm_nt_forward_kernel"},
		{PrecisionTF32, "Gemm", func() { d.Gemm(false, true, 4096, 256, 256, 1, buf(1<<20), 256, buf(1<<16), 256, 0, buf(1<<20), 256) },
			"gemm_tf32_nt_forward_kernel"},
		{PrecisionTF32x3, "Gemm", func() { d.Gemm(true, true, 300, 200, 100, 1, buf(30000), 300, buf(20000), 100, 0, odd(60000), 200) },
			"gemm_tf32x3_tt_forward_kernel"}, // C's stores are scalar: any offset
		{PrecisionTF32, "Gemm, A at an unaligned view", func() { d.Gemm(false, false, 64, 64, 64, 1, odd(4096), 64, buf(4096), 64, 0, buf(4096), 64) },
			"gemm_nn_forward_kernel"},
		{PrecisionTF32, "Gemm, ldb not a multiple of 4", func() { d.Gemm(false, false, 64, 34, 64, 1, buf(4096), 64, buf(4096), 34, 0, buf(4096), 34) },
			"gemm_nn_forward_kernel"},
		{PrecisionTF32, "Gemm, k = 0", func() { d.Gemm(false, false, 64, 64, 0, 1, buf(1), 1, buf(1), 64, 2, buf(4096), 64) },
			"gemm_nn_forward_kernel"},
		{PrecisionTF32, "Gemm weight gradient (split-K)", func() {
			d.Gemm(true, false, 256, 256, 4096, 1, buf(4096*256), 256, buf(4096*256), 256, 0, buf(256*256), 256)
		},
			"gemm_tf32_tn_forward_kernel gemm_split_reduce_kernel"},
		{PrecisionTF32x3, "Linear", func() {
			d.Linear(4096, 256, 256, buf(1<<20), 256, buf(1<<16), buf(256), ActSiLU, buf(1<<20), buf(1<<20))
		},
			"linear_tf32x3_forward_kernel"},
		{PrecisionTF32, "Linear, the MLP's first layer (2 + 32 inputs)", func() { d.Linear(4096, 34, 256, buf(1<<20), 34, buf(1<<16), buf(256), ActSiLU, buf(1<<20), buf(1<<20)) },
			"linear_forward_kernel"},
		{PrecisionTF32, "LinearBackward", func() {
			d.LinearBackward(4096, 256, 256, buf(1<<20), buf(1<<20), 256, buf(1<<16), buf(1<<16), buf(256), 256, ActSiLU, buf(1<<20), 0, buf(1<<20))
		}, "linear_tf32_backward_kernel"},
		{PrecisionTF32, "LinearBackward, x unaligned for the weight gradient", func() {
			d.LinearBackward(4096, 256, 256, buf(1<<20), odd(1<<20), 256, buf(1<<16), buf(1<<16), buf(256), 256, ActSiLU, buf(1<<20), 0, buf(1<<20))
		}, "linear_backward_kernel"},
		{PrecisionTF32, "LinearBackward, input gradient only (x not read)", func() {
			d.LinearBackward(4096, 256, 256, buf(1<<20), odd(1<<20), 256, buf(1<<16), nil, nil, 256, ActSiLU, buf(1<<20), 0, buf(1<<20))
		}, "linear_tf32_backward_kernel"},
		{PrecisionTF32x3, "LinearBackward, the first layer (x of 34 columns)", func() {
			d.LinearBackward(256, 34, 256, buf(256*256), buf(256*34), 34, buf(256*34), buf(256*34), buf(256), 0, ActNone, nil, 0, nil)
		}, "linear_backward_kernel"},
		{PrecisionBF16, "Gemm", func() { d.Gemm(true, false, 300, 200, 100, 1, buf(30000), 300, buf(20000), 200, 0, odd(60000), 200) },
			"gemm_bf16_tn_forward_kernel"},
		{PrecisionBF16, "Gemm, A at an unaligned view", func() { d.Gemm(false, true, 64, 64, 64, 1, odd(4096), 64, buf(4096), 64, 0, buf(4096), 64) },
			"gemm_nt_forward_kernel"},
		{PrecisionBF16, "Linear", func() {
			d.Linear(4096, 256, 256, buf(1<<20), 256, buf(1<<16), buf(256), ActSiLU, buf(1<<20), buf(1<<20))
		},
			"linear_bf16_forward_kernel"},
		{PrecisionBF16, "Linear, the MLP's first layer (2 + 32 inputs)", func() { d.Linear(4096, 34, 256, buf(1<<20), 34, buf(1<<16), buf(256), ActSiLU, buf(1<<20), buf(1<<20)) },
			"linear_forward_kernel"},
		{PrecisionBF16, "LinearBackward", func() {
			d.LinearBackward(4096, 256, 256, buf(1<<20), buf(1<<20), 256, buf(1<<16), buf(1<<16), buf(256), 256, ActSiLU, buf(1<<20), 0, buf(1<<20))
		}, "linear_bf16_backward_kernel"},
		{PrecisionFP32, "Conv2D", func() { d.Conv2D(convCase, buf(1<<16), buf(1<<14), buf(32), buf(1<<16)) },
			"conv2d_forward_kernel"},
		{PrecisionTF32, "Conv2D, operands at unaligned views (gathered element by element)", func() {
			d.Conv2D(convCase, odd(1<<16), odd(1<<14), nil, odd(1<<16))
		}, "conv2d_tf32_forward_kernel"},
		{PrecisionTF32x3, "Conv2DBackwardData", func() { d.Conv2DBackwardData(convCase, buf(1<<16), buf(1<<14), buf(1<<16)) },
			"conv2d_tf32x3_data_backward_kernel"},
		{PrecisionBF16, "Conv2DBackwardFilter", func() { d.Conv2DBackwardFilter(convCase, buf(1<<16), buf(1<<16), buf(1<<14), buf(32)) },
			"conv2d_bf16_filter_backward_kernel"},
		{PrecisionFP32, "Conv2DBackwardFilter", func() { d.Conv2DBackwardFilter(convCase, buf(1<<16), buf(1<<16), buf(1<<14), nil) },
			"conv2d_filter_backward_kernel"},
		{PrecisionFP32, "Conv2D, 256 channels", func() { d.Conv2D(wide, buf(1<<15), buf(1<<19), buf(256), buf(1<<15)) },
			"conv2d_rows128_forward_kernel"},
		{PrecisionTF32, "Conv2D, 256 channels", func() { d.Conv2D(wide, buf(1<<15), buf(1<<19), buf(256), buf(1<<15)) },
			"conv2d_tf32_rows128_forward_kernel"},
		{PrecisionTF32x3, "Conv2DBackwardData, 128 channels", func() { d.Conv2DBackwardData(wide, buf(1<<15), buf(1<<19), buf(1<<15)) },
			"conv2d_tf32x3_rows128_data_backward_kernel"},
		{PrecisionBF16, "Conv2DBackwardFilter, 256 channels", func() { d.Conv2DBackwardFilter(wide, buf(1<<15), buf(1<<15), buf(1<<19), buf(256)) },
			"conv2d_bf16_rows128_filter_backward_kernel"},
		{PrecisionFP32, "Conv2DBackwardData, 64 channels", func() { d.Conv2DBackwardData(mixed, buf(1<<12), buf(1<<16), buf(1<<12)) },
			"conv2d_data_backward_kernel"},
		{PrecisionBF16, "Conv2D, 72 channels", func() { d.Conv2D(mixed, buf(1<<12), buf(1<<16), nil, buf(1<<12)) },
			"conv2d_bf16_rows128_forward_kernel"},
		{PrecisionTF32, "GemmBatched (fp32 in every precision)", func() {
			d.GemmBatched(false, true, 4, 64, 64, 64, 1, buf(4*4096), 64, 4096, buf(4*4096), 64, 4096, 0, buf(4*4096), 64, 4096)
		}, "gemm_batched_nt_forward_kernel"},
	}
	for _, c := range cases {
		if err := SetPrecision(d, c.prec); err != nil {
			t.Fatal(err)
		}
		got := launched(r, c.run)
		if s := strings.Join(got, " "); s != c.want {
			t.Errorf("%s in %s launches %q, want %q", c.op, c.prec, s, c.want)
		}
		checkShapes(t, r.calls)
		for _, k := range r.calls {
			// the tensor-core convolutions keep the SIMT ones' block and
			// static shared memory
			tc := !strings.HasPrefix(k.name, "conv2d_") && (strings.Contains(k.name, "_tf32") || strings.Contains(k.name, "_bf16"))
			if tc && (k.shared != tcSmemBytes || k.block != tcBlock) || !tc && (k.shared != 0 || strings.HasPrefix(k.name, "conv2d_") && k.block != gemmBlock) {
				t.Errorf("%s: %s with block %v and %d bytes of dynamic shared memory", c.op, k.name, k.block, k.shared)
			}
			if k.name == "gemm_tf32_tn_forward_kernel" && k.grid.z < 2 {
				t.Errorf("%s: %s grid %v, want a split over k", c.op, k.name, k.grid)
			}
			// 256 channels in rows of 128 tiles: two; 64 or 72 in one
			wantY := uint32(1)
			if strings.Contains(c.op, "256") {
				wantY = 2
			}
			if strings.HasPrefix(k.name, "conv2d_") && strings.Contains(c.op, "channels") && k.grid.y != wantY {
				t.Errorf("%s: %s grid %v, want %d tile rows", c.op, k.name, k.grid, wantY)
			}
		}
	}
	if err := d.Sync(); err != nil {
		t.Fatal(err)
	}
}

// The tensor-core split is gemmSplit's rule over 128 x 128 tiles, slices
// on TC_BK = 32 boundaries.
func TestTCSplit(t *testing.T) {
	for _, c := range []struct{ m, n, k, splits int }{
		{256, 256, 4096, 16}, // mlp256's weight gradient at batch 4096: 4 tiles, k / gemmMinSlice = 16 slices
		{512, 512, 4096, 16}, // 16 tiles: 17 would fill gemmSplitTarget, k allows 16
		{4096, 256, 256, 1},  // forward: 64 tiles, k too short
		{64, 64, 1100, 4},    // 1100 / 256: slices of 288
	} {
		splits, slice := tcSplit(c.m, c.n, c.k)
		if splits != c.splits {
			t.Errorf("tcSplit(%d, %d, %d) = %d splits, want %d", c.m, c.n, c.k, splits, c.splits)
		}
		if splits == 1 {
			if c.splits != 1 || slice != c.k {
				t.Errorf("tcSplit(%d, %d, %d) = %d of %d", c.m, c.n, c.k, splits, slice)
			}
			continue
		}
		if slice%tcSliceAlign != 0 || (splits-1)*slice >= c.k || splits*slice < c.k {
			t.Errorf("tcSplit(%d, %d, %d) = %d slices of %d", c.m, c.n, c.k, splits, slice)
		}
	}
}

// The CPU backend computes in fp32: it takes tf32x3 (float32 accuracy) and
// refuses tf32 and bf16 with a message saying so; an unknown precision is
// refused.
func TestSetPrecisionCPU(t *testing.T) {
	c := NewCPU(1)
	defer c.Close()
	if err := SetPrecision(c, PrecisionTF32x3); err != nil || PrecisionOf(c) != PrecisionTF32x3 {
		t.Errorf("SetPrecision(tf32x3) = %v, precision %s", err, PrecisionOf(c))
	}
	err := SetPrecision(c, PrecisionTF32)
	if err == nil || !strings.Contains(err.Error(), "CPU backend computes products in fp32") {
		t.Errorf("SetPrecision(tf32) = %v", err)
	}
	err = SetPrecision(c, PrecisionBF16)
	if err == nil || !strings.Contains(err.Error(), "precision bf16 is for a GPU's tensor cores") {
		t.Errorf("SetPrecision(bf16) = %v", err)
	}
	if PrecisionOf(c) != PrecisionTF32x3 {
		t.Errorf("a refused precision changed it to %s", PrecisionOf(c))
	}
	if err := SetPrecision(c, Precision(9)); err == nil {
		t.Error("an unknown precision was accepted")
	}
	for _, p := range Precisions() {
		if q, err := ParsePrecision(p.String()); err != nil || q != p {
			t.Errorf("ParsePrecision(%q) = %v, %v", p, q, err)
		}
	}
	if _, err := ParsePrecision("fp16"); err == nil || !strings.Contains(err.Error(), "fp32, tf32x3, tf32, bf16") {
		t.Errorf("ParsePrecision(fp16) = %v", err)
	}
}
