package train

import (
	"fmt"
	"testing"

	"github.com/fmgpu/fmgpu/data"
	"github.com/fmgpu/fmgpu/flow"
	"github.com/fmgpu/fmgpu/gpu"
	"github.com/fmgpu/fmgpu/model"
)

// peerWorkloads are the PyTorch peer's training workloads
// (docs/performance.md): mlp256-b256, mlp256-b4096, mlp512x4-b4096.
var peerWorkloads = []peerWorkload{
	{[]int{256, 256, 256}, 256}, {[]int{256, 256, 256}, 4096}, {[]int{512, 512, 512, 512}, 4096},
}

type peerWorkload struct {
	hidden []int
	batch  int
}

func (w peerWorkload) name() string { return fmt.Sprintf("hidden=%v/batch=%d", w.hidden, w.batch) }

// config is the peer's set-up: no time embedding, Adam lr 1e-3, constant
// schedule, ot path, uniform times.
func (w peerWorkload) config() Config {
	c := Config{Model: model.Config{Kind: "mlp", Dim: 2, Hidden: w.hidden},
		Path: flow.DefaultSpec(flow.KindOT), Time: flow.DefaultTimeSampler(flow.TimeUniform),
		Steps: 1 << 30, Batch: w.batch, Seed: 1, LR: 1e-3, Schedule: "constant"}
	c.Defaults()
	return c
}

// BenchmarkStep times whole training steps of the PyTorch peer's workloads
// (docs/performance.md) on the CPU backend; steps/s is
// 1e9 / ns/op. fmgpu bench runs the same through the CLI.
func BenchmarkStep(b *testing.B) {
	ds, _ := data.Builtin("8gaussians", 100000, 1)
	for _, w := range peerWorkloads {
		b.Run(w.name(), func(b *testing.B) {
			c := w.config()
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

// TestStepAllocatesNothing holds the CPU training step at zero heap
// allocations: a step that allocates puts the garbage collector in every
// run's profile.
func TestStepAllocatesNothing(t *testing.T) {
	ds, _ := data.Builtin("8gaussians", 4096, 1)
	c := peerWorkload{[]int{64, 64}, 128}.config()
	be := gpu.NewCPU(1)
	defer be.Close()
	tr, err := New(be, c, ds.X, ds.N)
	if err != nil {
		t.Fatal(err)
	}
	defer tr.Close()
	tr.Step()
	if a := testing.AllocsPerRun(20, tr.Step); a != 0 {
		t.Fatalf("a training step allocates %.1f times, want 0", a)
	}
}
