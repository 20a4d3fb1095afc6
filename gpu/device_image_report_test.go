package gpu_test

import (
	"fmt"
	"math"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/fmgpu/fmgpu/flow"
	"github.com/fmgpu/fmgpu/gpu"
)

// The image ops in the device report's form (device_report_test.go): each
// op once on the device backend and on the CPU backend from the same
// inputs, the normwise difference, then the device's time per op as GB/s
// or TFLOP/s. Shapes are the MNIST U-Net's at batch 128 on a GPU (size 1);
// size s > 1 divides the batch (the kernelsim harness runs them at batch 1).
// Ops the device does with the CPU's float32 roundings must agree bit for
// bit (exact).
type imageReportCase struct {
	reportCase
	exact bool
}

func imageReportCases(s int) []imageReportCase {
	b := max(128/s, 1)
	conv := func(dir int, cs gpu.ConvShape) imageReportCase {
		cs.Batch = b
		nx, nw, ny := cs.Batch*cs.InC*cs.H*cs.W, cs.OutC*cs.InC*cs.K*cs.K, cs.Batch*cs.OutC*cs.OutH()*cs.OutW()
		flops := 2 * float64(ny) * float64(cs.InC*cs.K*cs.K) // the direct sum's, every direction
		name := fmt.Sprintf("%s b=%d c=%d %dx%d o=%d k=%d s=%d", []string{"Conv2D", "Conv2DBackwardData", "Conv2DBackwardFilter"}[dir],
			cs.Batch, cs.InC, cs.H, cs.W, cs.OutC, cs.K, cs.Stride)
		return imageReportCase{reportCase: reportCase{name, 4 * float64(nx+nw+ny), flops, func(be gpu.Backend, h *hostData) (func(), []gpu.Buffer) {
			x, w, bias, y := h.normals(nx), h.normals(nw), h.normals(cs.OutC), h.normals(ny)
			switch dir {
			case 0:
				return func() { be.Conv2D(cs, x, w, bias, y) }, []gpu.Buffer{y}
			case 1:
				return func() { be.Conv2DBackwardData(cs, y, w, x) }, []gpu.Buffer{x}
			}
			return func() { be.Conv2DBackwardFilter(cs, x, y, w, bias) }, []gpu.Buffer{w, bias}
		}}}
	}
	c3 := gpu.ConvShape{InC: 64, H: 28, W: 28, OutC: 64, K: 3, Stride: 1, Pad: 1}
	down := gpu.ConvShape{InC: 64, H: 28, W: 28, OutC: 64, K: 3, Stride: 2, Pad: 1}
	c7 := gpu.ConvShape{InC: 128, H: 7, W: 7, OutC: 128, K: 3, Stride: 1, Pad: 1}
	skip := gpu.ConvShape{InC: 192, H: 14, W: 14, OutC: 64, K: 1, Stride: 1, Pad: 0}
	// the CIFAR-10 preset's 3 x 3 layer at 16 x 16: the 128-row tiles
	wide := gpu.ConvShape{InC: 128, H: 16, W: 16, OutC: 128, K: 3, Stride: 1, Pad: 1}
	gn := gpu.GroupNormShape{Batch: b, C: 64, HW: 784, Groups: 8, Eps: 1e-5}
	n := gn.Batch * gn.C * gn.HW
	const c, t = 128, 49 // attention at 7 x 7
	cases := []imageReportCase{conv(0, c3), conv(1, c3), conv(2, c3), conv(0, down), conv(1, down), conv(2, down),
		conv(0, c7), conv(2, c7), conv(0, skip), conv(0, wide), conv(1, wide), conv(2, wide)}
	// the tensor-core convolutions (gpu.Precision) on the 3 x 3 layers
	for _, p := range gpu.Precisions()[1:] {
		for dir := range 3 {
			c := conv(dir, c3)
			c.reportCase = withPrecision(c.reportCase, p)
			cases = append(cases, c)
		}
	}
	for dir := range 3 {
		c := conv(dir, wide)
		c.reportCase = withPrecision(c.reportCase, gpu.PrecisionBF16)
		cases = append(cases, c)
	}
	return append(cases, []imageReportCase{
		{reportCase{fmt.Sprintf("GroupNorm b=%d c=64 hw=784 g=8", b), 8 * float64(n), 0, func(be gpu.Backend, h *hostData) (func(), []gpu.Buffer) {
			x, g, bt, y, m, r := h.normals(n), h.normals(64), h.normals(64), h.alloc(n), h.alloc(b*8), h.alloc(b*8)
			return func() { be.GroupNorm(gn, x, g, bt, y, m, r) }, []gpu.Buffer{y, m, r}
		}}, false},
		{reportCase{fmt.Sprintf("GroupNormBackward b=%d c=64 hw=784 g=8", b), 12 * float64(n), 0, func(be gpu.Backend, h *hostData) (func(), []gpu.Buffer) {
			x, g, dy, dx := h.normals(n), h.normals(64), h.normals(n), h.alloc(n)
			m, r, dg, db := h.alloc(b*8), h.alloc(b*8), h.alloc(64), h.alloc(64)
			be.GroupNorm(gn, x, g, g, dx, m, r)
			return func() { be.GroupNormBackward(gn, dy, x, g, m, r, dx, dg, db) }, []gpu.Buffer{dx, dg, db}
		}}, false},
		{reportCase{fmt.Sprintf("Activate silu n=%d", n), 8 * float64(n), 0, func(be gpu.Backend, h *hostData) (func(), []gpu.Buffer) {
			x, y := h.normals(n), h.alloc(n)
			return func() { be.Activate(gpu.ActSiLU, x, y) }, []gpu.Buffer{y}
		}}, false},
		{reportCase{fmt.Sprintf("AddChannelBias b=%d c=64 hw=784", b), 8 * float64(n), 0, func(be gpu.Backend, h *hostData) (func(), []gpu.Buffer) {
			x, bias, y := h.normals(n), h.normals(b*64), h.alloc(n)
			return func() { be.AddChannelBias(b, 64, 784, x, bias, y) }, []gpu.Buffer{y}
		}}, true},
		{reportCase{fmt.Sprintf("ChannelSum b=%d c=64 hw=784", b), 4 * float64(n), 0, func(be gpu.Backend, h *hostData) (func(), []gpu.Buffer) {
			x, out := h.normals(n), h.alloc(b*64)
			return func() { be.ChannelSum(b, 64, 784, x, out) }, []gpu.Buffer{out}
		}}, false},
		{reportCase{fmt.Sprintf("Upsample2x b=%d c=128 14x14", b), 20 * float64(b*128*196), 0, func(be gpu.Backend, h *hostData) (func(), []gpu.Buffer) {
			x, y := h.normals(b*128*196), h.alloc(4*b*128*196)
			return func() { be.Upsample2x(b, 128, 14, 14, x, y) }, []gpu.Buffer{y}
		}}, true},
		{reportCase{fmt.Sprintf("Upsample2xBackward b=%d c=128 14x14", b), 20 * float64(b*128*196), 0, func(be gpu.Backend, h *hostData) (func(), []gpu.Buffer) {
			dy, dx := h.normals(4*b*128*196), h.alloc(b*128*196)
			return func() { be.Upsample2xBackward(b, 128, 14, 14, dy, dx) }, []gpu.Buffer{dx}
		}}, true},
		{reportCase{fmt.Sprintf("CopyChannels b=%d 64 of 128 hw=784", b), 8 * float64(n), 0, func(be gpu.Backend, h *hostData) (func(), []gpu.Buffer) {
			src, dst := h.normals(n), h.normals(2*n)
			return func() { be.CopyChannels(b, 784, 64, src, 64, 0, dst, 128, 64) }, []gpu.Buffer{dst}
		}}, true},
		{reportCase{fmt.Sprintf("GemmBatched scores b=%d c=%d t=%d", b, c, t), 4 * float64(b*(2*c*t+t*t)), 2 * float64(b*t*t*c), func(be gpu.Backend, h *hostData) (func(), []gpu.Buffer) {
			q, k, s := h.normals(b*c*t), h.normals(b*c*t), h.alloc(b*t*t)
			return func() { be.GemmBatched(true, false, b, t, t, c, 0.1, q, t, c*t, k, t, c*t, 0, s, t, t*t) }, []gpu.Buffer{s}
		}}, false},
		{reportCase{fmt.Sprintf("Softmax rows=%d cols=%d", b*t, t), 8 * float64(b*t*t), 0, func(be gpu.Backend, h *hostData) (func(), []gpu.Buffer) {
			x, y := h.normals(b*t*t), h.alloc(b*t*t)
			return func() { be.Softmax(b*t, t, x, y) }, []gpu.Buffer{y}
		}}, false},
		{reportCase{fmt.Sprintf("SoftmaxBackward rows=%d cols=%d", b*t, t), 12 * float64(b*t*t), 0, func(be gpu.Backend, h *hostData) (func(), []gpu.Buffer) {
			y, dy, dx := h.uniforms(b*t*t), h.normals(b*t*t), h.alloc(b*t*t)
			return func() { be.SoftmaxBackward(b*t, t, y, dy, dx) }, []gpu.Buffer{dx}
		}}, false},
		{reportCase{fmt.Sprintf("Transpose b=%d %dx%d", b, c, t), 8 * float64(b*c*t), 0, func(be gpu.Backend, h *hostData) (func(), []gpu.Buffer) {
			x, y := h.normals(b*c*t), h.alloc(b*c*t)
			return func() { be.Transpose(b, c, t, x, y) }, []gpu.Buffer{y}
		}}, true},
		{reportCase{fmt.Sprintf("OneHot rows=%d classes=11", 32*b), 4 * float64(32*b*12), 0, func(be gpu.Backend, h *hostData) (func(), []gpu.Buffer) {
			l := make([]float32, 32*b)
			for i := range l {
				l[i] = float32(h.rng.IntN(11))
			}
			lb, out := h.alloc(len(l)), h.alloc(len(l)*11)
			be.Upload(lb, l)
			return func() { be.OneHot(len(l), 11, lb, out) }, []gpu.Buffer{out}
		}}, true},
		{reportCase{fmt.Sprintf("DrawLabels rows=%d nData=60000", 32*b), 8 * float64(32*b), 0, func(be gpu.Backend, h *hostData) (func(), []gpu.Buffer) {
			labels, y := h.uniforms(60000), h.alloc(32*b)
			dr := gpu.BatchDraw{Path: flow.DefaultSpec(flow.KindOT), Seed: 9, Step: 4}
			return func() { be.DrawLabels(dr, labels, 60000, 32*b, 0.1, 10, y) }, []gpu.Buffer{y}
		}}, true},
	}...)
}

