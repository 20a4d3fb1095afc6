package reflow

import (
	"context"
	"errors"
	"math"
	"os"
	"slices"
	"testing"

	"github.com/fmgpu/fmgpu/data"
	"github.com/fmgpu/fmgpu/flow"
	"github.com/fmgpu/fmgpu/generate"
	"github.com/fmgpu/fmgpu/gpu"
	"github.com/fmgpu/fmgpu/model"
	"github.com/fmgpu/fmgpu/sampler"
	"github.com/fmgpu/fmgpu/train"
)

// teacher trains a small model for a few steps: the pairs need a field,
// not a good one.
func teacher(t *testing.T, b gpu.Backend, classes int) *generate.Model {
	t.Helper()
	ds, err := data.Builtin("moons", 2000, 1)
	if err != nil {
		t.Fatal(err)
	}
	std := data.Fit(ds)
	std.Apply(ds.X)
	cfg := train.Config{
		Model: model.Config{Kind: "mlp", Dim: 2, Hidden: []int{16, 16}, TimeEmbed: model.DefaultTimeEmbedding},
		Path:  flow.DefaultSpec(flow.KindOT), Time: flow.DefaultTimeSampler(flow.TimeUniform),
		Steps: 30, Batch: 64, Seed: 2, LR: 3e-3,
	}
	var labels []int32
	if classes > 0 {
		// class-conditional networks are U-Nets: a tiny one on 8 x 8 images
		const side, n = 8, 40
		cfg.Model = model.Config{Kind: model.KindUNet, Dim: side * side, TimeEmbed: gpu.TimeEmbedding{Freqs: 4, Scale: 1000, MaxPeriod: 10000},
			Classes: classes, Image: &model.ImageShape{Channels: 1, Height: side, Width: side},
			UNet: &model.UNetConfig{Base: 4, Mults: []int{1, 2}, ResBlocks: 1, Groups: 2}}
		cfg.Steps, cfg.Batch = 4, 6
		ds = &data.Dataset{X: make([]float32, n*side*side), N: n, D: side * side}
		for i := range ds.X {
			ds.X[i] = float32(math.Sin(float64(i) * 0.37))
		}
		for i := range n {
			labels = append(labels, int32(i%classes))
		}
		std = data.Identity(side * side)
	}
	cfg.Defaults()
	tr, err := train.NewConditional(b, cfg, ds.X, labels, ds.N)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(tr.Close)
	for range cfg.Steps {
		tr.Step()
	}
	m, err := generate.FromTrainer(b, tr, std)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func spec(m *generate.Model, n, chunk int, so sampler.Options) Spec {
	s := Spec{Teacher: "t", TeacherSHA256: "abc", Pairs: n, Chunk: chunk, Seed: 5, Dim: m.Dim(), Classes: m.Classes()}
	s.SolverSpec(so)
	if s.Classes > 0 {
		s.Guidance = 1
	}
	return s
}

// An interrupted generation continues from the chunks on disk and ends
// with the files an uninterrupted one writes; the pairs are the teacher's
// solves of their noise.
func TestGenerateContinues(t *testing.T) {
	b := gpu.NewCPU(0)
	for _, classes := range []int{0, 3} {
		m := teacher(t, b, classes)
		so := sampler.Options{Method: sampler.RK4, Steps: 8}
		s := spec(m, 250, 64, so)
		straight, chunked := t.TempDir(), t.TempDir()
		if err := Generate(context.Background(), m, straight, s, so, nil); err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		err := Generate(ctx, m, chunked, s, so, func(done, _ int) {
			if done >= 128 {
				cancel()
			}
		})
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("cancelled generation: %v", err)
		}
		if got := Done(chunked, s); got != 2 {
			t.Fatalf("%d chunks on disk after the cancel at 128 pairs, want 2", got)
		}
		var seen []int
		if err := Generate(context.Background(), m, chunked, s, so, func(done, _ int) { seen = append(seen, done) }); err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(seen, []int{192, 250}) {
			t.Errorf("continued generation made chunks ending at %v, want [192 250]", seen)
		}
		for k := range s.Chunks() {
			a, _ := os.ReadFile(ChunkPath(straight, k))
			c, _ := os.ReadFile(ChunkPath(chunked, k))
			if !slices.Equal(a, c) {
				t.Fatalf("classes %d: chunk %d differs between the straight and the continued generation", classes, k)
			}
		}
		p, err := Load(chunked, s)
		if err != nil {
			t.Fatal(err)
		}
		d := m.Dim()
		if p.N != 250 || len(p.X0) != 250*d || len(p.X1) != 250*d || (classes > 0) != (p.Labels != nil) {
			t.Fatalf("loaded %d pairs, %d/%d values, %d labels", p.N, len(p.X0), len(p.X1), len(p.Labels))
		}
		// pair 70 (chunk 1, row 6): its x1 is the teacher's solve of its x0
		x := b.Alloc(d)
		b.Upload(x, p.X0[70*d:71*d])
		o := so
		o.T0, o.T1 = 0, 1
		var field sampler.Field = m.Net
		if classes > 0 {
			g := model.NewGuided(b, m.Net, []int{int(p.Labels[70])}, 1)
			defer g.Release()
			field = g
		}
		if _, err := sampler.Solve(b, field, x, 1, o); err != nil {
			t.Fatal(err)
		}
		got := make([]float32, d)
		b.Download(got, x)
		b.Free(x)
		moved := 0.0
		for j := range got {
			if math.Abs(float64(got[j]-p.X1[70*d+j])) > 1e-4 {
				t.Fatalf("classes %d: pair 70's x1[%d] %v, the teacher's solve of its x0 %v", classes, j, p.X1[70*d+j], got[j])
			}
			moved = math.Max(moved, math.Abs(float64(p.X1[70*d+j]-p.X0[70*d+j])))
		}
		if classes == 0 && moved < 1e-3 { // the U-Net of 4 steps barely moves
			t.Errorf("classes %d: the pair did not move", classes)
		}
		// other settings are refused
		other := s
		other.Seed = 6
		var mm *Mismatch
		if err := Generate(context.Background(), m, chunked, other, so, nil); !errors.As(err, &mm) || mm.Field != "seed" {
			t.Errorf("generation with another seed into the same directory: %v", err)
		}
	}
}
