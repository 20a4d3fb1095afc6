package generate

import (
	"context"
	"errors"
	"math"
	"path/filepath"
	"testing"

	"github.com/fmgpu/fmgpu/data"
	"github.com/fmgpu/fmgpu/flow"
	"github.com/fmgpu/fmgpu/gpu"
	"github.com/fmgpu/fmgpu/internal/numtest"
	"github.com/fmgpu/fmgpu/model"
	"github.com/fmgpu/fmgpu/sampler"
	"github.com/fmgpu/fmgpu/train"
)

// countingBackend tracks the buffers alive on a backend.
type countingBackend struct {
	gpu.Backend
	live int
}

func (c *countingBackend) Alloc(n int) gpu.Buffer { c.live++; return c.Backend.Alloc(n) }
func (c *countingBackend) Free(b gpu.Buffer)      { c.live--; c.Backend.Free(b) }

// mlpTrainer is a small MLP on 2-D data, trained for a few steps.
func mlpTrainer(t *testing.T, b gpu.Backend, steps int) (*train.Trainer, *data.Dataset) {
	t.Helper()
	ds, err := data.Builtin("moons", 500, 1)
	if err != nil {
		t.Fatal(err)
	}
	cfg := train.Config{
		Model: model.Config{Kind: "mlp", Dim: 2, Hidden: []int{16, 16}, TimeEmbed: model.DefaultTimeEmbedding},
		Path:  flow.DefaultSpec(flow.KindOT), Time: flow.DefaultTimeSampler(flow.TimeUniform),
		Steps: max(steps, 1), Batch: 64, Seed: 1, LR: 3e-3, Warmup: 1, EMADecay: 0.9,
	}
	cfg.Defaults()
	tr, err := train.New(b, cfg, ds.X, ds.N)
	if err != nil {
		t.Fatal(err)
	}
	for range steps {
		tr.Step()
	}
	if _, err := tr.Read(); err != nil {
		t.Fatal(err)
	}
	return tr, ds
}

