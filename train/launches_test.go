package train

import (
	"math"
	"testing"

	"github.com/fmgpu/fmgpu/data"
	"github.com/fmgpu/fmgpu/flow"
	"github.com/fmgpu/fmgpu/gpu"
	"github.com/fmgpu/fmgpu/internal/fakecuda"
	"github.com/fmgpu/fmgpu/model"
)

// The kernels of a training step, counted through the real launcher over
// the fake libcuda (kernels on the CPU, launch by launch: no graphs), are
// held to issue 17's budgets: mlp256 at most 14 (27 before the fused
// backward; 31 with split-K's reductions at batch 4096: here batch 1024
// splits the weight gradients too), the MNIST U-Net at most 241 (483
// before, at batch 128 with classes; the count does not depend on the
// batch: every reduction finishes in its own kernel).
func TestStepKernelCounts(t *testing.T) {
	if testing.Short() {
		t.Skip("kernels on the CPU")
	}
	lib := fakecuda.Library(t)
	mlp := Config{Model: model.Config{Kind: "mlp", Dim: 2, Hidden: []int{256, 256, 256}},
		Path: flow.DefaultSpec(flow.KindOT), Time: flow.DefaultTimeSampler(flow.TimeUniform),
		Steps: 3, Batch: 1024, Seed: 1, LR: 1e-3, Schedule: "constant"}
	unet := Config{Model: model.Config{Kind: "unet", Dim: 28 * 28, TimeEmbed: model.DefaultTimeEmbedding, Classes: 10,
		Image: &model.ImageShape{Channels: 1, Height: 28, Width: 28},
		UNet:  &model.UNetConfig{Base: 32, Mults: []int{1, 2, 2}, ResBlocks: 1, Groups: 8}},
		Path: flow.DefaultSpec(flow.KindOT), Time: flow.DefaultTimeSampler(flow.TimeUniform),
		Steps: 2, Batch: 2, Seed: 1, LR: 2e-4, ClassDropout: 0.1}
	for _, c := range []struct {
		name string
		cfg  Config
		max  int64
	}{{"mlp256-b1024", mlp, 14}, {"unet-mnist", unet, 241}} {
		t.Run(c.name, func(t *testing.T) {
			cfg := c.cfg
			cfg.Defaults()
			b, err := gpu.NewCUDADriver(gpu.CUDAOptions{Library: lib, NoGraphs: true})
			if err != nil {
				t.Fatal(err)
			}
			defer b.Close()
			var tr *Trainer
			if cfg.Model.Classes > 0 {
				const n = 8
				x := make([]float32, n*cfg.Model.Dim)
				labels := make([]int32, n)
				for i := range x {
					x[i] = float32(math.Cos(float64(i)))
				}
				for i := range labels {
					labels[i] = int32(i % cfg.Model.Classes)
				}
				tr, err = NewConditional(b, cfg, x, labels, n)
			} else {
				ds, derr := data.Builtin("8gaussians", 5000, 1)
				if derr != nil {
					t.Fatal(derr)
				}
				tr, err = New(b, cfg, ds.X, ds.N)
			}
			if err != nil {
				t.Fatal(err)
			}
			defer tr.Close()
			d := b.(*gpu.DeviceBackend)
			tr.Step() // sizes the scratch space
			l0 := d.Launches()
			tr.Step()
			per := d.Launches() - l0
			if _, err := tr.Read(); err != nil {
				t.Fatal(err)
			}
			if per > c.max {
				t.Errorf("%d kernels a step, want at most %d", per, c.max)
			}
			t.Logf("%s: %d kernels a step", c.name, per)
		})
	}
}
