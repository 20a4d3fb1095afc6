package train

import (
	"fmt"
	"testing"

	"github.com/fmgpu/fmgpu/data"
	"github.com/fmgpu/fmgpu/flow"
	"github.com/fmgpu/fmgpu/gpu"
	"github.com/fmgpu/fmgpu/model"
)

// BenchmarkStep times whole training steps of the PyTorch peer's workloads
// (../shared/peers/torch_cfm.py) on the CPU backend; steps/s is
// 1e9 / ns/op. fmgpu bench runs the same through the CLI.
func BenchmarkStep(b *testing.B) {
	ds, _ := data.Builtin("8gaussians", 100000, 1)
	for _, w := range []struct {
		hidden []int
		batch  int
	}{{[]int{256, 256, 256}, 256}, {[]int{256, 256, 256}, 4096}, {[]int{512, 512, 512, 512}, 4096}} {
		b.Run(fmt.Sprintf("hidden=%v/batch=%d", w.hidden, w.batch), func(b *testing.B) {
			c := Config{Model: model.Config{Kind: "mlp", Dim: 2, Hidden: w.hidden},
				Path: flow.DefaultSpec(flow.KindOT), Time: flow.DefaultTimeSampler(flow.TimeUniform),
				Steps: 1 << 30, Batch: w.batch, Seed: 1, LR: 1e-3, Schedule: "constant"}
			c.Defaults()
			be := gpu.NewCPU(0)
			defer be.Close()
			tr, err := New(be, c, ds.X, ds.N)
			if err != nil {
				b.Fatal(err)
			}
			for i := 0; i < 3; i++ {
				tr.Step()
			}
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				tr.Step()
			}
			if _, err := tr.Read(); err != nil {
				b.Fatal(err)
			}
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "steps/s")
		})
	}
}
