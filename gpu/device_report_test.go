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

// reportCase is one op of the device report: its inputs are made on the
// host from a fixed seed and uploaded to both the device backend and the
// CPU backend (the reference); op runs it once; outs are compared.
type reportCase struct {
	name         string
	bytes, flops float64 // moved and computed by one op (roofline traffic; 2mnk)
	setup        func(be gpu.Backend, h *hostData) (op func(), outs []gpu.Buffer)
}

// hostData makes the same inputs for every backend a case runs on.
type hostData struct {
	rng  *rand.Rand
	be   gpu.Backend
	bufs []gpu.Buffer
}

func (h *hostData) alloc(n int) gpu.Buffer {
	b := h.be.Alloc(n)
	h.bufs = append(h.bufs, b)
	return b
}

func (h *hostData) free() {
	for _, b := range h.bufs {
		h.be.Free(b)
	}
}

func (h *hostData) normals(n int) gpu.Buffer {
	v := make([]float32, n)
	for i := range v {
		v[i] = float32(h.rng.NormFloat64())
	}
	b := h.alloc(n)
	h.be.Upload(b, v)
	return b
}

func (h *hostData) uniforms(n int) gpu.Buffer {
	v := make([]float32, n)
	for i := range v {
		v[i] = float32(0.001 + 0.998*h.rng.Float64())
	}
	b := h.alloc(n)
	h.be.Upload(b, v)
	return b
}

