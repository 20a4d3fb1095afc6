package fmgpu_test

import (
	"context"
	"fmt"
	"log"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"

	"github.com/fmgpu/fmgpu"
	"github.com/fmgpu/fmgpu/train"
)

// Draw samples from a checkpoint that `fmgpu train` wrote
// (testdata/moons.safetensors: `fmgpu train --data moons --hidden 32,32
// --steps 2000 --device cpu`). They come back in the units of the
// training data.
func ExampleLoad() {
	ctx := context.Background()
	cpu, err := fmgpu.OpenDevice(fmgpu.DeviceCPU, 0) // DeviceAuto takes the GPU when there is one
	if err != nil {
		log.Fatal(err)
	}
	defer cpu.Close()
	m, err := fmgpu.Load(ctx, "testdata/moons.safetensors", fmgpu.LoadOptions{Device: cpu})
	if err != nil {
		log.Fatal(err)
	}
	defer m.Close()
	x, err := m.Sample(ctx, 2000, fmgpu.SampleOptions{Seed: 1}) // rk4, 100 steps
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("%s at step %d: %d samples of %d values\n", m.Config().Model, m.Step(), len(x)/m.Dim(), m.Dim())
	// The two moons lie within x in [-1, 2], y in [-0.5, 1].
	inside := 0
	for i := 0; i < len(x); i += 2 {
		if x[i] > -1.2 && x[i] < 2.2 && x[i+1] > -0.7 && x[i+1] < 1.2 {
			inside++
		}
	}
	fmt.Println("at least 90% of the samples on the moons:", inside >= 1800)
	// Output:
	// mlp dim 2 hidden [32 32] at step 2000: 2000 samples of 2 values
	// at least 90% of the samples on the moons: true
}

// Score points by their log-likelihood under the model: a point on the
// moons is far more likely than one away from them.
func ExampleModel_LogProb() {
	ctx := context.Background()
	cpu, _ := fmgpu.OpenDevice(fmgpu.DeviceCPU, 0)
	defer cpu.Close()
	m, err := fmgpu.Load(ctx, "testdata/moons.safetensors", fmgpu.LoadOptions{Device: cpu})
	if err != nil {
		log.Fatal(err)
	}
	defer m.Close()
	points := []float32{
		0, 1, // on the upper moon
		1, 0, // on the lower moon
		0.5, 2.5, // away from both
	}
	lp, err := m.LogProb(ctx, points, fmgpu.LogProbOptions{}) // dopri5, exact divergence
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("points scored:", len(lp))
	fmt.Println("on the moons more likely by a factor over 100:", lp[0]-lp[2] > math.Log(100), lp[1]-lp[2] > math.Log(100))
	// Output:
	// points scored: 3
	// on the moons more likely by a factor over 100: true true
}

// Train on a generator of points: each step's batch is made on demand (a
// stream; the rows could as well come from a file or a database cursor),
// here a noisy ring of radius 3 around (1, 1). The checkpoint in OutDir is
// one `fmgpu sample` reads.
func ExampleTrain() {
	ctx := context.Background()
	cpu, _ := fmgpu.OpenDevice(fmgpu.DeviceCPU, 0)
	defer cpu.Close()
	rng := rand.New(rand.NewPCG(1, 2))
	ring := fmgpu.SourceFunc(2, func(ctx context.Context, x []float32, _ []int32) error {
		for i := 0; i < len(x); i += 2 {
			a := 2 * math.Pi * rng.Float64()
			r := 3 + 0.1*rng.NormFloat64()
			x[i], x[i+1] = float32(1+r*math.Cos(a)), float32(1+r*math.Sin(a))
		}
		return nil
	})
	cfg := fmgpu.DefaultConfig(2)
	cfg.Model.Hidden = []int{64, 64}
	cfg.Steps, cfg.Warmup = 1500, 100
	out, _ := os.MkdirTemp("", "ring")
	defer os.RemoveAll(out)

	m, err := fmgpu.Train(ctx, cfg, ring, fmgpu.TrainOptions{Device: cpu, OutDir: out})
	if err != nil {
		log.Fatal(err)
	}
	defer m.Close()
	x, err := m.Sample(ctx, 1000, fmgpu.SampleOptions{Seed: 7})
	if err != nil {
		log.Fatal(err)
	}
	var radius float64
	for i := 0; i < len(x); i += 2 {
		radius += math.Hypot(float64(x[i])-1, float64(x[i+1])-1) / 1000
	}
	ck, err := train.Load(filepath.Join(out, train.CheckpointName))
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("checkpoint at step", ck.Meta.Step)
	fmt.Println("mean radius of the samples within 0.15 of 3:", math.Abs(radius-3) < 0.15)
	// Output:
	// checkpoint at step 1500
	// mean radius of the samples within 0.15 of 3: true
}

// Train on rows held in memory, stop part-way, and resume: an in-memory
// run resumed from its checkpoint makes the same steps as one done in one
// go.
func ExampleNewTrainer() {
	ctx := context.Background()
	cpu, _ := fmgpu.OpenDevice(fmgpu.DeviceCPU, 0)
	defer cpu.Close()
	rng := rand.New(rand.NewPCG(3, 4))
	x := make([]float32, 2*5000)
	for i := range x {
		x[i] = float32(rng.NormFloat64())
	}
	cfg := fmgpu.DefaultConfig(2)
	cfg.Model.Hidden = []int{32, 32}
	cfg.Steps, cfg.Warmup = 200, 20
	out, _ := os.MkdirTemp("", "resume")
	defer os.RemoveAll(out)

	tr, err := fmgpu.NewTrainer(ctx, cfg, fmgpu.Rows(x, 2), fmgpu.TrainOptions{Device: cpu, OutDir: out, StopAt: 120})
	if err != nil {
		log.Fatal(err)
	}
	if err := tr.Run(ctx); err != nil {
		log.Fatal(err)
	}
	fmt.Println("stopped at step", tr.StepsDone())
	tr.Close()

	tr, err = fmgpu.NewTrainer(ctx, cfg, fmgpu.Rows(x, 2), fmgpu.TrainOptions{Device: cpu, OutDir: out, Resume: true})
	if err != nil {
		log.Fatal(err)
	}
	defer tr.Close()
	if err := tr.Run(ctx); err != nil {
		log.Fatal(err)
	}
	fmt.Println("resumed and ended at step", tr.StepsDone())
	// Output:
	// stopped at step 120
	// resumed and ended at step 200
}
