//go:build unix

package model_test

import (
	"fmt"
	"os"
	"sort"
	"syscall"
	"testing"
	"time"

	"github.com/fmgpu/fmgpu/gpu"
)

// TestUNetOpTime logs where a CPU training step's network work (Forward
// and Backward of the MNIST U-Net with attention, batch 64, as
// BenchmarkUNetStep) spends its CPU time, op by op: the process's user +
// system time around each backend call (both worker threads, and their
// waits), over 5 steps after one of warm-up, with each convolution's
// GFLOP per CPU-second. A measurement, not a check (docs/performance.md
// records its figures), so it runs only when asked:
//
//	FMGPU_UNET_OPTIME=1 go test -run UNetOpTime -v ./model
func TestUNetOpTime(t *testing.T) {
	if os.Getenv("FMGPU_UNET_OPTIME") == "" {
		t.Skip("a measurement: set FMGPU_UNET_OPTIME=1 to run it")
	}
	be := gpu.NewCPU(0)
	defer be.Close()
	tb := &opTimer{Backend: be}
	u := randomUNet(t, tb, mnistUNet(1), 1)
	const rows, steps = 64, 5
	labels := make([]int, rows)
	for i := range labels {
		labels[i] = i % 11 // the null class among them
	}
	u.SetLabels(labelsBuf(tb, labels...))
	_, x, tt, e := unetBatch(tb, u, rows, 1)
	v, g := tb.Alloc(rows*u.Dim()), tb.Alloc(u.NumParams())
	u.Forward(rows, tt, x, v)
	u.Backward(e, g)
	tb.reset()
	c0 := processCPU()
	for i := 0; i < steps; i++ {
		u.Forward(rows, tt, x, v)
		u.Backward(e, g)
	}
	total := processCPU() - c0
	var names []string
	var listed time.Duration
	for k, d := range tb.cpu {
		names = append(names, k)
		listed += d
	}
	sort.Slice(names, func(i, j int) bool { return tb.cpu[names[i]] > tb.cpu[names[j]] })
	ms := func(d time.Duration) float64 { return d.Seconds() * 1000 / steps }
	t.Logf("%.1f CPU-ms a step, %.1f in the ops below", ms(total), ms(listed))
	for _, k := range names {
		line := fmt.Sprintf("%-46s %7.1f ms %5.1f%% %3d calls", k, ms(tb.cpu[k]), 100*tb.cpu[k].Seconds()/total.Seconds(), tb.n[k]/steps)
		if f := tb.flop[k]; f > 0 {
			line += fmt.Sprintf(" %6.1f GFLOP/cpu-s", f/tb.cpu[k].Seconds()/1e9)
		}
		t.Log(line)
	}
}

func processCPU() time.Duration {
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// opTimer is a backend that adds up the CPU time of the U-Net's image
// ops, per op and shape (the other ops are passed through untimed).
type opTimer struct {
	gpu.Backend
	cpu  map[string]time.Duration
	n    map[string]int
	flop map[string]float64
}

func (o *opTimer) reset() {
	o.cpu, o.n, o.flop = map[string]time.Duration{}, map[string]int{}, map[string]float64{}
}

func (o *opTimer) time(name string, flop float64, f func()) {
	if o.cpu == nil {
		o.reset()
	}
	c0 := processCPU()
	f()
	o.cpu[name] += processCPU() - c0
	o.n[name]++
	o.flop[name] += flop
}

func (o *opTimer) conv(op string, s gpu.ConvShape, f func()) {
	name := fmt.Sprintf("%s %dx%d s%d %d->%d @%dx%d", op, s.K, s.K, s.Stride, s.InC, s.OutC, s.H, s.W)
	o.time(name, 2*float64(s.Batch*s.OutC*s.InC*s.K*s.K*s.OutH()*s.OutW()), f)
}

func (o *opTimer) Conv2D(s gpu.ConvShape, x, w, bias, y gpu.Buffer) {
	o.conv("Conv2D", s, func() { o.Backend.Conv2D(s, x, w, bias, y) })
}

func (o *opTimer) Conv2DBackwardData(s gpu.ConvShape, dy, w, dx gpu.Buffer) {
	o.conv("Conv2DBackwardData", s, func() { o.Backend.Conv2DBackwardData(s, dy, w, dx) })
}

func (o *opTimer) Conv2DBackwardFilter(s gpu.ConvShape, x, dy, dw, db gpu.Buffer) {
	o.conv("Conv2DBackwardFilter", s, func() { o.Backend.Conv2DBackwardFilter(s, x, dy, dw, db) })
}

func (o *opTimer) GroupNorm(s gpu.GroupNormShape, x, gamma, beta, y, mean, rstd gpu.Buffer) {
	o.time("GroupNorm", 0, func() { o.Backend.GroupNorm(s, x, gamma, beta, y, mean, rstd) })
}

func (o *opTimer) GroupNormAct(s gpu.GroupNormShape, act gpu.Act, x, xBias, gamma, beta, y, a, mean, rstd gpu.Buffer) {
	o.time("GroupNormAct", 0, func() { o.Backend.GroupNormAct(s, act, x, xBias, gamma, beta, y, a, mean, rstd) })
}

func (o *opTimer) GroupNormActBackward(s gpu.GroupNormShape, act gpu.Act, dA, y, x, gamma, beta, mean, rstd, add, dx, dgamma, dbeta, dxSum gpu.Buffer) {
	o.time("GroupNormActBackward", 0, func() {
		o.Backend.GroupNormActBackward(s, act, dA, y, x, gamma, beta, mean, rstd, add, dx, dgamma, dbeta, dxSum)
	})
}

func (o *opTimer) CopyChannels(batch, hw, n int, src gpu.Buffer, srcC, srcOff int, dst gpu.Buffer, dstC, dstOff int) {
	o.time("CopyChannels", 0, func() { o.Backend.CopyChannels(batch, hw, n, src, srcC, srcOff, dst, dstC, dstOff) })
}

func (o *opTimer) Axpy(a float32, x, y gpu.Buffer) {
	o.time("Axpy", 0, func() { o.Backend.Axpy(a, x, y) })
}

func (o *opTimer) Upsample2x(batch, c, h, w int, x, y gpu.Buffer) {
	o.time("Upsample2x", 0, func() { o.Backend.Upsample2x(batch, c, h, w, x, y) })
}

func (o *opTimer) Upsample2xBackward(batch, c, h, w int, dy, dx gpu.Buffer) {
	o.time("Upsample2xBackward", 0, func() { o.Backend.Upsample2xBackward(batch, c, h, w, dy, dx) })
}

func (o *opTimer) GemmBatched(transA, transB bool, batch, m, n, k int, alpha float32, a gpu.Buffer, lda, strideA int, b gpu.Buffer, ldb, strideB int, beta float32, c gpu.Buffer, ldc, strideC int) {
	o.time("GemmBatched", 2*float64(batch*m*n*k), func() {
		o.Backend.GemmBatched(transA, transB, batch, m, n, k, alpha, a, lda, strideA, b, ldb, strideB, beta, c, ldc, strideC)
	})
}

func (o *opTimer) Softmax(rows, cols int, x, y gpu.Buffer) {
	o.time("Softmax", 0, func() { o.Backend.Softmax(rows, cols, x, y) })
}

func (o *opTimer) SoftmaxBackward(rows, cols int, y, dy, dx gpu.Buffer) {
	o.time("SoftmaxBackward", 0, func() { o.Backend.SoftmaxBackward(rows, cols, y, dy, dx) })
}
