package model_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/fmgpu/fmgpu/gpu"
)

// BenchmarkUNetStep times a training step's network work, Forward and
// Backward, of the MNIST-size U-Net (mnistUNet: 1x28x28, Base 32, Mults
// 1,2,2, attention at 7x7, 10 classes) on the CPU backend, for one and two
// residual blocks a level, at batch 64. The forward flop count is
// FLOPsPerRow; a step is about three times that (a backward pass costs two
// forwards), reported as GFLOP/s.
func BenchmarkUNetStep(b *testing.B) {
	for _, res := range []int{1, 2} {
		for _, rows := range []int{64} {
			b.Run(fmt.Sprintf("impl=cpu/res=%d/batch=%d", res, rows), func(b *testing.B) {
				be := gpu.NewCPU(0)
				defer be.Close()
				cfg := mnistUNet(res)
				u := randomUNet(b, be, cfg, 1)
				labels := make([]int, rows)
				for i := range labels {
					labels[i] = i % 11 // the null class among them
				}
				u.SetLabels(labelsBuf(be, labels...))
				_, x, tb, e := unetBatch(be, u, rows, 1)
				v, g := be.Alloc(rows*u.Dim()), be.Alloc(u.NumParams())
				u.Forward(rows, tb, x, v)
				u.Backward(e, g)
				if err := be.Sync(); err != nil {
					b.Fatal(err)
				}
				b.ReportAllocs()
				b.ResetTimer()
				start := time.Now()
				for i := 0; i < b.N; i++ {
					u.Forward(rows, tb, x, v)
					u.Backward(e, g)
				}
				if err := be.Sync(); err != nil {
					b.Fatal(err)
				}
				sec := time.Since(start).Seconds() / float64(b.N)
				b.ReportMetric(float64(u.FLOPsPerRow()), "fwdFLOP/row")
				b.ReportMetric(float64(u.NumParams()), "params")
				b.ReportMetric(3*float64(u.FLOPsPerRow())*float64(rows)/sec/1e9, "GFLOP/s")
			})
		}
	}
}