// runImageReport is runDeviceReport over imageReportCases, with GB/s
// relative to a copy of the same size as the streaming ops' (64 x 784
// floats per image).
func runImageReport(t *testing.T, dev gpu.Backend, size int, minTime time.Duration) {
	cpu := gpu.NewCPU(0)
	defer cpu.Close()
	timeOp := func(op func()) float64 {
		for reps := 1; ; reps *= 4 {
			start := time.Now()
			for r := 0; r < reps; r++ {
				op()
			}
			if err := dev.Sync(); err != nil {
				t.Fatal(err)
			}
			if el := time.Since(start); el >= minTime || reps >= 1000 {
				return (el / time.Duration(reps)).Seconds()
			}
		}
	}
	var copyGBs float64
	{
		// The same 256 MB copy as the main report: a buffer that fits in
		// the L2 (50 MB on an H100) would measure the cache, not memory.
		n := (1 << 26) / size
		x, y := dev.Alloc(n), dev.Alloc(n)
		copyGBs = 8 * float64(n) / timeOp(func() { dev.Copy(y, x) }) / 1e9
		dev.Free(x)
		dev.Free(y)
	}
	for i, c := range imageReportCases(size) {
		hd := &hostData{rng: rand.New(rand.NewPCG(uint64(i), 2)), be: dev}
		hc := &hostData{rng: rand.New(rand.NewPCG(uint64(i), 2)), be: cpu}
		opD, outD := c.setup(dev, hd)
		opC, outC := c.setup(cpu, hc)
		gpu.ResetKernelStats(dev)
		opD()
		opC()
		errn := 0.0
		for k := range outD {
			d, w := download(dev, outD[k]), download(cpu, outC[k])
			errn = math.Max(errn, normwise(d, w))
			if c.exact {
				for j := range w {
					if math.Float32bits(d[j]) != math.Float32bits(w[j]) {
						t.Errorf("%s: output %d element %d = %v, the CPU backend's %v (want bit-identical)", c.name, k, j, d[j], w[j])
						break
					}
				}
			}
		}
		if err := dev.Sync(); err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		kernels := kernelNames(gpu.KernelStats(dev))
		sec := timeOp(opD)
		rate := ""
		if c.flops > 0 {
			rate = fmt.Sprintf("tflops=%.2f", c.flops/sec/1e12)
			if peak := fp32PeakTFLOPS(dev.Info()); peak > 0 {
				rate += fmt.Sprintf(" peak_frac=%.2f", c.flops/sec/1e12/peak)
			}
		} else {
			gbs := c.bytes / sec / 1e9
			rate = fmt.Sprintf("gbs=%.1f copy_frac=%.2f", gbs, gbs/copyGBs)
		}
		fmt.Printf("report backend=%s op=%q maxerr=%.2e time_us=%.1f %s kernels=%s\n", dev.Info().Backend,
			strings.ReplaceAll(c.name, " ", "_"), errn, sec*1e6, rate, kernels)
		if errn > reportMaxErr(c.name) || math.IsNaN(errn) {
			t.Errorf("%s: normwise error %.3g against the CPU backend", c.name, errn)
		}
		hd.free()
		hc.free()
	}
}
