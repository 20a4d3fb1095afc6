package e2e

import (
	"fmt"
	"math/rand/v2"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/fmgpu/fmgpu/data"
	"github.com/fmgpu/fmgpu/flow"
	"github.com/fmgpu/fmgpu/gpu"
	"github.com/fmgpu/fmgpu/internal/fakecuda"
	"github.com/fmgpu/fmgpu/model"
	"github.com/fmgpu/fmgpu/train"
)

// profileWorkload is one training workload of the step profile: the
// PyTorch peers' MLPs and the default MNIST U-Net.
type profileWorkload struct {
	name  string
	cfg   train.Config
	image bool
}

func profileWorkloads(batchUNet int) []profileWorkload {
	mlp := func(name string, hidden []int, batch int) profileWorkload {
		c := train.Config{Model: model.Config{Kind: "mlp", Dim: 2, Hidden: hidden},
			Path: flow.DefaultSpec(flow.KindOT), Time: flow.DefaultTimeSampler(flow.TimeUniform),
			Steps: 1 << 30, Batch: batch, Seed: 1, LR: 1e-3, Schedule: "constant"}
		return profileWorkload{name: name, cfg: c}
	}
	unet := train.Config{Model: model.Config{Kind: "unet", Dim: 28 * 28, TimeEmbed: model.DefaultTimeEmbedding, Classes: 10,
		Image: &model.ImageShape{Channels: 1, Height: 28, Width: 28},
		UNet:  &model.UNetConfig{Base: 32, Mults: []int{1, 2, 2}, ResBlocks: 1, Groups: 8}},
		Path: flow.DefaultSpec(flow.KindOT), Time: flow.DefaultTimeSampler(flow.TimeUniform),
		Steps: 1 << 30, Batch: batchUNet, Seed: 1, LR: 2e-4, ClassDropout: 0.1}
	return []profileWorkload{
		mlp("mlp256-b256", []int{256, 256, 256}, 256),
		mlp("mlp256-b4096", []int{256, 256, 256}, 4096),
		mlp("mlp512x4-b4096", []int{512, 512, 512, 512}, 4096),
		{name: fmt.Sprintf("unet-mnist-b%d", batchUNet), cfg: unet, image: true},
	}
}

// TestStepProfile times every kernel of one training step with CUDA events
// (gpu.CUDAOptions.Profile) and prints one line per kernel, heaviest first:
// the per-op breakdown of the device bundle. Through the fake libcuda it
// runs one small step of each workload (the times are the CPU's), to keep
// the path tested.
func TestStepProfile(t *testing.T) {
	lib, steps, warm, batchUNet := *cudaLib, 20, 3, 128
	if lib == "" {
		if testing.Short() {
			t.Skip("kernels on the CPU")
		}
		lib, steps, warm, batchUNet = fakecuda.Library(t), 1, 0, 1
	}
	for _, w := range profileWorkloads(batchUNet) {
		if *cudaLib == "" && w.cfg.Batch > 256 {
			continue // minutes on the CPU
		}
		t.Run(w.name, func(t *testing.T) {
			// Wall time of whole steps first, then the kernels one by one.
			var wall float64
			passes := []bool{false, true}
			if *cudaLib == "" {
				passes = passes[1:] // the CPU's wall time says nothing
			}
			for _, profile := range passes {
				b, err := gpu.NewCUDADriver(gpu.CUDAOptions{Library: lib, Profile: profile})
				if err != nil {
					t.Fatal(err)
				}
				tr := newProfileTrainer(t, b, w)
				for i := 0; i < warm; i++ {
					tr.Step()
				}
				if err := b.Sync(); err != nil {
					t.Fatal(err)
				}
				gpu.ResetKernelStats(b)
				start := time.Now()
				for i := 0; i < steps; i++ {
					tr.Step()
				}
				if err := b.Sync(); err != nil {
					t.Fatal(err)
				}
				if !profile {
					wall = float64(steps) / time.Since(start).Seconds()
				} else {
					reportProfile(t, w.name, steps, wall, gpu.KernelStats(b))
				}
				if _, err := tr.Read(); err != nil {
					t.Fatal(err)
				}
				tr.Close()
				b.Close()
			}
		})
	}
}

// newProfileTrainer makes w's trainer on b, over 8gaussians or random
// images with labels.
func newProfileTrainer(t *testing.T, b gpu.Backend, w profileWorkload) *train.Trainer {
	cfg := w.cfg
	cfg.Defaults()
	rng := rand.New(rand.NewPCG(1, 2))
	var (
		tr  *train.Trainer
		err error
	)
	if w.image {
		const n = 512
		x := make([]float32, n*cfg.Model.Dim)
		for i := range x {
			x[i] = float32(rng.Float64()*2 - 1)
		}
		labels := make([]int32, n)
		for i := range labels {
			labels[i] = int32(rng.IntN(10))
		}
		tr, err = train.NewConditional(b, cfg, x, labels, n)
	} else {
		ds, derr := data.Builtin("8gaussians", 100000, 1)
		if derr != nil {
			t.Fatal(derr)
		}
		tr, err = train.New(b, cfg, ds.X, ds.N)
	}
	if err != nil {
		t.Fatal(err)
	}
	return tr
}

// reportProfile prints `profile workload=... kernel=... launches_per_step=...
// us_per_step=... share=...` lines and a total line.
func reportProfile(t *testing.T, workload string, steps int, wallStepsPerS float64, stats map[string]gpu.KernelStat) {
	names := make([]string, 0, len(stats))
	var launches int64
	var ms float64
	for k, s := range stats {
		names = append(names, k)
		launches += s.Launches
		ms += s.Millis
	}
	if launches == 0 {
		t.Fatal("no kernel launched")
	}
	sort.Slice(names, func(i, j int) bool { return stats[names[i]].Millis > stats[names[j]].Millis })
	var b strings.Builder
	for _, k := range names {
		s := stats[k]
		fmt.Fprintf(&b, "profile workload=%s kernel=%s launches_per_step=%.1f us_per_step=%.1f share=%.3f\n",
			workload, k, float64(s.Launches)/float64(steps), 1000*s.Millis/float64(steps), s.Millis/ms)
	}
	fmt.Fprintf(&b, "profile workload=%s total kernels_per_step=%.1f kernel_us_per_step=%.1f wall_steps_per_s=%.1f wall_us_per_step=%.1f\n",
		workload, float64(launches)/float64(steps), 1000*ms/float64(steps), wallStepsPerS, 1e6/wallStepsPerS)
	t.Log("\n" + b.String())
}