// reportCases are the ops at sizes that saturate a GPU (size 1) or that a
// CPU harness runs in seconds (size s > 1 divides the element counts).
func reportCases(s int) []reportCase {
	n := 1 << 26 / s             // streaming ops: 256 MB a buffer on a GPU
	ns := 1 << 24 / s            // ops over many buffers
	gm := max(2048/isqrt(s), 32) // square product
	rows := max(4096/s, 64)      // training batch
	st := func(h *hostData, k int) ([]float32, []gpu.Buffer) {
		coef := []float32{0.1, 0, 0.3, -0.2, 0.25, 0.05, 0.5}[:k]
		ks := make([]gpu.Buffer, k)
		for i := range ks {
			ks[i] = h.normals(ns)
		}
		return coef, ks
	}
	ot, vp := flow.DefaultSpec(flow.KindOT), flow.DefaultSpec(flow.KindVP)
	gemm := func(ta, tb bool, m, nn, k int) reportCase {
		return reportCase{fmt.Sprintf("Gemm(ta=%v,tb=%v) %dx%dx%d", ta, tb, m, nn, k), 4 * float64(m*k+k*nn+m*nn), 2 * float64(m) * float64(nn) * float64(k),
			func(be gpu.Backend, h *hostData) (func(), []gpu.Buffer) {
				a, b, c := h.normals(m*k), h.normals(k*nn), h.alloc(m*nn)
				lda, ldb := k, nn
				if ta {
					lda = m
				}
				if tb {
					ldb = k
				}
				return func() { be.Gemm(ta, tb, m, nn, k, 1, a, lda, b, ldb, 0, c, nn) }, []gpu.Buffer{c}
			}}
	}
	linear := func(rows int) reportCase {
		return reportCase{fmt.Sprintf("Linear silu %dx512->512", rows), 4 * float64(rows*512*3+512*512), 2 * float64(rows) * 512 * 512, func(be gpu.Backend, h *hostData) (func(), []gpu.Buffer) {
			x, w, b, pre, y := h.normals(rows*512), h.normals(512*512), h.normals(512), h.alloc(rows*512), h.alloc(rows*512)
			return func() { be.Linear(rows, 512, 512, x, 512, w, b, gpu.ActSiLU, pre, y) }, []gpu.Buffer{pre, y}
		}}
	}
	return []reportCase{
		{fmt.Sprintf("Copy n=%d (bandwidth ceiling)", n), 8 * float64(n), 0, func(be gpu.Backend, h *hostData) (func(), []gpu.Buffer) {
			x, y := h.normals(n), h.alloc(n)
			return func() { be.Copy(y, x) }, []gpu.Buffer{y}
		}},
		{fmt.Sprintf("Fill n=%d", n), 4 * float64(n), 0, func(be gpu.Backend, h *hostData) (func(), []gpu.Buffer) {
			y := h.alloc(n)
			return func() { be.Fill(y, 0.5) }, []gpu.Buffer{y}
		}},
		{fmt.Sprintf("Axpy (Euler step) n=%d", n), 12 * float64(n), 0, func(be gpu.Backend, h *hostData) (func(), []gpu.Buffer) {
			x, y := h.normals(n), h.normals(n)
			return func() { be.Axpy(0.01, x, y) }, []gpu.Buffer{y}
		}},
		{fmt.Sprintf("LinComb 7 stages n=%d", ns), 36 * float64(ns), 0, func(be gpu.Backend, h *hostData) (func(), []gpu.Buffer) {
			x, dst := h.normals(ns), h.alloc(ns)
			coef, ks := st(h, 7)
			return func() { be.LinComb(dst, x, 0.01, coef, ks) }, []gpu.Buffer{dst}
		}},
		{fmt.Sprintf("ErrorNorm 7 stages n=%d", ns), 36 * float64(ns), 0, func(be gpu.Backend, h *hostData) (func(), []gpu.Buffer) {
			x, xn, out := h.normals(ns), h.normals(ns), h.alloc(1)
			coef, ks := st(h, 7)
			return func() { be.ErrorNorm(x, xn, 0.01, coef, ks, 1e-3, 1e-6, out) }, []gpu.Buffer{out}
		}},
		{fmt.Sprintf("PathTarget ot rows=%d d=2", ns/2), 4 * float64(4*ns+ns/2), 0, func(be gpu.Backend, h *hostData) (func(), []gpu.Buffer) {
			x0, x1, t, xt, ut := h.normals(ns), h.normals(ns), h.uniforms(ns/2), h.alloc(ns), h.alloc(ns)
			return func() { be.PathTarget(ot, ns/2, 2, x0, x1, t, xt, ut) }, []gpu.Buffer{xt, ut}
		}},
		{fmt.Sprintf("PathTarget vp rows=%d d=784", ns/784), 4 * float64(4*(ns/784*784)+ns/784), 0, func(be gpu.Backend, h *hostData) (func(), []gpu.Buffer) {
			r := ns / 784
			x0, x1, t, xt, ut := h.normals(r*784), h.normals(r*784), h.uniforms(r), h.alloc(r*784), h.alloc(r*784)
			return func() { be.PathTarget(vp, r, 784, x0, x1, t, xt, ut) }, []gpu.Buffer{xt, ut}
		}},
		{fmt.Sprintf("DrawBatch ot rows=%d d=2 nData=100000", ns/2), 4 * float64(ns/2+3*ns), 0, func(be gpu.Backend, h *hostData) (func(), []gpu.Buffer) {
			data, t, xt, ut := h.normals(200000), h.alloc(ns/2), h.alloc(ns), h.alloc(ns)
			dr := gpu.BatchDraw{Path: ot, Time: flow.DefaultTimeSampler(flow.TimeLogitNormal), Seed: 7, Step: 3}
			return func() { be.DrawBatch(dr, data, 100000, 2, ns/2, nil, nil, t, xt, ut) }, []gpu.Buffer{t, xt, ut}
		}},
		{fmt.Sprintf("RandNormal n=%d", n), 4 * float64(n), 0, func(be gpu.Backend, h *hostData) (func(), []gpu.Buffer) {
			y := h.alloc(n)
			return func() { be.RandNormal(y, 11, 5, 1) }, []gpu.Buffer{y}
		}},
		{fmt.Sprintf("RandRademacher n=%d", n), 4 * float64(n), 0, func(be gpu.Backend, h *hostData) (func(), []gpu.Buffer) {
			y := h.alloc(n)
			return func() { be.RandRademacher(y, 11, 5) }, []gpu.Buffer{y}
		}},
		{fmt.Sprintf("SumSquares n=%d", n), 4 * float64(n), 0, func(be gpu.Backend, h *hostData) (func(), []gpu.Buffer) {
			x, out := h.normals(n), h.alloc(1)
			return func() { be.SumSquares(x, out) }, []gpu.Buffer{out}
		}},
		{fmt.Sprintf("MSELoss n=%d", ns), 12 * float64(ns), 0, func(be gpu.Backend, h *hostData) (func(), []gpu.Buffer) {
			p, t, g, l := h.normals(ns), h.normals(ns), h.alloc(ns), h.alloc(1)
			return func() { be.MSELoss(p, t, 1/float32(ns), g, l) }, []gpu.Buffer{g, l}
		}},
		{fmt.Sprintf("AdamEMA n=%d", ns), 36 * float64(ns), 0, func(be gpu.Backend, h *hostData) (func(), []gpu.Buffer) {
			p, g, m, v, ema := h.normals(ns), h.normals(ns), h.alloc(ns), h.alloc(ns), h.normals(ns)
			gss, status := h.alloc(1), h.alloc(1)
			be.Fill(gss, 4)
			s := gpu.AdamStep{LR: 1e-3, Beta1: 0.9, Beta2: 0.999, Eps: 1e-8, WeightDecay: 0.01, Decoupled: true,
				BiasCorr1: 0.1, BiasCorr2: 0.001, EMADecay: 0.999, MaxGradNorm: 1, Step: 1}
			return func() { be.AdamEMA(s, p, g, m, v, ema, gss, status) }, []gpu.Buffer{p, m, v, ema}
		}},
		{fmt.Sprintf("RowDot rows=%d cols=64", ns/64), 8 * float64(ns), 0, func(be gpu.Backend, h *hostData) (func(), []gpu.Buffer) {
			a, b, out := h.normals(ns), h.normals(ns), h.normals(ns/64)
			return func() { be.RowDot(ns/64, 64, -1, a, b, 1, out) }, []gpu.Buffer{out}
		}},
		{fmt.Sprintf("UnitColumn rows=%d cols=2", ns/2), 4 * float64(ns), 0, func(be gpu.Backend, h *hostData) (func(), []gpu.Buffer) {
			e := h.alloc(ns)
			return func() { be.UnitColumn(ns/2, 2, 1, e) }, []gpu.Buffer{e}
		}},
		{fmt.Sprintf("BiasActBackward silu rows=%d cols=512", ns/512), 12 * float64(ns), 0, func(be gpu.Backend, h *hostData) (func(), []gpu.Buffer) {
			r := ns / 512
			dy, pre, dp, db := h.normals(r*512), h.normals(r*512), h.alloc(r*512), h.alloc(512)
			return func() { be.BiasActBackward(gpu.ActSiLU, r, 512, dy, pre, dp, db) }, []gpu.Buffer{dp, db}
		}},
		{fmt.Sprintf("EmbedInput rows=%d d=2 freqs=16", ns/64), 4 * float64(ns/64*(3+36)), 0, func(be gpu.Backend, h *hostData) (func(), []gpu.Buffer) {
			r := ns / 64
			emb := gpu.TimeEmbedding{Freqs: 16, Scale: 1000, MaxPeriod: 10000}
			x, t, out := h.normals(r*2), h.uniforms(r), h.alloc(r*(2+emb.Width()))
			return func() { be.EmbedInput(r, 2, x, t, emb, out) }, []gpu.Buffer{out}
		}},
		gemm(false, false, gm, gm, gm),
		gemm(false, true, gm, gm, gm),
		gemm(true, false, gm, gm, gm),
		gemm(false, false, rows, 512, 512),
		// The products that dominate the MLP training steps (batch 4096,
		// widths 256 and 512): the weight gradient dW = dY^T X (k = batch),
		// the forward and data-gradient products, and a small cube.
		gemm(true, false, 256, 256, rows),
		gemm(false, false, rows, 256, 256),
		gemm(false, true, rows, 256, 256),
		gemm(false, false, 256, 256, 256),
		linear(rows),
		// The tensor-core products (gpu.Precision): the square product,
		// the weight gradient (split over k) and the Linear layer.
		withPrecision(gemm(false, false, gm, gm, gm), gpu.PrecisionTF32),
		withPrecision(gemm(false, false, gm, gm, gm), gpu.PrecisionTF32x3),
		withPrecision(gemm(true, false, 256, 256, rows), gpu.PrecisionTF32x3),
		withPrecision(linear(rows), gpu.PrecisionTF32),
		withPrecision(linear(rows), gpu.PrecisionTF32x3),
		withPrecision(gemm(false, false, gm, gm, gm), gpu.PrecisionBF16),
		withPrecision(linear(rows), gpu.PrecisionBF16),
	}
}

