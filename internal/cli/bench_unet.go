package cli

import (
	"math/rand/v2"

	"github.com/fmgpu/fmgpu/data"
	"github.com/fmgpu/fmgpu/flow"
	"github.com/fmgpu/fmgpu/gpu"
	"github.com/fmgpu/fmgpu/model"
	"github.com/fmgpu/fmgpu/train"
)

// The image workloads of `fmgpu bench` time the full training step (the
// draw, forward, backward, clipping, Adam and EMA) of the network that
// `fmgpu train --data mnist` trains with its defaults: the U-Net of
// base 32, mults 1,2,2, one residual block a level and 8 groups, class-
// conditional on 10 classes with class dropout 0.1, batch 64, Adam at
// lr 1e-3 with gradient clipping, warm-up, the cosine schedule and the
// EMA. Like the PyTorch peer (a torch U-Net script, docs/performance.md)
// they train on random pixels in [-1, 1] with random labels: the cost
// does not depend on the pixels, and the bench needs no data files.
const (
	benchImages    = 1024
	benchImageSide = 28
	benchUNetSteps = 20 // timed steps, the peer's default
)

// benchUNet is the U-Net of `fmgpu train --data mnist` (--attention
// adds self-attention at the lowest resolution).
func benchUNet(attention bool) *model.UNetConfig {
	return &model.UNetConfig{Base: 32, Mults: []int{1, 2, 2}, ResBlocks: 1, Attention: attention, Groups: 8}
}

// benchImageConfig is `fmgpu train --data mnist`'s configuration for
// workload wl (wl.unet set).
func benchImageConfig(wl benchWorkload, seed uint64) train.Config {
	side := benchImageSide
	c := train.Config{
		Model: model.Config{Kind: model.KindUNet, Dim: side * side, TimeEmbed: model.DefaultTimeEmbedding, Classes: 10,
			Image: &model.ImageShape{Channels: 1, Height: side, Width: side}, UNet: wl.unet},
		Path: flow.DefaultSpec(flow.KindOT), Time: flow.DefaultTimeSampler(flow.TimeUniform),
		Steps: imageSteps, Batch: wl.batch, Seed: seed, Optimizer: "adam", LR: imageLR,
		MaxGradNorm: defaultClip, Warmup: defaultWarmup(imageSteps), Schedule: train.Cosine, MinLRFrac: 0.05,
		EMADecay: defaultEMA, ClassDropout: 0.1,
	}
	c.Defaults()
	return c
}

// newBenchTrainer builds the trainer of workload wl for total steps (the
// MLPs train on ds) and returns it with the data dimension.
func newBenchTrainer(b gpu.Backend, wl benchWorkload, total int, seed uint64, ds *data.Dataset) (*train.Trainer, int, error) {
	if wl.unet == nil {
		cfg := benchConfig(wl, total, seed)
		cfg.Precision = gpu.PrecisionOf(b) // --precision (runBench set it)
		tr, err := train.New(b, cfg, ds.X, ds.N)
		return tr, ds.D, err
	}
	cfg := benchImageConfig(wl, seed)
	cfg.Precision = gpu.PrecisionOf(b)
	r := rand.New(rand.NewPCG(seed, 14))
	x := make([]float32, benchImages*cfg.Model.Dim)
	for i := range x {
		x[i] = 2*r.Float32() - 1
	}
	labels := make([]int32, benchImages)
	for i := range labels {
		labels[i] = int32(r.IntN(cfg.Model.Classes))
	}
	tr, err := train.NewConditional(b, cfg, x, labels, benchImages)
	return tr, cfg.Model.Dim, err
}
