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

// Training steps replayed from a recorded CUDA graph compute exactly what
// the same steps launched kernel by kernel do: the same bits of the
// weights, EMA and Adam moments and the same progress, through the real
// launcher over the fake libcuda (which records the capture and replays
// it).
func TestStepGraphsSameNumbers(t *testing.T) {
	if testing.Short() {
		t.Skip("kernels on the CPU")
	}
	lib := fakecuda.Library(t)
	ds, err := data.Builtin("moons", 500, 3)
	if err != nil {
		t.Fatal(err)
	}
	mlp := Config{Model: model.Config{Kind: "mlp", Dim: 2, Hidden: []int{32, 48}, TimeEmbed: model.DefaultTimeEmbedding},
		Path: flow.DefaultSpec(flow.KindVP), Time: flow.DefaultTimeSampler(flow.TimeLogitNormal),
		Steps: 7, Batch: 70, Seed: 5, LR: 3e-3, Optimizer: "adamw", WeightDecay: 0.01, MaxGradNorm: 0.5,
		Warmup: 3, EMADecay: 0.99}
	unet := Config{Model: model.Config{Kind: "unet", Dim: 8 * 8, TimeEmbed: model.DefaultTimeEmbedding, Classes: 3,
		Image: &model.ImageShape{Channels: 1, Height: 8, Width: 8},
		UNet:  &model.UNetConfig{Base: 8, Mults: []int{1, 2}, ResBlocks: 1, Groups: 4}},
		Path: flow.DefaultSpec(flow.KindOT), Time: flow.DefaultTimeSampler(flow.TimeUniform),
		Steps: 4, Batch: 5, Seed: 9, LR: 1e-3, ClassDropout: 0.3, EMADecay: 0.9}
	for _, cfg := range []Config{mlp, unet} {
		cfg.Defaults()
		t.Run(string(cfg.Model.Kind), func(t *testing.T) {
			type result struct {
				progress []Progress
				state    [][]float32
				graph    bool
				kernels  int64
			}
			run := func(noGraphs bool) result {
				b, err := gpu.NewCUDADriver(gpu.CUDAOptions{Library: lib, NoGraphs: noGraphs})
				if err != nil {
					t.Fatal(err)
				}
				defer b.Close()
				var tr *Trainer
				if cfg.Model.Classes > 0 {
					n := 20
					x := make([]float32, n*cfg.Model.Dim)
					labels := make([]int32, n)
					for i := range x {
						x[i] = float32(math.Sin(float64(i)))
					}
					for i := range labels {
						labels[i] = int32(i % cfg.Model.Classes)
					}
					tr, err = NewConditional(b, cfg, x, labels, n)
				} else {
					tr, err = New(b, cfg, ds.X, ds.N)
				}
				if err != nil {
					t.Fatal(err)
				}
				defer tr.Close()
				var r result
				for s := 0; s < cfg.Steps; s++ {
					tr.Step()
					if s%2 == 1 || s == cfg.Steps-1 {
						p, err := tr.Read()
						if err != nil {
							t.Fatal(err)
						}
						r.progress = append(r.progress, p)
					}
				}
				r.graph, r.kernels = tr.Recorded()
				for _, buf := range []gpu.Buffer{tr.net.Params(), tr.ema, tr.m, tr.v, tr.grads} {
					h := make([]float32, buf.Len())
					b.Download(h, buf)
					r.state = append(r.state, h)
				}
				if err := b.Sync(); err != nil {
					t.Fatal(err)
				}
				if d, ok := b.(*gpu.DeviceBackend); ok && !noGraphs {
					// one eager step, the others replays
					if got, want := d.GraphLaunches(), int64(cfg.Steps-1); got != want {
						t.Errorf("%d graph launches in %d steps, want %d", got, cfg.Steps, want)
					}
				}
				return r
			}
			eager, graphs := run(true), run(false)
			if eager.graph || !graphs.graph {
				t.Fatalf("graphs used: %v with NoGraphs, %v without", eager.graph, graphs.graph)
			}
			if graphs.kernels < 5 {
				t.Errorf("a replay runs %d kernels", graphs.kernels)
			}
			for i := range eager.progress {
				if eager.progress[i] != graphs.progress[i] {
					t.Errorf("progress %d: %+v op by op, %+v replayed", i, eager.progress[i], graphs.progress[i])
				}
			}
			for k, what := range []string{"params", "ema", "m", "v", "grads"} {
				a, b := eager.state[k], graphs.state[k]
				for i := range a {
					if math.Float32bits(a[i]) != math.Float32bits(b[i]) {
						t.Errorf("%s[%d]: %g op by op, %g replayed", what, i, a[i], b[i])
						break
					}
				}
			}
		})
	}
}
