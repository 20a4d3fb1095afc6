//go:build kernelsim

package gpu_test

import (
	"math"
	"math/rand/v2"
	"testing"

	"github.com/fmgpu/fmgpu/flow"
	"github.com/fmgpu/fmgpu/gpu"
	"github.com/fmgpu/fmgpu/model"
	"github.com/fmgpu/fmgpu/train"
)

// Training steps of a conditional U-Net with the cifar10 preset's blocks
// (attention after the residual blocks of a level and in the middle, two
// heads, dropout 0.3) agree between the CPU backend and the device backend,
// recorded graph replays included: the dropout masks are the same Philox
// draws, read from the step in device memory. Bound as
// TestKernelSimTrainingMatchesCPU's, 1e-3 relative.
func TestKernelSimUNetDropoutTrainingMatchesCPU(t *testing.T) {
	const n, d = 64, 2 * 8 * 8
	r := rand.New(rand.NewPCG(1, 2))
	x := make([]float32, n*d)
	labels := make([]int32, n)
	for i := range labels {
		labels[i] = int32(i % 3)
		for j := range d {
			x[i*d+j] = float32(0.5*r.NormFloat64() + float64(labels[i]) - 1)
		}
	}
	cfg := train.Config{
		Model: model.Config{Kind: "unet", Dim: d, TimeEmbed: gpu.TimeEmbedding{Freqs: 4, Scale: 1000, MaxPeriod: 10000}, Classes: 3,
			Image: &model.ImageShape{Channels: 2, Height: 8, Width: 8},
			UNet: &model.UNetConfig{Base: 4, Mults: []int{1, 2}, ResBlocks: 1, Attention: true, Groups: 2,
				AttentionRes: []int{8}, Heads: 2, Dropout: 0.3}},
		Path: flow.DefaultSpec(flow.KindOT), Time: flow.DefaultTimeSampler(flow.TimeUniform),
		Steps: 12, Batch: 6, Seed: 5, LR: 2e-3, MaxGradNorm: 1, Warmup: 2, EMADecay: 0.99, ClassDropout: 0.1,
		Schedule: train.Constant,
	}
	cfg.Defaults()
	run := func(b gpu.Backend) []train.Progress {
		defer b.Close()
		tr, err := train.NewConditional(b, cfg, x, labels, n)
		if err != nil {
			t.Fatal(err)
		}
		defer tr.Close()
		var ps []train.Progress
		for s := 0; s < cfg.Steps; s++ {
			tr.Step()
			if (s+1)%4 == 0 {
				p, err := tr.Read()
				if err != nil {
					t.Fatal(err)
				}
				ps = append(ps, p)
			}
		}
		return ps
	}
	cpu := run(gpu.NewCPU(0))
	dev := run(newKernelSim(t, gpu.KernelSimOptions{}))
	for i := range cpu {
		c, d := cpu[i], dev[i]
		for _, v := range [][3]float64{{c.Loss, d.Loss, 0}, {c.GradNorm, d.GradNorm, 1}} {
			if rel := math.Abs(v[0]-v[1]) / math.Abs(v[0]); !(rel <= 1e-3) {
				t.Errorf("step %d: %s cpu %.7g, kernelsim %.7g (relative difference %.2g)", c.Step, []string{"loss", "gradient norm"}[int(v[2])], v[0], v[1], rel)
			}
		}
		t.Logf("step %d: loss cpu %.7g kernelsim %.7g; grad norm cpu %.7g kernelsim %.7g", c.Step, c.Loss, d.Loss, c.GradNorm, d.GradNorm)
	}
}