// A checkpoint written by training loads with its EMA or raw weights, and
// sampling is deterministic in the seed.
func TestLoadAndSample(t *testing.T) {
	b := gpu.NewCPU(1)
	defer b.Close()
	tr, ds := mlpTrainer(t, b, 30)
	defer tr.Close()
	ckPath := filepath.Join(t.TempDir(), train.CheckpointName)
	if err := tr.Save(ckPath, data.Fit(ds), train.DataInfo{Source: "moons", Rows: ds.N, Dim: 2}); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	m, err := Load(ctx, b, ckPath, LoadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	raw, err := Load(ctx, b, ckPath, LoadOptions{RawWeights: true})
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	o := SampleOptions{Solver: sampler.Options{Method: sampler.RK4, Steps: 8}, Seed: 4}
	a, st, err := Sample(ctx, m, 50, o)
	if err != nil {
		t.Fatal(err)
	}
	if len(a) != 100 || st.NFE != 32 || st.TotalNFE != 32 || st.Chunks != 1 {
		t.Fatalf("%d values, stats %+v", len(a), st)
	}
	a2, _, _ := Sample(ctx, m, 50, o)
	r, _, _ := Sample(ctx, raw, 50, o)
	same, sameRaw := true, true
	for i := range a {
		same = same && a[i] == a2[i]
		sameRaw = sameRaw && a[i] == r[i]
	}
	if !same {
		t.Error("the same seed gave other samples")
	}
	if sameRaw {
		t.Error("the EMA and the raw weights gave the same samples")
	}
	if _, err := Load(ctx, b, filepath.Join(t.TempDir(), "missing.safetensors"), LoadOptions{}); err == nil {
		t.Error("a missing checkpoint loaded")
	}
}

// Samples come back in data units: a model whose standardization is
// (mean m, std s) returns s z + m for the z the same network returns
// under the identity; its log-likelihoods are those of the standardized
// points minus sum log s (the Jacobian of z = (x - m) / s).
func TestStandardizationAndJacobian(t *testing.T) {
	b := gpu.NewCPU(1)
	defer b.Close()
	tr, _ := mlpTrainer(t, b, 20)
	defer tr.Close()
	id := data.Identity(2)
	std := data.Standardization{Mean: []float64{3, -1}, Std: []float64{2, 0.25}}
	mi, err := FromTrainer(b, tr, id)
	if err != nil {
		t.Fatal(err)
	}
	ms, _ := FromTrainer(b, tr, std)
	ctx := context.Background()
	o := SampleOptions{Solver: sampler.Options{Method: sampler.Heun, Steps: 6}, Seed: 9}
	z, _, err := Sample(ctx, mi, 40, o)
	if err != nil {
		t.Fatal(err)
	}
	x, _, err := Sample(ctx, ms, 40, o)
	if err != nil {
		t.Fatal(err)
	}
	for i := range z {
		j := i % 2
		want := float64(z[i])*std.Std[j] + std.Mean[j]
		if math.Abs(float64(x[i])-want) > 1e-5*math.Max(1, math.Abs(want)) {
			t.Fatalf("sample value %d: %g, want %g", i, x[i], want)
		}
	}

	lo := LikelihoodOptions{Solver: sampler.Options{Method: sampler.RK4, Steps: 10}, Divergence: sampler.Exact}
	lz, st, err := LogLikelihood(ctx, mi, z, 40, lo)
	if err != nil {
		t.Fatal(err)
	}
	lx, _, err := LogLikelihood(ctx, ms, x, 40, lo)
	if err != nil {
		t.Fatal(err)
	}
	logDet := math.Log(2) + math.Log(0.25)
	for i := range lz {
		// float32 rounding of x = s z + m moves the point by ~1e-7 relative
		if d := lx[i] - (lz[i] - logDet); math.Abs(d) > 1e-4 {
			t.Fatalf("point %d: log p %g, want %g - %g (diff %g)", i, lx[i], lz[i], logDet, d)
		}
	}
	if st.NFE != 40 || st.Chunks != 1 {
		t.Errorf("likelihood stats %+v", st)
	}
}

// A cancelled context stops Sample and LogLikelihood with its error and
// no result.
func TestCancelled(t *testing.T) {
	b := gpu.NewCPU(1)
	defer b.Close()
	tr, ds := mlpTrainer(t, b, 1)
	defer tr.Close()
	m, _ := FromTrainer(b, tr, data.Identity(2))
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	x, _, err := Sample(ctx, m, 10, SampleOptions{Solver: sampler.Options{Method: sampler.Euler, Steps: 2}})
	if !errors.Is(err, context.Canceled) || x != nil {
		t.Errorf("Sample: %v, %d values", err, len(x))
	}
	lp, _, err := LogLikelihood(ctx, m, ds.X[:20], 10, LikelihoodOptions{Solver: sampler.Options{Method: sampler.Euler, Steps: 2}})
	if !errors.Is(err, context.Canceled) || lp != nil {
		t.Errorf("LogLikelihood: %v, %d values", err, len(lp))
	}
}

// Bad arguments are errors, not panics.
func TestSampleRejects(t *testing.T) {
	b := gpu.NewCPU(1)
	defer b.Close()
	tr, _ := mlpTrainer(t, b, 1)
	defer tr.Close()
	m, _ := FromTrainer(b, tr, data.Identity(2))
	ctx := context.Background()
	so := sampler.Options{Method: sampler.Euler, Steps: 2}
	for name, c := range map[string]struct {
		n int
		o SampleOptions
	}{
		"no rows":         {0, SampleOptions{Solver: so}},
		"labels":          {2, SampleOptions{Solver: so, Labels: []int{0, 0}}},
		"guidance NaN":    {2, SampleOptions{Solver: so, Guidance: math.NaN()}},
		"guidance < 0":    {2, SampleOptions{Solver: so, Guidance: -1}},
		"no solver steps": {2, SampleOptions{Solver: sampler.Options{Method: sampler.Euler}}},
	} {
		if _, _, err := Sample(ctx, m, c.n, c.o); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
	if _, _, err := LogLikelihood(ctx, m, make([]float32, 5), 2, LikelihoodOptions{Solver: so}); err == nil {
		t.Error("LogLikelihood with a short x: no error")
	}
}

// The guided field of a class-conditional model is released after each
// chunk: the buffers alive after every chunk are the same, however many
// chunks there are.
func TestGuidedChunksReleaseMemory(t *testing.T) {
	cb := &countingBackend{Backend: gpu.NewCPU(1)}
	defer cb.Close()
	const classes, side = 2, 8
	cfg := train.Config{
		Model: model.Config{Kind: "unet", Dim: side * side, TimeEmbed: gpu.TimeEmbedding{Freqs: 4, Scale: 1000, MaxPeriod: 10000},
			Classes: classes, Image: &model.ImageShape{Channels: 1, Height: side, Width: side},
			UNet: &model.UNetConfig{Base: 4, Mults: []int{1}, ResBlocks: 1, Groups: 2}},
		Path: flow.DefaultSpec(flow.KindOT), Time: flow.DefaultTimeSampler(flow.TimeUniform),
		Steps: 1, Batch: 2, Seed: 1, LR: 1e-3,
	}
	cfg.Defaults()
	tr, err := train.NewConditional(cb, cfg, make([]float32, 2*side*side), []int32{0, 1}, 2)
	if err != nil {
		t.Fatal(err)
	}
	defer tr.Close()
	m, _ := FromTrainer(cb, tr, data.Identity(side*side))
	n := 2*imageChunk + 7
	labels := make([]int, n)
	for i := range labels {
		labels[i] = i % classes
	}
	var live []int
	o := SampleOptions{Solver: sampler.Options{Method: sampler.Euler, Steps: 1}, Labels: labels, Guidance: 2,
		OnProgress: func(done, total int, _ Stats) { live = append(live, cb.live) }}
	if _, st, err := Sample(context.Background(), m, n, o); err != nil || st.Chunks != 3 {
		t.Fatalf("%v, stats %+v", err, st)
	}
	if len(live) != 3 || live[0] != live[1] || live[1] != live[2] {
		t.Errorf("buffers alive after each chunk: %v, want the same count", live)
	}
}

// A context cancelled during a solve stops it within a step, not at the
// end of the chunk.
func TestCancelledMidSolve(t *testing.T) {
	b := gpu.NewCPU(1)
	defer b.Close()
	tr, ds := mlpTrainer(t, b, 1)
	defer tr.Close()
	m, _ := FromTrainer(b, tr, data.Identity(2))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	calls := 0
	m.Net = cancelAfter{Net: m.Net, calls: &calls, after: 5, cancel: cancel}
	_, st, err := Sample(ctx, m, 10, SampleOptions{Solver: sampler.Options{Method: sampler.Euler, Steps: 1000}})
	if !errors.Is(err, context.Canceled) || calls > 6 {
		t.Errorf("Sample: %v after %d network calls (stats %+v), want a stop within a step of the cancel", err, calls, st)
	}
	calls = 0
	_, _, err = LogLikelihood(ctx, m, ds.X[:20], 10, LikelihoodOptions{Solver: sampler.Options{Method: sampler.Euler, Steps: 1000}})
	if !errors.Is(err, context.Canceled) || calls > 2 {
		t.Errorf("LogLikelihood: %v after %d network calls", err, calls)
	}
}

// cancelAfter is a network that cancels a context after some calls.
type cancelAfter struct {
	model.Net
	calls  *int
	after  int
	cancel func()
}

func (c cancelAfter) Velocity(t float64, rows int, x, v gpu.Buffer) {
	c.count()
	c.Net.Velocity(t, rows, x, v)
}

func (c cancelAfter) VJP(t float64, rows int, x, e, v, w gpu.Buffer) {
	c.count()
	c.Net.VJP(t, rows, x, e, v, w)
}

func (c cancelAfter) count() {
	*c.calls++
	if *c.calls == c.after {
		c.cancel()
	}
}

// PathStats follows the model's own trajectories from Sample's noise:
// its mean displacement E|x1 - x0|^2 is that of the RK4 samples drawn
// from the same seed, and on an accurate solve S = K - E|x1 - x0|^2
// (docs/math.md §12.2).
func TestPathStats(t *testing.T) {
	b := gpu.NewCPU(1)
	defer b.Close()
	tr, _ := mlpTrainer(t, b, 40)
	defer tr.Close()
	m, _ := FromTrainer(b, tr, data.Identity(2))
	ctx := context.Background()
	// 200 steps: this barely trained network varies fast in t (its time
	// embedding's high frequencies), and the quadrature of S converges
	// only from about 200 steps (K - E|x1-x0|^2 - S: -4.5e-3, -4.0e-3,
	// 1.1e-3, -4.5e-6, 4.5e-6 at 25, 50, 100, 200, 400 steps).
	const n, steps, seed = 300, 200, 11
	st, err := PathStats(ctx, m, n, PathOptions{Steps: steps, Seed: seed})
	if err != nil {
		t.Fatal(err)
	}
	x1, _, err := Sample(ctx, m, n, SampleOptions{Solver: sampler.Options{Method: sampler.RK4, Steps: steps}, Seed: seed})
	if err != nil {
		t.Fatal(err)
	}
	x0 := b.Alloc(n * 2)
	defer b.Free(x0)
	b.RandNormal(x0, seed, 0, 1)
	h0 := make([]float32, n*2)
	b.Download(h0, x0)
	disp := 0.0
	for i := range h0 {
		e := float64(x1[i]) - float64(h0[i])
		disp += e * e
	}
	disp /= n
	// two float32 RK4 implementations of the same solve: 1e-5 relative
	if !numtest.Close(st.Displacement, disp, 1e-5, 0) {
		t.Errorf("displacement %g, from Sample's RK4 samples %g", st.Displacement, disp)
	}
	// 1e-3 of K: 60 times the gap at 200 steps
	if d := st.Kinetic - st.Displacement - st.Straightness; math.Abs(d) > 1e-3*st.Kinetic || !(st.Straightness > 0) {
		t.Errorf("S = %g, K - E|x1-x0|^2 = %g - %g", st.Straightness, st.Kinetic, st.Displacement)
	}
	if st.Nodes != steps+1 {
		t.Errorf("%d nodes, want %d", st.Nodes, steps+1)
	}
	for name, o := range map[string]PathOptions{
		"no steps":   {},
		"labels":     {Steps: 1, Labels: make([]int, n)},
		"guidance<0": {Steps: 1, Guidance: -1},
	} {
		if _, err := PathStats(ctx, m, n, o); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
	// a cancel stops it within a network evaluation
	cctx, cancel := context.WithCancel(ctx)
	defer cancel()
	calls := 0
	m.Net = cancelAfter{Net: m.Net, calls: &calls, after: 5, cancel: cancel}
	if _, err := PathStats(cctx, m, n, PathOptions{Steps: 1000}); !errors.Is(err, context.Canceled) || calls != 5 {
		t.Errorf("cancelled: %v after %d network calls, want context.Canceled after 5", err, calls)
	}
}

// Hutchinson's probes differ from chunk to chunk: the same points scored
// in two chunks get other estimates (with one set of probes for every
// chunk, row r of each carried the same probe error, which the mean did
// not average down); the exact divergence gives them the same value.
func TestHutchinsonProbesDifferByChunk(t *testing.T) {
	b := gpu.NewCPU(2)
	defer b.Close()
	tr, ds := mlpTrainer(t, b, 1)
	defer tr.Close()
	m, _ := FromTrainer(b, tr, data.Identity(2))
	n := likelihoodChunk + 8
	x := make([]float32, 2*n)
	for i := range n {
		copy(x[2*i:2*i+2], ds.X[2*(i%8):2*(i%8)+2]) // rows 0..7 again after the first chunk
	}
	so := sampler.Options{Method: sampler.Euler, Steps: 2}
	for _, div := range []sampler.Divergence{sampler.Hutchinson, sampler.Exact} {
		lp, st, err := LogLikelihood(context.Background(), m, x, n, LikelihoodOptions{Solver: so, Divergence: div, ProbeKind: sampler.Gaussian, Seed: 3})
		if err != nil || st.Chunks != 2 {
			t.Fatalf("%v: %v, %d chunks", div, err, st.Chunks)
		}
		// (the chunks' products round differently: the same row agrees
		// to about 1e-6 under the exact divergence, not to the bit)
		same := 0
		for r := range 8 {
			if math.Abs(lp[r]-lp[likelihoodChunk+r]) < 1e-4 {
				same++
			}
		}
		if div == sampler.Hutchinson && same > 1 || div == sampler.Exact && same != 8 {
			t.Errorf("%v: %d of 8 rows scored within 1e-4 in both chunks", div, same)
		}
	}
}
