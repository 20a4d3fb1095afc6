// Package e2e holds the end-to-end check of a device backend that the GPU
// bundle runs (scripts/gpu-run.sh, as e2e.test -cuda.lib=libcuda.so.1):
// train 8gaussians on the device, sample with the EMA weights, and compare
// the samples with fresh data by the exact W2 distance, beside the W2
// between fresh draws. Without a GPU it runs a short training through the
// fake libcuda (kernels/fakecuda), or the kernelsim backend under that tag.
package e2e

import (
	"flag"
	"math"
	"testing"
	"time"

	"github.com/fmgpu/fmgpu/data"
	"github.com/fmgpu/fmgpu/flow"
	"github.com/fmgpu/fmgpu/gpu"
	"github.com/fmgpu/fmgpu/internal/fakecuda"
	"github.com/fmgpu/fmgpu/internal/wasserstein"
	"github.com/fmgpu/fmgpu/model"
	"github.com/fmgpu/fmgpu/sampler"
	"github.com/fmgpu/fmgpu/train"
)

var cudaLib = flag.String("cuda.lib", "", "driver library: empty for the fake libcuda (the kernels on the CPU, a short run), libcuda.so.1 on a GPU host (the full run)")

const points = 2000 // per set, as the CLI issue measures W2

func w2(a, b []float32) float64 {
	a64, b64 := make([]float64, len(a)), make([]float64, len(b))
	for i := range a {
		a64[i], b64[i] = float64(a[i]), float64(b[i])
	}
	w, _, err := wasserstein.W2(a64, b64, len(a)/2, 2)
	if err != nil {
		panic(err)
	}
	return w
}

func TestTrainSampleW2(t *testing.T) {
	// On a GPU: the CLI's default network and a few thousand steps. In the
	// kernel simulator (a CPU running every GPU thread), directly or behind
	// the fake libcuda: a small network for a few steps, to prove the path,
	// not the quality.
	var (
		b   gpu.Backend
		err error
	)
	steps, hidden, maxRatio := 60, []int{32, 32}, math.Inf(1)
	switch {
	case *cudaLib != "":
		b, err = gpu.NewCUDADriver(gpu.CUDAOptions{Library: *cudaLib})
		steps, hidden, maxRatio = 4000, []int{256, 256, 256}, 1.3
	case gpu.Flavor == "kernelsim":
		b, err = gpu.NewCUDA()
	default:
		b, err = gpu.NewCUDADriver(gpu.CUDAOptions{Library: fakecuda.Library(t)})
	}
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	ds, err := data.Builtin("8gaussians", 100000, 1)
	if err != nil {
		t.Fatal(err)
	}
	std := data.Fit(ds)
	std.Apply(ds.X)
	cfg := train.Config{
		Model: model.Config{Kind: "mlp", Dim: 2, Hidden: hidden, TimeEmbed: model.DefaultTimeEmbedding},
		Path:  flow.DefaultSpec(flow.KindOT), Time: flow.DefaultTimeSampler(flow.TimeUniform),
		Steps: steps, Batch: 256, Seed: 1, LR: 2e-3, Warmup: steps / 30, MinLRFrac: 0.05, EMADecay: 0.999, MaxGradNorm: 1,
	}
	cfg.Defaults()
	tr, err := train.New(b, cfg, ds.X, ds.N)
	if err != nil {
		t.Fatal(err)
	}
	defer tr.Close()
	start := time.Now()
	for i := 0; i < steps; i++ {
		tr.Step()
	}
	p, err := tr.Read()
	if err != nil {
		t.Fatal(err)
	}
	sps := float64(steps) / time.Since(start).Seconds()

	x := b.Alloc(points * 2)
	defer b.Free(x)
	b.RandNormal(x, 7, 0, 1)
	if _, err := sampler.Solve(b, tr.EMANet(), x, points, sampler.Options{Method: sampler.RK4, Steps: 100, T0: 0, T1: 1}); err != nil {
		t.Fatal(err)
	}
	samples := make([]float32, points*2)
	b.Download(samples, x)
	if err := b.Sync(); err != nil {
		t.Fatal(err)
	}
	std.Invert(samples)
	for i, v := range samples {
		if math.IsNaN(float64(v)) || math.IsInf(float64(v), 0) {
			t.Fatalf("sample %d is not finite", i/2)
		}
	}
	fresh, _ := data.Builtin("8gaussians", points, 1000)
	floor := 0.0
	const pairs = 3
	for k := 1; k <= pairs; k++ {
		other, _ := data.Builtin("8gaussians", points, 1000+uint64(k))
		floor += w2(other.X, fresh.X) / pairs
	}
	w := w2(samples, fresh.X)
	t.Logf("device=%s steps=%d steps_per_s=%.1f loss=%.4f w2=%.5f w2_floor=%.5f ratio=%.3f",
		b.Info().Backend, steps, sps, p.Loss, w, floor, w/floor)
	if !(w/floor <= maxRatio) {
		t.Errorf("W2 %.4f is %.2f times the noise floor %.4f (want <= %.2f)", w, w/floor, floor, maxRatio)
	}
}