// withPrecision is case c run in precision p on the device backend (the
// CPU backend, the reference, computes in fp32), named with it.
func withPrecision(c reportCase, p gpu.Precision) reportCase {
	setup := c.setup
	c.name += " " + p.String()
	c.setup = func(be gpu.Backend, h *hostData) (func(), []gpu.Buffer) {
		op, outs := setup(be, h)
		if _, dev := be.(*gpu.DeviceBackend); !dev {
			return op, outs
		}
		return func() {
			gpu.SetPrecision(be, p)
			op()
			gpu.SetPrecision(be, gpu.PrecisionFP32)
		}, outs
	}
	return c
}

// reportMaxErr bounds a case's normwise error against the CPU backend:
// 1e-4, and 2e-3 for a tf32 product (its error reaches 2^-10 of sum |a||b|,
// gpu/gputest; relative to max |c| of normal operands, typically 3e-4 at
// k = 2048), 1.6e-2 for a bf16 product (operands rounded to 8 bits instead
// of 11: eight times tf32's).
func reportMaxErr(name string) float64 {
	switch {
	case strings.HasSuffix(name, " tf32"):
		return 2e-3
	case strings.HasSuffix(name, " bf16"):
		return 1.6e-2
	}
	return 1e-4
}

func isqrt(s int) int { return int(math.Sqrt(float64(s))) }

// runDeviceReport runs every case once on dev and on the CPU backend,
// compares the outputs (normwise: max |dev - cpu| / max |cpu|), then times
// dev alone (reps launches between two Syncs, after a warm-up) and prints
// one `report` line per op for scripts/gpu-run.sh.
func runDeviceReport(t *testing.T, dev gpu.Backend, size int, minTime time.Duration) {
	cpu := gpu.NewCPU(0)
	defer cpu.Close()
	copyGBs := 0.0
	for i, c := range reportCases(size) {
		seed := uint64(i)
		hd := &hostData{rng: rand.New(rand.NewPCG(seed, 1)), be: dev}
		hc := &hostData{rng: rand.New(rand.NewPCG(seed, 1)), be: cpu}
		opD, outD := c.setup(dev, hd)
		opC, outC := c.setup(cpu, hc)
		gpu.ResetKernelStats(dev)
		opD()
		opC()
		errn := 0.0
		for k := range outD {
			errn = math.Max(errn, normwise(download(dev, outD[k]), download(cpu, outC[k])))
		}
		if err := dev.Sync(); err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		kernels := kernelNames(gpu.KernelStats(dev))
		// Time: the first launch count that takes minTime, up to 1000.
		var per time.Duration
		for reps := 1; ; reps *= 4 {
			start := time.Now()
			for r := 0; r < reps; r++ {
				opD()
			}
			if err := dev.Sync(); err != nil {
				t.Fatalf("%s: %v", c.name, err)
			}
			if el := time.Since(start); el >= minTime || reps >= 1000 {
				per = el / time.Duration(reps)
				break
			}
		}
		sec := per.Seconds()
		rate := ""
		if c.flops > 0 {
			rate = fmt.Sprintf("tflops=%.2f", c.flops/sec/1e12)
			if peak := fp32PeakTFLOPS(dev.Info()); peak > 0 {
				rate += fmt.Sprintf(" peak_frac=%.2f", c.flops/sec/1e12/peak)
			}
		} else {
			gbs := c.bytes / sec / 1e9
			if i == 0 {
				copyGBs = gbs
			}
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

func download(be gpu.Backend, b gpu.Buffer) []float32 {
	v := make([]float32, b.Len())
	be.Download(v, b)
	return v
}

// normwise is max |a - b| / max |b| (0 when both are all zero).
func normwise(a, b []float32) float64 {
	var d, s float64
	for i := range b {
		d = math.Max(d, math.Abs(float64(a[i])-float64(b[i])))
		s = math.Max(s, math.Abs(float64(b[i])))
		if math.IsNaN(float64(a[i])) != math.IsNaN(float64(b[i])) {
			return math.NaN()
		}
	}
	if s == 0 {
		return d
	}
	return d / s
}
